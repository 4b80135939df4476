"""The worker's composition root: builds the faust app, its topics, tables, reader, catalog,
guard and emitter once (``bootstrap``), then lets each part register its agents, timers and
pages on it (``build_app``). Nothing here decides anything about a record: the agents' steps
are in ``intake``, ``ledger`` and ``kits``, what is sent for each output of the core in
``handlers``, and every reach into faust's internals in ``faust_internals``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faust
from faust.types import TableT

from agents import intake, kits, ledger, service
from agents.catalog_follower import CatalogFollower
from agents.direct_producer import DirectProducer
from agents.emitter import FaustEmitter
from agents.faust_internals import TallyWorker
from agents.guard import RecordGuard
from agents.handlers import Env
from agents.ledger import HeldKeys
from agents.reading import InOrderReader
from agents.service import ConsumerLag
from agents.settings import WorkerSettings
from pipeline.ledger.decode import SchemaSet, load_schemas
from pipeline.ledger.kits import ChannelRules
from pipeline.ledger.locations import Locations, load_locations
from pipeline.observability import logs
from pipeline.observability.health import Readiness
from pipeline.topics import POSITIONS_TABLE


@dataclass
class Worker:
    """Everything one worker process is made of; the agents' parts read what they need."""

    settings: WorkerSettings
    app: faust.App
    locations: Locations
    schemas: SchemaSet
    channel_rules: ChannelRules
    catalog: CatalogFollower
    reader: InOrderReader
    readiness: Readiness
    guard: RecordGuard
    emitter: FaustEmitter
    env: Env
    sources: faust.TopicT  # every source system's topic (intake)
    movements: faust.TopicT  # input of the ledger agent
    kit_components: faust.TopicT  # input of the kits agent
    positions: TableT[bytes, bytes]  # sku@branch -> LedgerPosition JSON
    kits: TableT[bytes, bytes]  # kit@branch -> KitState JSON
    held: HeldKeys = field(default_factory=HeldKeys)
    lag: ConsumerLag = field(default_factory=ConsumerLag)


def make_app(settings: WorkerSettings) -> faust.App:
    """The faust app, configured from ``settings``."""
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        broker_commit_interval=settings.commit_interval_s,
        # Batch produce requests (movements, changelog, pushes, history): without linger every
        # record is its own request and socket writes dominate the profile.
        producer_linger=settings.producer_linger_ms / 1000.0,
        consumer_auto_offset_reset="earliest",
        # A killed worker's partitions move after this long; faust's default is 60 s.
        broker_session_timeout=settings.session_timeout_s,
        consumer_group_instance_id=settings.instance_id,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 4),
        web_bind=settings.web_bind,
        web_port=settings.web_port,
        web_host=settings.web_host,
        Worker=TallyWorker,
        logging_config=logs.dict_config("worker"),  # JSON logs once faust sets up logging
    )


def bootstrap(settings: WorkerSettings) -> Worker:
    """Build the worker's parts (files read, app, topics, tables); register nothing yet."""
    locations = load_locations(settings.locations_file)
    schemas = load_schemas()
    channel_rules = kits.load_rules(settings.kits_file, locations)
    topics = settings.topics
    app = make_app(settings)
    catalog = CatalogFollower(settings.bootstrap, topics.catalog)

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    # Records no agent reads back go through librdkafka, flushed before every commit.
    direct = DirectProducer(settings.bootstrap, client_id=f"{settings.app_id}-direct",
                            linger_ms=settings.producer_linger_ms,
                            delivery_timeout_s=settings.producer_delivery_timeout_s)
    # Input topics are read through the reader, which owns their commits (agents/reading.py).
    reader = InOrderReader(app, settings.bootstrap, [
        *topics.sources().values(), topics.movements, topics.kit_components],
        contiguous=[topics.movements, topics.kit_components], direct=direct,
        fetch_max_wait_ms=settings.fetch_max_wait_ms)
    sources = reader.topic(*topics.sources().values())
    movements = reader.topic(topics.movements, partitions=settings.partitions)
    push = raw_topic(topics.shopify_push)
    dlq = raw_topic(topics.dead_letter)
    unmapped = raw_topic(topics.unmapped)
    low_stock = raw_topic(topics.low_stock)
    history = raw_topic(topics.history)
    readiness = Readiness("worker")
    readiness.set("kafka", False, "no Kafka metadata answer yet")
    guard = RecordGuard(dlq, readiness=readiness)
    guard.register("intake", "ledger", "kits")
    positions = app.Table(
        POSITIONS_TABLE, partitions=settings.partitions, key_type=bytes, value_type=bytes,
        options={"block_cache_size": settings.block_cache_bytes},
    )
    # Always there (every worker of the group has the same topology), even without kits.
    kit_components = reader.topic(topics.kit_components, partitions=settings.partitions)
    kits_table = app.Table("kits", partitions=settings.partitions, key_type=bytes,
                           value_type=bytes)
    emitter = FaustEmitter({
        "movements": movements, "push": push, "unmapped": unmapped, "low_stock": low_stock,
        "history": history, "kit_components": kit_components}, guard, direct)
    return Worker(
        settings=settings, app=app, locations=locations, schemas=schemas,
        channel_rules=channel_rules, catalog=catalog, reader=reader, readiness=readiness,
        guard=guard, emitter=emitter, env=Env(emitter, locations, catalog.catalog),
        sources=sources, movements=movements, kit_components=kit_components,
        positions=positions, kits=kits_table,
    )


def build_app(settings: WorkerSettings) -> faust.App:
    """Create the faust app with its tables, agents, timers and web pages."""
    worker = bootstrap(settings)
    kits_handle = kits.register(worker)
    service.register(worker)
    intake.register(worker, kits_handle)
    ledger.register(worker, kits_handle)
    service.register_pages(worker)
    return worker.app
