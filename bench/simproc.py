"""Run the Shopify simulator in its own process and write what the bench needs to a JSON file.

``python -m bench.simproc --port P --skus N --locations L --info FILE``: serves until SIGTERM.
The info file holds the shop domain, access token, per-shop URL, location GIDs by name and the
inventory item GID of every SKU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from pipeline.observability import heap
from pipeline.shopify_sim import SimConfig, run_simulator


async def serve(args: argparse.Namespace) -> None:
    config = SimConfig(shops=1, skus=args.skus, locations=args.locations, plan=args.plan,
                       initial_available=args.available)
    async with run_simulator(config, port=args.port) as sim:
        shop = sim.shop()
        info = {
            "domain": shop.domain, "token": sim.access_token(shop.domain),
            "shop_url": sim.shop_url(shop.domain), "base_url": sim.base_url,
            "available": args.available,
            "locations": {loc.name: f"gid://shopify/Location/{loc.id}"
                          for loc in shop.locations.values()},
            "items": {sku: f"gid://shopify/InventoryItem/{item.id}"
                      for sku, item in shop.by_sku.items()},
        }
        tmp = Path(args.info + ".tmp")
        tmp.write_text(json.dumps(info))
        tmp.rename(args.info)
        heap.settle("shopify-sim")  # as the simulator's own CLI does
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--skus", type=int, default=1000)
    p.add_argument("--locations", type=int, default=4)
    p.add_argument("--plan", default="standard")
    p.add_argument("--available", type=int, default=10)
    p.add_argument("--info", required=True)
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
