"""The deployment files agree with the code: without Docker or a cluster, check that the compose
file, Kubernetes manifests, Dockerfile, Prometheus and Grafana files parse, and that every command,
port, environment variable and metric they use exists in the CLI, configuration and metrics.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from prometheus_client import REGISTRY

import agents.guard  # noqa: F401  (registers the worker's record-guard metrics)
import pipeline.observability.metrics  # registers the metrics (with the two below)
import pipeline.reconcile.metrics
import pipeline.webhooks.service  # noqa: F401  (registers the webhook intake metrics)
from pipeline.cli import build_parser
from pipeline.shopify_sim.metrics import SimMetrics
from tests.unit.test_configuration_doc import PENDING as PENDING_ENV
from tests.unit.test_configuration_doc import env_reads

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"

# `tally` subcommands the deployment runs that may not be registered in pipeline.cli yet.
PENDING_COMMANDS: set[str] = set()
# module:function building a service's own argument parser, to check the flags the deployment
# passes (services without one here get no flag check).
SERVICE_PARSERS = {
    "sink": "pipeline.sink.service:build_parser",
    "shopify-sim": "pipeline.shopify_sim.cli:build_parser",
}
# Metrics the alerts and dashboard use that no code exports yet.
PENDING_METRICS: set[str] = set()
# The port variable of each service and its default when unset (None: no default, must be set).
PORT_VARS = {"worker": ("TALLY_WEB_PORT", 6066), "sink": ("TALLY_SINK_WEB_PORT", None),
             "webhooks": ("TALLY_WEBHOOKS_PORT", 8090)}
SIM_DEFAULT_PORT = 8085


# -- helpers ------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d.get("kind") == kind]


def tally_services() -> dict[str, dict[str, Any]]:
    """Compose services that run the Tally image."""
    return {name: svc for name, svc in compose()["services"].items()
            if svc.get("image") == "tally:local"}


def as_argv(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def registered_commands() -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def service_parser(command: str) -> argparse.ArgumentParser | None:
    target = SERVICE_PARSERS.get(command)
    if target is None:
        return None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)()


def exported_metrics() -> set[str]:
    names = set(REGISTRY._names_to_collectors)  # sample names: x_total, x_bucket, x_count, ...
    names |= set(SimMetrics().registry._names_to_collectors)
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(tally_[a-z0-9_]+)", expr))


def shops_token_envs() -> set[str]:
    """Variables named by `token_env` in the shops files the deployment ships."""
    texts = [c["content"] for c in compose().get("configs", {}).values() if "content" in c]
    texts += [cm["data"]["shops.toml"] for cm in k8s_kind("ConfigMap")
              if "shops.toml" in cm.get("data", {})]
    names: set[str] = set()
    for text in texts:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue
        names |= {s["token_env"] for s in data.get("shop", []) if "token_env" in s}
    return names


def webhooks_files() -> list[str]:
    """The webhook intake's shops files (TOML) the deployment ships."""
    texts = [c["content"] for name, c in compose().get("configs", {}).items()
             if name == "webhooks" and "content" in c]
    texts += [cm["data"]["webhooks.toml"] for cm in k8s_kind("ConfigMap")
              if "webhooks.toml" in cm.get("data", {})]
    return texts


def webhooks_secret_envs() -> set[str]:
    """Variables named by `secret_env` in the webhooks files the deployment ships."""
    names: set[str] = set()
    for text in webhooks_files():
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue
        names |= {s["secret_env"] for s in data.get("shop", []) if "secret_env" in s}
    return names


def known_env() -> set[str]:
    return set(env_reads().names) | PENDING_ENV | shops_token_envs() | webhooks_secret_envs()


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["spec"]["template"]["spec"]["containers"]


def workloads() -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] in {"StatefulSet", "Deployment", "Job"}]


# -- compose ------------------------------------------------------------------------------------


def test_compose_has_every_service() -> None:
    services = compose()["services"]
    assert {"kafka", "topics", "worker-1", "worker-2", "sink", "webhooks", "shopify-sim",
            "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"] == "${TALLY_KAFKA_IMAGE:-apache/kafka:3.9.1}"
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka_env
    assert services["topics"]["restart"] == "no"
    for name in ("worker-1", "worker-2", "sink", "webhooks"):
        assert services[name]["depends_on"]["topics"]["condition"] == (
            "service_completed_successfully")


