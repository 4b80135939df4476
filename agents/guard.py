"""No record stops a partition: every per-record step of the worker's agents runs here.

A step that fails for a reason that is not the record's (the broker away, a send timing out, a
changelog topic whose metadata is not known yet) is retried with backoff until it succeeds: such
records are never dead-lettered, and ``tally_record_retries_total`` shows the wait. Any other
exception dead-letters that one record as ``internal_error`` (exception type, a digest of the
traceback's frames, where it was raised) and the partition goes on;
``tally_internal_errors_total`` counts them and an alert fires on it. Dead letters are bounded
(``DeadLetter.of_record``), so sending one cannot fail for its size.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from faust.exceptions import FaustError
from prometheus_client import Counter

from pipeline.messages import DEAD_LETTER_MAX_KEY_BYTES, DeadLetter
from pipeline.observability import metrics as m
from pipeline.observability.health import Readiness

log = logging.getLogger("tally.worker.guard")

INTERNAL_ERRORS = Counter(
    "tally_internal_errors_total",
    "Records dead-lettered because Tally failed on them (a bug; the partition went on).",
    ["agent"],
)
TRANSIENT_RETRIES = Counter(
    "tally_record_retries_total",
    "Per-record steps retried after a transient failure (broker away, send timed out).",
    ["agent"],
)
BACKOFF_MAX_S = 10.0
RETRYING_GRACE_S = 30.0


def is_transient(exc: BaseException) -> bool:
    """True for failures that are not the record's fault: retry, never dead-letter. Errors of
    Kafka clients and of faust (a changelog whose metadata is not known yet, a send timing
    out) pass, or need an operator; dead-lettering the record would lose a valid event. An
    output too large for Kafka is the record's own (retrying cannot help)."""
    if isinstance(exc, MessageSizeTooLargeError):
        return False
    return isinstance(exc, KafkaError | FaustError | TimeoutError | ConnectionError)


def traceback_digest(exc: BaseException) -> tuple[str, str]:
    """(a 12-hex digest of the traceback's frames (file, function, line: no values, so the same
    bug gives the same digest), the innermost frame as ``file:line function``)."""
    frames = traceback.extract_tb(exc.__traceback__)
    shape = "|".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.name}:{f.lineno}" for f in frames)
    digest = hashlib.sha256(f"{type(exc).__name__}|{shape}".encode()).hexdigest()[:12]
    where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} {frames[-1].name}" \
        if frames else "?"
    return digest, where


class RecordGuard:
    """Runs one record's processing so that it cannot stop its partition (module docstring)."""

    def __init__(self, dlq: faust.TopicT, service: str = "worker",
                 first_backoff_s: float = 0.5, readiness: Readiness | None = None) -> None:
        self.dlq = dlq
        self.service = service
        self.first_backoff_s = first_backoff_s
        self.readiness = readiness
        self._retrying: set[str] = set()  # agents whose last step is being retried

    async def run(self, agent: str, msg: Any, step: Callable[..., Awaitable[None]],
                  *args: Any) -> None:
        """Run ``step(*args)`` for ``msg`` until it succeeds, or dead-letter ``msg`` as
        ``internal_error``."""
        delay = self.first_backoff_s
        while True:
            try:
                await step(*args)
                if agent in self._retrying:
                    self._retrying.discard(agent)
                    self._report(agent, True)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    self._retrying.add(agent)
                    self._report(agent, False, f"retrying {msg.topic}/{msg.partition}@"
                                 f"{msg.offset}: {type(exc).__name__}: {str(exc)[:200]}")
                    TRANSIENT_RETRIES.labels(agent).inc()
                    log.warning("%s: %s (%s) at %s/%s offset %s; retrying in %.1f s", agent,
                                type(exc).__name__, str(exc)[:200].replace("\n", " "),
                                msg.topic, msg.partition, msg.offset, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
                    continue
                await self.internal_error(agent, msg, exc)
                return

    def _report(self, agent: str, ok: bool, detail: str = "") -> None:
        """An agent stuck retrying one record for RETRYING_GRACE_S is not ready."""
        if self.readiness is not None:
            self.readiness.set(f"agent:{agent}", ok, detail, grace_s=RETRYING_GRACE_S)

    def register(self, *agents: str) -> None:
        """Show each agent's condition on /readyz from the start."""
        for agent in agents:
            self._report(agent, True)

    async def internal_error(self, agent: str, msg: Any, exc: BaseException) -> None:
        digest, where = traceback_digest(exc)
        INTERNAL_ERRORS.labels(agent).inc()
        log.error("%s: %s dead-lettered as internal_error (%s at %s, digest %s)", agent,
                  f"{msg.topic}/{msg.partition}@{msg.offset}", type(exc).__name__, where, digest,
                  exc_info=exc)
        await self.send("internal_error", f"{type(exc).__name__}: {exc}"[:300], msg,
                        extra={"agent": agent, "exception": type(exc).__name__,
                               "traceback_digest": digest, "where": where})

    async def send(self, reason: str, detail: str, msg: Any, value: bytes | None = None,
                   extra: dict[str, Any] | None = None) -> None:
        """Dead-letter ``msg`` (its value, unless ``value`` is given) with ``reason``. Retried
        until Kafka takes it: a letter is never dropped."""
        raw = msg.value if value is None else value
        letter = DeadLetter.of_record(
            reason=reason, detail=detail, topic=msg.topic, partition=msg.partition,
            offset=msg.offset, value=raw if isinstance(raw, bytes) else None,
            service=self.service, at=time.time(), extra=extra)
        key = msg.key
        if key is not None and len(key) > DEAD_LETTER_MAX_KEY_BYTES:
            key = b"sha256:" + hashlib.sha256(key).hexdigest().encode()
        m.DEAD_LETTERS.labels(self.service, reason).inc()
        delay = self.first_backoff_s
        while True:
            try:
                await self.dlq.send(key=key, value=letter.to_json())
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the letter must land: wait for Kafka, whatever it says
                log.error("dead letter for %s/%s@%s not sent (%s); retrying in %.1f s",
                          msg.topic, msg.partition, msg.offset, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
