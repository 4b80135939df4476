"""Container tests: the Tally image (built by `make containers`) run with podman. With CI=true
they fail when no engine or image can be had; elsewhere they skip with the reason."""

from __future__ import annotations

import os

import pytest

from tests.containers.podman import engine_problem


@pytest.fixture(scope="session")
def engine() -> None:
    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"no container engine: {problem}")
    pytest.skip(f"no container engine: {problem} (skips outside CI, fails in CI)")
