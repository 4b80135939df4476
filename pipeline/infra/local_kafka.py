"""A single-node Apache Kafka broker (KRaft, broker + controller) run from Maven Central jars.

No Docker and no tarball: Maven resolves ``org.apache.kafka:kafka_2.13`` with its runtime
dependencies and a logging backend into a cache outside the repository, then the broker is started
with ``java -cp … kafka.Kafka`` bound to 127.0.0.1.
Used by ``tally kafka up`` and the test fixtures.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import load, setting

DEFAULT_VERSION = "3.9.1"
RELOAD4J = ("ch.qos.reload4j", "reload4j", "1.2.25")
SLF4J_RELOAD4J = ("org.slf4j", "slf4j-reload4j", "1.7.36")


class KafkaStartError(RuntimeError):
    """The broker could not be fetched or did not come up."""


@dataclass(frozen=True, kw_only=True)
class LocalKafkaSettings:
    """The local broker (``tally kafka``) and the download cache (jars, Shopify's schema)."""

    version: str = setting(DEFAULT_VERSION, "Apache Kafka version run by `tally kafka up`",
                           env="TALLY_KAFKA_VERSION")
    port: int = setting(9092, "broker port of the local Kafka", env="TALLY_KAFKA_PORT")
    controller_port: int = setting(9093, "KRaft controller port of the local Kafka",
                                   env="TALLY_KAFKA_CONTROLLER_PORT")
    cache_dir: Path | None = setting(
        None, "Kafka jars and Shopify's Admin schema (`/opt/tally-cache` in the image)",
        env="TALLY_CACHE_DIR", doc_default="$XDG_CACHE_HOME/tally")
    xdg_cache_home: Path | None = setting(None, "base of the default cache directory",
                                          env="XDG_CACHE_HOME", doc_default="~/.cache")


def cache_root() -> Path:
    """``TALLY_CACHE_DIR``, else ``$XDG_CACHE_HOME/tally``, else ``~/.cache/tally``."""
    settings = load(LocalKafkaSettings)
    if settings.cache_dir is not None:
        return settings.cache_dir
    return (settings.xdg_cache_home or Path(os.path.expanduser("~/.cache"))) / "tally"


@dataclass(frozen=True)
class LocalKafka:
    """Paths and ports of one local broker installation."""

    version: str = DEFAULT_VERSION
    port: int = 9092
    controller_port: int = 9093
    home: Path | None = None

    @property
    def root(self) -> Path:
        return self.home or cache_root() / f"kafka-{self.version}"

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def run_dir(self) -> Path:
        return self.root / f"run-{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "kafka.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "kafka.pid"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- fetch ---------------------------------------------------------------------------------

    def pom(self) -> str:
        deps = [("org.apache.kafka", "kafka_2.13", self.version), RELOAD4J, SLF4J_RELOAD4J]
        body = "\n".join(
            f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
            f"<version>{v}</version></dependency>"
            for g, a, v in deps
        )
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.tally</groupId>
  <artifactId>local-kafka</artifactId>
  <version>{self.version}</version>
  <packaging>pom</packaging>
  <dependencies>
{body}
  </dependencies>
</project>
"""

    def fetch(self) -> None:
        """Resolve the broker jars with Maven (once; a marker file makes later calls instant)."""
        marker = self.lib / ".complete"
        if marker.exists():
            return
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise KafkaStartError("Java 17 and Maven are needed to run a local Kafka broker")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "pom.xml").write_text(self.pom())
        tmp = self.root / "lib.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            "mvn", "-q", "-B", "-f", str(self.root / "pom.xml"),
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise KafkaStartError(
                f"maven could not resolve kafka_2.13:{self.version}:\n{proc.stdout[-3000:]}"
                f"{proc.stderr[-3000:]}"
            )
        shutil.rmtree(self.lib, ignore_errors=True)
        tmp.rename(self.lib)
        marker.write_text(self.version)

    # -- configure -----------------------------------------------------------------------------

    def server_properties(self) -> str:
        p = self.port
        c = self.controller_port
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{p}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"controller.quorum.voters=1@127.0.0.1:{c}",
            f"log.dirs={self.data_dir}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.retention.hours=168",
            "log.cleaner.dedupe.buffer.size=33554432",
            "",
        ])

    def log4j_properties(self) -> str:
        return "\n".join([
            "log4j.rootLogger=INFO, stdout",
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender",
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout",
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n",
            "log4j.logger.kafka=INFO",
            "log4j.logger.org.apache.kafka=WARN",
            "",
        ])

    def _java(self, main: str, *args: str, heap: str = "-Xmx256m") -> list[str]:
        return [
            "java", heap, "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.run_dir}",
            f"-Dlog4j.configuration=file:{self.run_dir / 'log4j.properties'}",
            "-cp", f"{self.lib}/*", main, *args,
        ]

    def configure(self) -> Path:
        """Write the config and format storage once (a formatted dir is kept across restarts)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        props = self.run_dir / "server.properties"
        props.write_text(self.server_properties())
        (self.run_dir / "log4j.properties").write_text(self.log4j_properties())
        if not (self.data_dir / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            if cluster_id.startswith("-"):
                cluster_id = "T" + cluster_id[1:]
            proc = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                           "--config", str(props), "--ignore-formatted"),
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                raise KafkaStartError(f"formatting storage failed:\n{proc.stdout}{proc.stderr}")
        return props

    # -- lifecycle -----------------------------------------------------------------------------

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def port_open(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def answers_metadata(self, timeout: float = 5.0) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=timeout)
        except Exception:
            return False
        return bool(md.brokers)

    def up(self, timeout: float = 90.0) -> str:
        """Start the broker unless it already runs; return its bootstrap address."""
        if self.pid() is not None and self.answers_metadata():
            return self.bootstrap
        if self.port_open():
            raise KafkaStartError(
                f"port {self.port} is taken by another process; set KAFKA_BOOTSTRAP to use it "
                "or choose another port"
            )
        self.fetch()
        props = self.configure()
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child process
        proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props), heap="-Xmx768m"),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise KafkaStartError(
                    f"the Kafka broker exited with code {proc.returncode}; see {self.log_file}"
                )
            if self.port_open() and self.answers_metadata(timeout=2.0):
                return self.bootstrap
            time.sleep(0.3)
        raise KafkaStartError(
            f"the Kafka broker did not answer metadata requests within {timeout:.0f}s; "
            f"see {self.log_file}"
        )

    def down(self, timeout: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout``)."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def reset(self) -> None:
        """Stop the broker and delete its data (the jars stay cached). The data goes, so a
        clean shutdown buys nothing: SIGKILL after 5 s (a broker restarted after an outage could
        take the whole 30 s of ``down()`` to stop)."""
        self.down(timeout=5.0)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return f"kafka {self.version}: not running (log: {self.log_file})"
        state = "ready" if self.answers_metadata() else "starting"
        return f"kafka {self.version}: {state}, pid {pid}, bootstrap {self.bootstrap}"


def from_env() -> LocalKafka:
    """The local broker as configured (``LocalKafkaSettings``)."""
    settings = load(LocalKafkaSettings)
    return LocalKafka(version=settings.version, port=settings.port,
                      controller_port=settings.controller_port)
