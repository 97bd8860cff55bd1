#!/bin/sh
# moto's S3 server (moto[server], pinned in Tests/S3/requirements.txt) for the tests that keep
# terraform state in S3, in a virtual environment under the git-ignored .tools/.
set -eu
ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
VENV="$ROOT/.tools/moto-venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/Tests/S3/requirements.txt"
echo "install-moto.sh: moto_server ready in .tools/moto-venv"
