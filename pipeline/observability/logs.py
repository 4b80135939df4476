"""Structured JSON logs with a correlation id, and a filter that keeps secrets out of them."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterable

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")

_SECRET_PATTERNS = [
    re.compile(r"(shpat|shpca|shppa|shpss)_[A-Za-z0-9]+"),  # Shopify access tokens / secrets
    re.compile(r"(?i)(x-shopify-access-token|access_token|webhook_secret|secret|password|token)"
               r"(['\"]?\s*[:=]\s*['\"]?)([^'\"\s,}]+)"),
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secret values and anything shaped like a token or secret assignment."""
    for value in secrets:
        if value:
            text = text.replace(value, "[REDACTED]")
    text = _SECRET_PATTERNS[0].sub("[REDACTED]", text)
    return _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}[REDACTED]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, correlation_id, extras."""

    def __init__(self, service: str, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.service = service
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact(message, self.secrets),
        }
        cid = getattr(record, "correlation_id", "") or correlation_id.get()
        if cid:
            entry["correlation_id"] = cid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        return json.dumps(entry, default=str)


def configure(service: str, *, level: str | None = None, secrets: Iterable[str] = ()) -> None:
    """Send every log record to stderr as JSON at ``level`` (unset: the ``LoggingSettings``
    level, ``TALLY_LOG_LEVEL``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if level is None:
        from pipeline.settings import load
        from pipeline.settings.parts import LoggingSettings

        level = load(LoggingSettings).log_level
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime


def dict_config(service: str, *, secrets: Iterable[str] = ()) -> dict:
    """A ``logging.config.dictConfig`` for faust/mode's ``logging_config``: JSON to stderr.

    ``merge`` keeps mode's root logger (its level comes from ``--loglevel``) and replaces only
    its ``default`` handler, so faust's own setup_logging emits the same JSON lines.
    """
    return {
        "version": 1,
        "merge": True,
        "formatters": {"json": {"()": JsonFormatter, "service": service,
                                "secrets": tuple(secrets)}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json",
                                 "stream": "ext://sys.stderr"}},
    }


def dump_tasks() -> None:
    """Log the stack of every asyncio task of the running loop (for a worker that seems stuck)."""
    import asyncio
    import io

    tasks = asyncio.all_tasks()
    out = io.StringIO()
    for task in sorted(tasks, key=lambda t: t.get_name()):
        out.write(f"--- {task.get_name()} {task.get_coro()!r}\n")
        task.print_stack(limit=12, file=out)
    logging.getLogger("tally.tasks").warning("%d tasks:\n%s", len(tasks), out.getvalue())
