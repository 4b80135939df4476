"""Shopify's published Admin GraphQL schema, from the npm package ``@shopify/dev-mcp`` (pinned).

``fetch()`` runs ``npm pack`` once, checks the tarball's SHA-256 and extracts the Admin schema
introspection files into the cache; ``load(version)`` builds a graphql-core schema from one.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from graphql import GraphQLSchema, build_client_schema

from pipeline.infra.local_kafka import cache_root

PACKAGE = "@shopify/dev-mcp"
PACKAGE_VERSION = "1.16.0"
# sha256 of shopify-dev-mcp-1.16.0.tgz as served by the npm registry (npm's sha512 integrity is
# sha512-tqgRnK7sQhjew+htxtleTH23nXB5fZcsrhWgEkomsorGXvLOB2mh2upwZm8uzuTDNTZnqtLMe64yIwh6s2awtw==).
PACKAGE_SHA256 = "4663c79229028e98f825a09d5f04ec6c3736331b740ce50260f9ffac10709474"
API_VERSIONS = ("2026-01", "2026-04", "2026-07", "2026-10")


class SchemaUnavailable(RuntimeError):
    """The schema files are not in the cache and could not be fetched."""


def schema_dir() -> Path:
    return cache_root() / f"shopify-dev-mcp-{PACKAGE_VERSION}"


def schema_path(api_version: str) -> Path:
    return schema_dir() / f"admin_{api_version}.json.gz"


def fetch() -> Path:
    """Fetch and extract the schema files unless they are already cached; return the folder."""
    target = schema_dir()
    if all(schema_path(v).exists() for v in API_VERSIONS):
        return target
    if shutil.which("npm") is None:
        raise SchemaUnavailable("npm is needed to fetch Shopify's Admin schema (Node.js + npm)")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{PACKAGE_VERSION}", "--silent"],
            cwd=tmp, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise SchemaUnavailable(f"npm pack {PACKAGE}@{PACKAGE_VERSION} failed: {proc.stderr}")
        tgz = next(Path(tmp).glob("*.tgz"))
        digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
        if digest != PACKAGE_SHA256:
            raise SchemaUnavailable(
                f"{tgz.name} has sha256 {digest}, expected {PACKAGE_SHA256}: refusing to use it"
            )
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tgz) as tar:
            for version in API_VERSIONS:
                member = tar.getmember(f"package/dist/data/admin_{version}.json.gz")
                src = tar.extractfile(member)
                assert src is not None
                schema_path(version).write_bytes(src.read())
    return target


@functools.lru_cache(maxsize=8)
def load(api_version: str = "2026-10") -> GraphQLSchema:
    """Build the graphql-core schema of one Admin API version from the cached introspection."""
    path = schema_path(api_version)
    if not path.exists():
        if api_version not in API_VERSIONS:
            raise SchemaUnavailable(f"API version {api_version} is not supported")
        fetch()
    with gzip.open(path, "rt") as fh:
        introspection = json.load(fh)
    schema = build_client_schema(introspection["data"])
    # Shopify's published schema deprecates some implementation fields whose interface field is
    # not deprecated, which graphql-core's type-system check refuses, making every ``validate``
    # raise. Requests are still validated in full against it; only that self-check is waived.
    schema._validation_errors = []
    return schema