def test_compose_tally_commands_exist() -> None:
    registered = registered_commands()
    for name, svc in tally_services().items():
        argv = as_argv(svc.get("command"))
        if svc.get("entrypoint"):
            continue  # the one-shot topics service runs Python (next test)
        assert argv, name
        command = argv[0]
        assert command in registered or command in PENDING_COMMANDS, (name, command)
        parser = service_parser(command)
        if parser is not None:
            parser.parse_args(argv[1:])  # every flag exists (SystemExit otherwise)


def test_topic_creation_code_runs_against_real_functions() -> None:
    svc = compose()["services"]["topics"]
    entry = as_argv(svc["entrypoint"])
    assert entry[:2] == ["python", "-c"]
    code = entry[2]
    k8s_job = next(d for d in k8s_kind("Job") if d["metadata"]["name"] == "tally-topics")
    assert containers(k8s_job)[0]["command"][2] == code
    tree = compile(code, "<topics>", "exec", flags=0x400, dont_inherit=True)  # PyCF_ONLY_AST
    imports = [n for n in tree.body if n.__class__.__name__ == "ImportFrom"]
    for node in imports:
        module = importlib.import_module(node.module)
        for alias in node.names:
            assert hasattr(module, alias.name), (node.module, alias.name)
    from agents.settings import WorkerSettings
    from pipeline.infra.kafka_topics import ensure_topics

    s = WorkerSettings()
    inspect.signature(ensure_topics).bind(s.bootstrap, s.topics, s.partitions,
                                          s.replication_factor)


def test_compose_environment_is_read_by_the_code() -> None:
    known = known_env()
    for name, svc in tally_services().items():
        unknown = sorted(set(svc.get("environment", {})) - known)
        assert unknown == [], (name, unknown)


def _compose_port(name: str, svc: dict[str, Any]) -> int:
    argv = as_argv(svc.get("command"))
    if argv and argv[0] == "shopify-sim":
        return int(argv[argv.index("--port") + 1]) if "--port" in argv else SIM_DEFAULT_PORT
    kind = argv[0] if argv else name
    var, default = PORT_VARS[kind]
    value = svc.get("environment", {}).get(var, default)
    assert value is not None, f"{name}: {var} must be set (the service has no default port)"
    return int(value)


def test_compose_ports_and_healthchecks_match_configuration() -> None:
    for name, svc in tally_services().items():
        if name == "topics":
            continue
        port = _compose_port(name, svc)
        published = [int(str(p).split(":")[-1]) for p in svc.get("ports", [])]
        assert published == [port], (name, published, port)
        check = " ".join(as_argv(svc["healthcheck"]["test"]))
        url = re.search(r"http://[^'\"]+/healthz", check)
        assert url, (name, check)
        assert urlparse(url.group(0)).port == port, (name, url.group(0))


def test_workers_have_their_own_state_volumes_and_addresses() -> None:
    services = compose()["services"]
    volumes = set()
    for name in ("worker-1", "worker-2"):
        env = services[name]["environment"]
        assert env["TALLY_WEB_HOST"] == services[name]["hostname"] == name
        data = env["TALLY_DATA_DIR"]
        mounts = [v for v in services[name]["volumes"] if v.endswith(":" + data)]
        assert len(mounts) == 1, name
        volumes.add(mounts[0].split(":")[0])
    assert len(volumes) == 2
    assert volumes <= set(compose()["volumes"])


def test_simulator_seed_matches_sink_tokens_and_shops() -> None:
    """Locally, the sink's tokens are the simulator's, and both know the same shops."""
    configs = compose()["configs"]
    seed = json.loads(configs["sim-seed"]["content"])
    shops = tomllib.loads(configs["shops"]["content"])["shop"]
    env = compose()["services"]["sink"]["environment"]
    tokens = {s["domain"]: s["access_token"] for s in seed["shops"]}
    for shop in shops:
        assert env[shop["token_env"]] == tokens[shop["domain"]]
        assert urlparse(shop["admin_url"]).hostname == "shopify-sim"
    # The intake verifies each shop's webhooks with the secret its `secret_env` names.
    from pipeline.webhooks.config import parse_webhook_shops

    hooks_env = compose()["services"]["webhooks"]["environment"]
    hooks = parse_webhook_shops(tomllib.loads(configs["webhooks"]["content"]))
    secrets = {s["domain"]: s["webhook_secret"] for s in seed["shops"]}
    assert {h.domain for h in hooks} == set(secrets)
    for hook in hooks:
        assert hook.secret_env, hook.domain
        assert hooks_env[hook.secret_env] == secrets[hook.domain], hook.domain


