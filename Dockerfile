# syntax=docker/dockerfile:1
# Tally: one image for every service (`tally worker|sink|webhooks|shopify-sim|...`).
#   docker build -t tally .
#   docker run --rm tally --help
# Build stage: a virtualenv with Tally and its pinned dependencies, plus Shopify's published Admin
# GraphQL schema (fetched with npm by `tally schema fetch`; used by the simulator).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential nodejs npm \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/tally
ENV PATH=/opt/tally/bin:$PATH
WORKDIR /src
# Dependencies first (a layer cached until pyproject.toml changes), then the code.
COPY pyproject.toml ./
RUN pip install --upgrade pip \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY README.md ./
COPY pipeline ./pipeline
COPY agents ./agents
RUN pip install --no-deps .
ENV TALLY_CACHE_DIR=/opt/tally-cache
RUN tally schema fetch

# Runtime stage: slim, no compilers, no npm, non-root.
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="tally" \
      org.opencontainers.image.description="Tally inventory ledger, Shopify sink, webhooks and simulator" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 tally \
    && useradd --system --uid 10001 --gid tally --home-dir /app --shell /usr/sbin/nologin tally \
    && mkdir -p /data /app \
    && chown tally:tally /data
COPY --from=build /opt/tally /opt/tally
COPY --from=build /opt/tally-cache /opt/tally-cache
WORKDIR /app
COPY schemas ./schemas
COPY deploy/config ./deploy/config
ENV PATH=/opt/tally/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TALLY_CACHE_DIR=/opt/tally-cache \
    TALLY_SCHEMAS_DIR=/app/schemas \
    TALLY_LOCATIONS_FILE=/app/deploy/config/locations.example.toml \
    TALLY_DATA_DIR=/data \
    TALLY_WEB_HOST=0.0.0.0
USER 10001:10001
VOLUME ["/data"]
EXPOSE 6066 6067 6068 8085
# The worker's health page (TALLY_WEB_PORT, 6066). Other services override the healthcheck
# (docker-compose.yml) or use their orchestrator's probes (deploy/k8s/).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TALLY_WEB_PORT', '6066'), timeout=4)"]
ENTRYPOINT ["tally"]
CMD ["--help"]
