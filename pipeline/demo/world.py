"""The demo's retail world: shops, branches, SKUs and their starting stock, as config files.

Pure: builds the simulator seed, the locations file, the shops file and the opening ERP snapshots
from a few numbers, so the demo (and tests) can create the same world every time.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass, field

from pipeline.simulation.traffic import rfc3339


@dataclass(frozen=True)
class Branch:
    id: str
    shop: str
    location_name: str  # the Shopify location's name in the simulator


@dataclass
class DemoWorld:
    """``shops`` shops, each with ``locations`` branches stocking every one of ``skus`` SKUs."""

    shops: int = 2
    skus: int = 2000
    locations: int = 4
    seed: int = 42
    opened_at: float = 1_790_000_000.0
    tokens: dict[str, str] = field(default_factory=dict)
    webhook_secrets: dict[str, str] = field(default_factory=dict)
    opening_stock: dict[tuple[str, str], int] = field(default_factory=dict)  # (sku, branch) → qty

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        for domain in self.shop_domains:
            self.tokens.setdefault(domain, "shpat_" + secrets.token_hex(16))
            self.webhook_secrets.setdefault(domain, secrets.token_hex(24))
        for sku in self.sku_names:
            for branch in self.branches:
                self.opening_stock[(sku, branch.id)] = rng.choice([0, 2, 5, 10, 20, 40, 80])

    @property
    def shop_domains(self) -> list[str]:
        return [f"tally-demo-{i}.myshopify.com" for i in range(1, self.shops + 1)]

    @property
    def sku_names(self) -> list[str]:
        return [f"SKU-{i:05d}" for i in range(1, self.skus + 1)]

    @property
    def branches(self) -> list[Branch]:
        return [
            Branch(f"S{s}-BR{b}", domain, f"Branch {b}")
            for s, domain in enumerate(self.shop_domains, start=1)
            for b in range(1, self.locations + 1)
        ]

    def simulator_seed(self, plan: str = "standard") -> dict:
        """Shopify starts in sync with the ledger's opening stock."""
        shops = []
        for domain in self.shop_domains:
            mine = [b for b in self.branches if b.shop == domain]
            items = [{
                "sku": sku,
                "levels": {b.location_name: {"available": self.opening_stock[(sku, b.id)]}
                           for b in mine},
            } for sku in self.sku_names]
            shops.append({
                "domain": domain, "plan": plan, "access_token": self.tokens[domain],
                "webhook_secret": self.webhook_secrets[domain],
                "locations": [b.location_name for b in mine], "items": items,
            })
        return {"shops": shops}

    def locations_toml(self, location_gids: dict[tuple[str, str], str]) -> str:
        """The branches file; ``location_gids`` maps (shop, location name) → Location GID."""
        out = []
        for b in self.branches:
            out.append(
                f'[[branch]]\nid = "{b.id}"\nname = "{b.location_name} of {b.shop}"\n'
                f"fulfills_online = true\nsafety_buffer = 0\n"
                f'[branch.shopify]\nshop = "{b.shop}"\n'
                f'location_id = "{location_gids[(b.shop, b.location_name)]}"\n'
            )
        return "\n".join(out)

    def shops_toml(self, admin_url: str) -> str:
        """The sink's shops file; tokens come from TALLY_DEMO_TOKEN_<n> variables."""
        return "\n".join(
            f'[[shop]]\ndomain = "{d}"\nadmin_url = "{admin_url}/shops/{d}"\n'
            f'api_version = "2026-10"\ntoken_env = "{self.token_env(d)}"\n'
            for d in self.shop_domains
        )

    def webhooks_toml(self) -> str:
        """The webhook intake's shops file: each shop's online orders held at its first branch
        until Shopify's order routing says which location took them."""
        out = []
        for d in self.shop_domains:
            first = next(b for b in self.branches if b.shop == d)
            out.append(f'[[shop]]\ndomain = "{d}"\nsecret_env = "{self.secret_env(d)}"\n'
                       f'online_branch = "{first.id}"\n')
        return "\n".join(out)

    def secret_env(self, domain: str) -> str:
        return f"TALLY_DEMO_WEBHOOK_SECRET_{self.shop_domains.index(domain) + 1}"

    def token_env(self, domain: str) -> str:
        return f"TALLY_DEMO_TOKEN_{self.shop_domains.index(domain) + 1}"

    def opening_snapshots(self) -> list[tuple[str, bytes]]:
        """ERP on-hand snapshots as of opening time, one per SKU@branch."""
        as_of = rfc3339(self.opened_at)
        events = []
        for (sku, branch), qty in self.opening_stock.items():
            ev = {"schema_version": "1", "type": "erp.on_hand_snapshot", "source": "erp",
                  "transaction_id": f"OPEN-{sku}-{branch}", "line": 1, "occurred_at": as_of,
                  "sku": sku, "location": branch, "quantity": qty, "as_of": as_of}
            events.append(("erp", json.dumps(ev, separators=(",", ":")).encode()))
        return events
