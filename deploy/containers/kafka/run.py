"""Entry point of the Kafka stand-in image: apache/kafka's environment contract, then the broker.

Every ``KAFKA_*`` variable (except the JVM's) becomes a server.properties key: the prefix is
dropped, the rest lower-cased, ``___`` becomes ``-``, ``__`` becomes ``_`` and ``_`` becomes
``.`` (``KAFKA_LOG_DIRS`` -> ``log.dirs``). Without any, a single-node KRaft default is used.
The storage is formatted with ``CLUSTER_ID`` once; the broker then replaces this process.
"""

from __future__ import annotations

import os
import subprocess
import sys

HOME = "/opt/kafka"
PROPS = f"{HOME}/config/server.properties"
DEFAULT_CLUSTER_ID = "5L6g3nShT-eMCtK--X86sw"
NOT_PROPERTIES = {
    "KAFKA_VERSION", "KAFKA_HEAP_OPTS", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS",
    "KAFKA_JMX_PORT", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_GC_LOG_OPTS",
    "KAFKA_LOG4J_ROOT_LOGLEVEL", "KAFKA_LOG4J_LOGGERS", "KAFKA_TOOLS_LOG4J_LOGLEVEL",
}
DEFAULTS = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "listeners": "PLAINTEXT://:9092,CONTROLLER://:9093",
    "advertised.listeners": "PLAINTEXT://localhost:9092",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "controller.quorum.voters": "1@localhost:9093",
    "log.dirs": "/tmp/kraft-combined-logs",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
}


def property_name(env_name: str) -> str:
    name = env_name[len("KAFKA_"):].lower()
    return name.replace("___", "\0").replace("__", "\1").replace("_", ".") \
        .replace("\0", "-").replace("\1", "_")


def server_properties(env: dict[str, str]) -> dict[str, str]:
    given = {property_name(k): v for k, v in env.items()
             if k.startswith("KAFKA_") and k not in NOT_PROPERTIES}
    return given or dict(DEFAULTS)


def java(main: str, *args: str, heap: str) -> list[str]:
    return ["java", *heap.split(), "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{HOME}/config/log4j.properties",
            *os.environ.get("KAFKA_OPTS", "").split(), "-cp", f"{HOME}/libs/*", main, *args]


def main() -> None:
    props = server_properties(dict(os.environ))
    with open(PROPS, "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in sorted(props.items()))
    cluster_id = os.environ.get("CLUSTER_ID", DEFAULT_CLUSTER_ID)
    subprocess.run(java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                        "--config", PROPS, "--ignore-formatted", heap="-Xmx128m"), check=True)
    sys.stdout.flush()
    heap = os.environ.get("KAFKA_HEAP_OPTS", "-Xmx512m -Xms256m")
    cmd = java("kafka.Kafka", PROPS, heap=heap)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