def test_compose_webhooks_file_and_simulator_url() -> None:
    """The intake reads the mounted webhooks file; the simulator posts to its real route."""
    from pipeline.ledger.locations import load_locations
    from pipeline.webhooks.config import parse_webhook_shops

    services = compose()["services"]
    hooks = services["webhooks"]
    env = hooks["environment"]
    targets = {c["target"] for c in hooks["configs"] if c["source"] == "webhooks"}
    assert env["TALLY_WEBHOOKS_FILE"] in targets
    assert env["TALLY_WEBHOOKS_HOST"] == "0.0.0.0"
    assert "TALLY_KAFKA_BOOTSTRAP" in env
    locations = load_locations(ROOT / env["TALLY_LOCATIONS_FILE"].removeprefix("/app/"))
    for shop in parse_webhook_shops(tomllib.loads(compose()["configs"]["webhooks"]["content"])):
        assert shop.online_branch in locations, shop.domain
    argv = as_argv(services["shopify-sim"]["command"])
    url = urlparse(argv[argv.index("--webhook-url") + 1])
    assert url.hostname == "webhooks" and url.port == _compose_port("webhooks", hooks)
    assert url.path == "/webhooks"  # pipeline.webhooks.service.build_app: POST /webhooks


def test_prometheus_scrapes_every_service_where_compose_serves_it() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] if job["job_name"] != "prometheus"
               for sc in job["static_configs"] for t in sc["targets"]}
    expected = set()
    for name, svc in tally_services().items():
        if name == "topics":
            continue
        host = svc.get("hostname", name)
        expected.add(f"{host}:{_compose_port(name, svc)}")
    assert targets == expected
    mount = next(v for v in compose()["services"]["prometheus"]["volumes"]
                 if v.startswith("./deploy/prometheus:"))
    assert mount.split(":")[1] == "/etc/prometheus"
    assert config["rule_files"] == ["alerts.yml"]


# -- Dockerfile -----------------------------------------------------------------------------------


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert len(stages) >= 2, "multi-stage"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert re.search(r"^COPY --from=build ", text, re.M)
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    health = re.search(r"^HEALTHCHECK .*?CMD (.*)$", text, re.M | re.S)
    assert health and "/healthz" in health.group(1)
    assert re.search(r'^ENTRYPOINT \["tally"\]\s*$', text, re.M)
    env_names = set(re.findall(r"\b(TALLY_[A-Z0-9_]+)=", text))
    assert env_names and env_names <= known_env(), env_names - known_env()
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for src in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, re.M):
        for part in src.split():
            assert (ROOT / part).exists(), part
            assert part not in ignored, f"{part} is in .dockerignore"
    assert ".env" in ignored and ".git" in ignored and ".venv" in ignored


# -- Kubernetes -----------------------------------------------------------------------------------


def test_k8s_manifests_parse_and_kustomization_lists_them() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    kinds = [d["kind"] for d in k8s_docs()]
    for kind in ("StatefulSet", "Deployment", "Service", "ConfigMap", "Secret", "Job"):
        assert kind in kinds, kind


