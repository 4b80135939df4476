#!/usr/bin/env sh
# Validate the Prometheus configuration, the alert rules and their unit tests with promtool
# (Debian/Ubuntu: apt-get install prometheus). Exit status is promtool's first failure.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
PROMTOOL=${PROMTOOL:-promtool}
if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
    echo "promtool not found: install Debian's prometheus package (apt-get install -y prometheus)" >&2
    exit 127
fi
cd "$here"
"$PROMTOOL" check config prometheus.yml
"$PROMTOOL" check rules alerts.yml
"$PROMTOOL" test rules tests/alerts_test.yml
