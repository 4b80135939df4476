"""The ``tally`` command line: one entry point for every service and operator tool."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence


def _kafka(args: argparse.Namespace) -> int:
    from pipeline.infra.local_kafka import KafkaStartError, from_env

    broker = from_env()
    try:
        if args.action == "up":
            print(f"kafka ready at {broker.up(timeout=args.timeout)}")
        elif args.action == "down":
            print("kafka stopped" if broker.down() else "kafka was not running")
        elif args.action == "reset":
            broker.reset()
            print("kafka stopped and its data removed")
        else:
            print(broker.status())
    except KafkaStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _schema(args: argparse.Namespace) -> int:
    from pipeline.infra.shopify_schema import SchemaUnavailable, fetch

    try:
        print(f"Shopify Admin schemas in {fetch()}")
    except SchemaUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _delegate(module: str, func: str = "main") -> Callable[[argparse.Namespace], int]:
    """Hand the remaining arguments to a service's own ``main(argv)``."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), func)(args.rest) or 0)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tally",
        description="Tally keeps one canonical inventory ledger per SKU per location and "
        "makes Shopify show the true available-to-sell.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kafka = sub.add_parser("kafka", help="run a local single-node Kafka broker (no Docker)")
    kafka.add_argument("action", choices=["up", "down", "status", "reset"])
    kafka.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for ready")
    kafka.set_defaults(func=_kafka)

    schema = sub.add_parser("schema", help="fetch Shopify's published Admin GraphQL schemas")
    schema.add_argument("action", choices=["fetch"])
    schema.set_defaults(func=_schema)

    for name, module, text in _SERVICES:
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=_delegate(module))
    return parser


def service_module(name: str) -> str | None:
    return next((module for n, module, _ in _SERVICES if n == name), None)


# Services with their own argument parsers: (command, module with main(argv), help).
_SERVICES: list[tuple[str, str, str]] = [
    ("worker", "agents.worker", "run a ledger worker (faust): intake, dedupe, ledger, ATS"),
    ("catalog", "pipeline.operations.catalog", "import the SKU to Shopify inventory item mapping"),
    ("ledger", "pipeline.operations.ledger", "look up a SKU's ledger position at a branch"),
    ("shopify-sim", "pipeline.shopify_sim.cli", "run the Shopify Admin API simulator"),
    ("sink", "pipeline.sink.service", "push ATS changes to Shopify: coalesced, paced, CAS"),
    ("webhooks", "pipeline.webhooks.service", "receive Shopify webhooks (HMAC, dedupe) into Kafka"),
    ("demo", "pipeline.demo.runner", "run the whole system with synthetic traffic, then report"),
    ("reconcile", "pipeline.reconcile.cli", "compare Shopify with the ledger; report and repair"),
    ("delta-pull", "pipeline.delta_pull.service", "poll sources without events (watermark)"),
    ("dlq", "pipeline.operations.dlq", "dead letters: list, show, replay after a fix"),
    ("config", "pipeline.settings.docs", "settings: docs/configuration.md from the code; show"),
]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # SIGTERM stops a command as Ctrl-C does, unless it handles SIGTERM itself (the worker, the
    # sink). In a container a service is PID 1, for which an unhandled SIGTERM is ignored: `docker
    # stop` would wait out its grace period and then kill it.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Services parse their own arguments (argparse's REMAINDER would swallow a leading --help).
    if argv and (module := service_module(argv[0])) is not None:
        return _delegate(module)(argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