def test_worker_statefulset_keeps_rocksdb_on_persistent_volumes() -> None:
    (sts,) = k8s_kind("StatefulSet")
    spec = sts["spec"]
    (container,) = containers(sts)
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    claim = spec["volumeClaimTemplates"][0]["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim] == env["TALLY_DATA_DIR"]
    headless = next(s for s in k8s_kind("Service")
                    if s["metadata"]["name"] == spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert env["TALLY_WEB_HOST"].endswith("." + spec["serviceName"])
    assert container["args"] == ["worker"]


def test_sink_and_webhooks_are_deployments() -> None:
    names = {d["metadata"]["name"]: d for d in k8s_kind("Deployment")}
    assert containers(names["tally-sink"])[0]["args"] == ["sink"]
    assert containers(names["tally-webhooks"])[0]["args"] == ["webhooks"]


@pytest.mark.parametrize("doc", workloads(), ids=lambda d: d["metadata"]["name"])
def test_k8s_workload(doc: dict[str, Any]) -> None:
    pod = doc["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    configmaps = {c["metadata"]["name"] for c in k8s_kind("ConfigMap")}
    secrets = {s["metadata"]["name"] for s in k8s_kind("Secret")}
    known = known_env()
    registered = registered_commands()
    for c in pod["containers"]:
        assert c["image"] == "tally"
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        for ref in c.get("envFrom", []):
            if "configMapRef" in ref:
                assert ref["configMapRef"]["name"] in configmaps
            if "secretRef" in ref:
                assert ref["secretRef"]["name"] in secrets
        env = {e["name"]: e for e in c.get("env", [])}
        expanded = {n for e in env.values() for n in re.findall(r"\$\((\w+)\)", e.get("value", ""))}
        unknown = sorted(set(env) - known - expanded)
        assert unknown == [], unknown
        for v in pod.get("volumes", []):
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps
        if doc["kind"] == "Job":
            continue
        command = c["args"][0]
        assert command in registered or command in PENDING_COMMANDS
        var, default = PORT_VARS[command]
        port = int(env[var]["value"]) if var in env else default
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"web": port}
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == port
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in c:
                assert c[probe]["httpGet"]["port"] in ("web", port)
    services = [s for s in k8s_kind("Service")
                if s["spec"]["selector"] == doc["spec"]["selector"]["matchLabels"]] \
        if doc["kind"] != "Job" else []
    for svc in services:
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] == "web"


def test_k8s_config_is_read_by_the_code() -> None:
    known = known_env()
    for cm in k8s_kind("ConfigMap"):
        keys = {k for k in cm["data"] if re.fullmatch(r"[A-Z0-9_]+", k)}
        assert sorted(keys - known) == []
    for secret in k8s_kind("Secret"):
        data = secret["stringData"]
        assert sorted(set(data) - known) == []
        assert set(data.values()) == {"replace-me"}, "no real secrets in the repository"


def test_k8s_files_parse_as_toml(tmp_path: Path) -> None:
    files = next(cm for cm in k8s_kind("ConfigMap") if cm["metadata"]["name"] == "tally-files")
    from pipeline.ledger.locations import load_locations
    from pipeline.shopify.shops import parse_shops
    from pipeline.webhooks.config import parse_webhook_shops

    shops = parse_shops(tomllib.loads(files["data"]["shops.toml"]))
    assert shops and all(s.token_env for s in shops)
    path = tmp_path / "locations.toml"
    path.write_text(files["data"]["locations.toml"])
    locations = load_locations(path)
    assert locations is not None
    hooks = parse_webhook_shops(tomllib.loads(files["data"]["webhooks.toml"]))
    secrets = {s["metadata"]["name"]: set(s["stringData"]) for s in k8s_kind("Secret")}
    for hook in hooks:
        assert hook.online_branch in locations, hook.domain
        assert hook.secret_env and any(hook.secret_env in keys for keys in secrets.values())
    (deployment,) = [d for d in k8s_kind("Deployment")
                     if d["metadata"]["name"] == "tally-webhooks"]
    (container,) = containers(deployment)
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    files_mount = next(n for n, v in volumes.items()
                       if v.get("configMap", {}).get("name") == "tally-files")
    assert env["TALLY_WEBHOOKS_FILE"] == f"{mounts[files_mount]}/webhooks.toml"
    assert env["TALLY_WEBHOOKS_HOST"] == "0.0.0.0"


# -- Prometheus alerts and Grafana ---------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def test_alerts_have_labels_annotations_and_runbooks() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "TallyConsumerLagHigh", "TallyShopifyPushesStalled", "TallyShopifyThrottlingSustained",
        "TallyDriftHigh", "TallyReconciliationNotRun", "TallyDeadLettersGrowing",
        "TallyNegativeLedgerComponent"}
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        runbook = rule["annotations"]["runbook_url"]
        assert runbook == f"docs/runbooks/{name}.md"
        text = (ROOT / runbook).read_text()
        assert text.startswith(f"# {name}\n")
        for section in ("## What it means", "## Likely causes", "## How to check",
                        "## How to fix"):
            assert section in text, (name, section)


def test_alert_and_dashboard_metrics_exist() -> None:
    exported = exported_metrics()
    exprs = [r["expr"] for r in alert_rules()]
    dashboard = json.loads((GRAFANA / "dashboards" / "tally.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used
    assert sorted(used - exported - PENDING_METRICS) == []


def test_grafana_provisioning() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert urlparse(source["url"]).hostname == "prometheus"
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "tally.yml").read_text())["providers"][0]
    volumes = compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in volumes
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    dashboard = json.loads((GRAFANA / "dashboards" / "tally.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for p in panels:
        assert p["datasource"]["uid"] == source["uid"], p["title"]
        assert p["targets"], p["title"]
    text = json.dumps(dashboard)
    for needed in ("tally_reconciliation_discrepancy_ratio", "tally_unmapped_sku_events_total",
                   "tally_safety_buffer_breaches_total", "tally_end_to_end_latency_seconds_bucket",
                   'le=\\"2.0\\"'):
        assert needed in text, needed
    rows = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    assert {"Inventory health", "Worker (RED)", "Sink (RED)", "Webhooks (RED)"} <= rows
