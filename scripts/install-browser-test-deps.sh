#!/bin/sh
# The browser tests' Python side (Tests/Browser): Selenium, pinned in
# Tests/Browser/requirements.txt, in a virtual environment under the git-ignored .tools/.
# Chromium and chromedriver come from Debian (scripts/install-test-deps.sh).
set -eu
ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
VENV="$ROOT/.tools/browser-venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/Tests/Browser/requirements.txt"
echo "install-browser-test-deps.sh: selenium ready in .tools/browser-venv"
