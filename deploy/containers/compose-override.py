"""Write a compose override for podman-compose 1.6, which has no ``configs:``.

    python deploy/containers/compose-override.py [OUT_DIR]    (default .tally/podman-compose)

Each inline config of docker-compose.yml is written to OUT_DIR/configs/NAME (mode 0644, as
Compose's 0444) and mounted read-only at its ``target`` in every service that uses it. Prints the
override's path, for
``podman-compose -f docker-compose.yml -f PATH up``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def write_override(compose_file: Path, out_dir: Path) -> Path:
    spec = yaml.safe_load(compose_file.read_text())
    services: dict[str, Any] = {}
    for name, svc in spec["services"].items():
        for ref in svc.get("configs", []):
            path = (out_dir / "configs" / ref["source"]).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(spec["configs"][ref["source"]]["content"])
            path.chmod(0o644)
            services.setdefault(name, {}).setdefault("volumes", []).append(
                f"{path}:{ref['target']}:ro")
    override = out_dir / "compose.podman.yml"
    override.write_text(yaml.safe_dump({"services": services}, sort_keys=False))
    return override


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / ".tally" / "podman-compose"
    out.mkdir(parents=True, exist_ok=True)
    print(write_override(REPO / "docker-compose.yml", out))
