"""``tally dlq``: what is on the dead-letter topic, one letter in full, and replay after a fix.

``list`` counts letters by reason, source system and topic with the oldest and newest; ``show``
prints one letter with its original (fetched from the source topic when the letter kept only a
prefix); ``replay`` sends chosen letters' original records to their source topic again, with
headers naming the letter, once the cause is fixed (a branch or catalog mapping added). Replaying
twice is harmless: the ledger applies a line once (dedupe by source, transaction and line).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.infra.kafka_read import Record, fetch_record, read_records
from pipeline.infra.kafka_write import new_producer
from pipeline.ledger.events import reason_table
from pipeline.messages import DeadLetter
from pipeline.settings import add_flags, load
from pipeline.settings.parts import KafkaSettings
from pipeline.topics import Topics

REPLAY_HEADER = "tally-replay-of"  # value: "<dlq topic>/<partition>/<offset>"


@dataclass(frozen=True)
class Letter:
    """A dead letter with where it sits on the DLQ (``id`` is ``partition:offset``)."""

    record: Record
    letter: DeadLetter

    @property
    def id(self) -> str:
        return f"{self.record.partition}:{self.record.offset}"


def parse_letters(records: Iterable[Record]) -> tuple[list[Letter], int]:
    """Letters from DLQ records, and how many records were not letters (foreign producers)."""
    letters, foreign = [], 0
    for record in records:
        try:
            letters.append(Letter(record, DeadLetter.from_json(record.value or b"")))
        except (ValueError, TypeError, KeyError):
            foreign += 1
    return letters, foreign


def select(letters: Iterable[Letter], *, reasons: Sequence[str] = (),
           source_topics: Sequence[str] = (), ids: Sequence[str] = ()) -> list[Letter]:
    """Letters matching every filter given (an empty filter matches all)."""
    return [x for x in letters
            if (not reasons or x.letter.reason in reasons)
            and (not source_topics or x.letter.source_topic in source_topics)
            and (not ids or x.id in ids)]


def summary(letters: Sequence[Letter], topics: Topics) -> dict[str, Any]:
    """Counts by reason, source system and topic; oldest and newest letter."""
    system_of = {topic: system for system, topic in topics.sources().items()}
    times = [x.letter.at for x in letters if x.letter.at]
    return {
        "letters": len(letters),
        "by_reason": dict(Counter(x.letter.reason for x in letters).most_common()),
        "by_source_system": dict(Counter(system_of.get(x.letter.source_topic, "(internal)")
                                         for x in letters).most_common()),
        "by_source_topic": dict(Counter(x.letter.source_topic for x in letters).most_common()),
        "oldest": _iso(min(times)) if times else None,
        "newest": _iso(max(times)) if times else None,
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def original_of(letter: Letter, bootstrap: str) -> tuple[bytes | None, bytes | None, str]:
    """(key, whole original value, where it came from); value None when it is gone from the
    source (a truncated letter whose record the source no longer retains)."""
    dl = letter.letter
    if not dl.truncated and not (letter.record.key or b"").startswith(b"sha256:"):
        return letter.record.key, dl.original_bytes(), "letter"
    if dl.source_partition is None or dl.source_offset is None:
        return None, None, "gone"
    record = fetch_record(bootstrap, dl.source_topic, dl.source_partition, dl.source_offset)
    if record is None or (record.value is None and dl.original_length):
        return None, None, "gone"
    return record.key, record.value, "source"


def replay(letters: Sequence[Letter], bootstrap: str, dlq_topic: str,
           allowed_topics: set[str]) -> dict[str, Any]:
    """Send each letter's original to its source topic. Letters from topics outside
    ``allowed_topics`` (Tally's own, e.g. pushes) and originals no longer retained are
    counted, not sent."""
    producer = new_producer(bootstrap, extra={"message.max.bytes": 1_048_588})
    counts: Counter[str] = Counter()
    failed: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    for x in letters:
        if x.letter.source_topic not in allowed_topics:
            counts["not_a_source_topic"] += 1
            continue
        key, value, origin = original_of(x, bootstrap)
        if value is None and origin == "gone":
            counts["original_gone"] += 1
            continue
        producer.produce(x.letter.source_topic, key=key, value=value, on_delivery=delivered,
                         headers=[(REPLAY_HEADER, f"{dlq_topic}/{x.id.replace(':', '/')}"
                                   .encode()), ("tally-replay-reason", x.letter.reason.encode())])
        producer.poll(0)
        counts["replayed"] += 1
    if producer.flush(60) != 0:
        raise RuntimeError("replay: Kafka did not acknowledge every record within 60 s")
    if failed:
        raise RuntimeError(f"replay: {len(failed)} records refused by Kafka: {failed[0]}")
    return dict(counts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally dlq", description=__doc__.split("\n")[0])
    add_flags(parser, KafkaSettings)
    sub = parser.add_subparsers(dest="action", required=True)
    for name, text in (("list", "counts by reason, source system and topic"),
                       ("replay", "send letters' originals to their source topic again")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--reason", action="append", default=[], help="only this reason")
        p.add_argument("--source-topic", action="append", default=[], help="only this topic")
        p.add_argument("--id", action="append", default=[], help="only letter PARTITION:OFFSET")
        if name == "replay":
            p.add_argument("--dry-run", action="store_true", help="say what would be sent")
    show = sub.add_parser("show", help="one letter, with its whole original")
    show.add_argument("id", help="PARTITION:OFFSET on the dead-letter topic (see list --ids)")
    sub.add_parser("reasons", help="every reason the worker gives, as a Markdown table")
    args = parser.parse_args(list(argv or []))
    settings = load(KafkaSettings, flags=args)
    if args.action == "reasons":
        print(reason_table())
        return 0
    topics, bootstrap = settings.topics, settings.bootstrap
    letters, foreign = parse_letters(read_records(bootstrap, topics.dead_letter))
    if args.action == "show":
        matches: list[Letter | None] = [*select(letters, ids=[args.id])]
        (found,) = matches or [None]
        if found is None:
            print(f"error: no letter {args.id} on {topics.dead_letter}", file=sys.stderr)
            return 1
        _, value, origin = original_of(found, bootstrap)
        view = {**found.letter.to_dict(), "id": found.id, "original_from": origin}
        if value is not None:
            text, encoding = DeadLetter.encode_original(value)
            view.update(original=text, original_encoding=encoding, truncated=False)
        print(json.dumps(view, indent=2, ensure_ascii=False))
        return 0
    chosen = select(letters, reasons=args.reason, source_topics=args.source_topic, ids=args.id)
    if args.action == "list":
        print(json.dumps({**summary(chosen, topics), "not_letters": foreign}, indent=2))
        return 0
    sources = set(topics.sources().values())
    if args.dry_run:
        print(json.dumps({"would_replay": sum(x.letter.source_topic in sources for x in chosen),
                          "ids": [x.id for x in chosen]}, indent=2))
        return 0
    started = time.monotonic()
    counts = replay(chosen, bootstrap, topics.dead_letter, sources)
    print(json.dumps({**counts, "seconds": round(time.monotonic() - started, 2)}))
    return 0
