"""``tally ledger show|history SKU --location BRANCH``: one position from the worker, or the
audit trail of applied movements behind it."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from pipeline.ledger.movements import ledger_key
from pipeline.operations.config import OperatorSettings
from pipeline.settings import add_flags, load


def fetch_position(base_url: str, sku: str, branch: str, timeout: float = 10.0) -> dict:
    """GET the position from any worker; faust routes the request to the key's owner."""
    key = urllib.parse.quote(ledger_key(sku, branch), safe="")
    with urllib.request.urlopen(f"{base_url.rstrip('/')}/ledger/{key}/", timeout=timeout) as r:
        return json.loads(r.read())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally ledger")
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="a SKU's position at one branch, with its ATS breakdown")
    show.add_argument("sku")
    show.add_argument("--location", required=True, help="branch id")
    add_flags(show, OperatorSettings, only={"worker_url"})
    hist = sub.add_parser("history", help="the applied movements behind a position")
    hist.add_argument("sku")
    hist.add_argument("--location", required=True, help="branch id")
    hist.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    add_flags(hist, OperatorSettings, only={"bootstrap"})
    args = parser.parse_args(list(argv or []))
    settings = load(OperatorSettings, flags=args)
    if args.action == "history":
        from pipeline.operations.history import format_rows, read_history

        rows = read_history(settings.bootstrap, settings.topics.history, args.sku,
                            args.location)
        if not rows:
            print(f"no history for {args.sku} at {args.location}", file=sys.stderr)
            return 1
        print("\n".join(json.dumps(r, sort_keys=True) for r in rows) if args.json
              else format_rows(rows))
        return 0
    try:
        view = fetch_position(settings.worker_url, args.sku, args.location)
    except urllib.error.HTTPError as exc:
        print(f"error: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"error: worker at {settings.worker_url} not reachable: {exc.reason}",
              file=sys.stderr)
        return 1
    print(json.dumps(view, indent=2, sort_keys=True))
    return 0
