#!/bin/sh
# Checks the shipped Prometheus alerting rules with promtool (Debian's `prometheus` package,
# installed by scripts/install-test-deps.sh): the rules parse, and the unit tests beside them
# show each alert firing on the series that should fire it and staying quiet otherwise.
# That the metric names they use are the daemon's own is checked by
# Tests/DaemonTests/ForgeDaemonTests.swift against a real /metrics page.
set -eu

ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
if ! command -v promtool >/dev/null 2>&1; then
    echo "check-alerts.sh: promtool not found; install the prometheus package (scripts/install-test-deps.sh)" >&2
    exit 1
fi
promtool check rules "$ROOT/deploy/prometheus/lockstep-alerts.yaml"
cd "$ROOT/deploy/prometheus"
promtool test rules lockstep-alerts.test.yaml
