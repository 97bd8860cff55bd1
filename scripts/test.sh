#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian 12 (run as root), builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
bash scripts/install-terraform.sh
sh scripts/install-python-tools.sh
sh scripts/check-unit.sh
sh scripts/check-alerts.sh
swift build --build-tests
swift test --skip-build
