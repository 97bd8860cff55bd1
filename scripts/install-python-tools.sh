#!/bin/sh
# The tests' Python tools, each in a virtual environment of its own under the git-ignored
# .tools/, every package pinned in its requirements file:
#   browser-venv  Selenium for the browser tests (Chromium and chromedriver come from Debian,
#                 scripts/install-test-deps.sh)            Tests/Browser/requirements.txt
#   moto-venv     moto's S3 server for the backend pinning tests      Tests/S3/requirements.txt
#   checks-venv   Checkov and regopy for the external check tests     Tests/Checks/requirements.txt
set -eu
ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
install() {
    venv="$ROOT/.tools/$1"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/$2"
    echo "install-python-tools.sh: .tools/$1 ready"
}
install browser-venv Tests/Browser/requirements.txt
install moto-venv Tests/S3/requirements.txt
install checks-venv Tests/Checks/requirements.txt
