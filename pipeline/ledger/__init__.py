"""Tally's canonical ledger: a pure functional core, ``(state, event) -> (state, outputs)``.

No Kafka, faust, HTTP or other I/O here (``locations.load_locations`` reads one given file).
"""

from pipeline.ledger.apply import ApplyContext, apply, refresh
from pipeline.ledger.ats import AtsBreakdown, available_to_sell
from pipeline.ledger.catalog import Catalog, CatalogEntry, parse_catalog_lines
from pipeline.ledger.decode import decode_event, load_schemas
from pipeline.ledger.events import Rejection, SourceEvent
from pipeline.ledger.locations import Locations, LocationsError, load_locations
from pipeline.ledger.movements import Movement, ledger_key, to_movements
from pipeline.ledger.outputs import (
    AlreadyInSnapshot,
    BelowZero,
    Duplicate,
    LowStock,
    NotOwner,
    Output,
    PublishAvailable,
    ReportUnmapped,
    SafetyBufferBreach,
    StaleSnapshotIgnored,
)
from pipeline.ledger.position import LedgerPosition
from pipeline.ledger.rules import LocationRules, ShopifyMapping

__all__ = [
    "AlreadyInSnapshot",
    "ApplyContext",
    "AtsBreakdown",
    "BelowZero",
    "Catalog",
    "CatalogEntry",
    "Duplicate",
    "LedgerPosition",
    "LocationRules",
    "Locations",
    "LocationsError",
    "LowStock",
    "Movement",
    "NotOwner",
    "Output",
    "PublishAvailable",
    "Rejection",
    "ReportUnmapped",
    "SafetyBufferBreach",
    "ShopifyMapping",
    "SourceEvent",
    "StaleSnapshotIgnored",
    "apply",
    "available_to_sell",
    "decode_event",
    "ledger_key",
    "load_locations",
    "load_schemas",
    "parse_catalog_lines",
    "refresh",
    "to_movements",
]
