"""The sink's Kafka record formats: push-topic values in, acks-topic values out (pure)."""

from __future__ import annotations

import json
import uuid

from pipeline.messages import ShopifyAck, ShopifyPush
from pipeline.sink.compare_and_set import KeyState

RUN_ID = uuid.uuid4().hex[:12]  # this process; acks carry it so reuse across restarts is visible


def ack_record(ack: ShopifyAck, state: KeyState) -> bytes:
    """Acks-topic value: ShopifyAck fields + the compare-and-set state (``cas``) + ``run``."""
    return json.dumps({**ack.to_dict(), "cas": state.to_dict(), "run": RUN_ID},
                      separators=(",", ":")).encode()


def parse_ack_record(raw: bytes) -> tuple[ShopifyAck, KeyState]:
    data = json.loads(raw)
    cas = data.pop("cas", None)
    data.pop("run", None)
    ack = ShopifyAck.from_dict(data)
    if cas is not None:
        return ack, KeyState.from_dict(cas)
    return ack, KeyState(acked=ack.available, acked_version=ack.ledger_version,
                         target=ack.available, target_version=ack.ledger_version)


def parse_push_record(raw: bytes) -> tuple[ShopifyPush, bool]:
    """A push-topic value: a ``ShopifyPush`` plus the optional ``reassert`` flag that
    reconciliation sets on a forced re-check (see docs/sink.md, "Re-asserts")."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("push record is not a JSON object")
    reassert = bool(data.pop("reassert", False))
    return ShopifyPush.from_dict(data), reassert
