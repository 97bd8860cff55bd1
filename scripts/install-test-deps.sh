#!/bin/sh
# Installs what the GitSource tests need on Debian 12, as root, without prompts.
# Idempotent: packages already installed are left alone, and the package index
# is refreshed only when something is actually missing (keeps CI runs fast and
# offline-capable once a machine is provisioned).
set -eu

# systemd: systemd-analyze and systemd-sysusers for scripts/check-unit.sh; prometheus: promtool
# for scripts/check-alerts.sh (the server it also installs is not started); chromium and
# chromium-driver for the review UI's browser tests (Tests/Browser); python3-venv for their venv.
PACKAGES="git libgit2-dev zlib1g-dev libsqlite3-dev pkg-config openssh-server openssh-client gnupg python3 python3-venv sqlite3 systemd prometheus chromium chromium-driver"

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps.sh: must run as root (it calls apt-get)" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -n "$missing" ]; then
    echo "install-test-deps.sh: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y -q --no-install-recommends $missing
else
    echo "install-test-deps.sh: all test dependencies present"
fi

# sshd's privilege-separation directory; the SSH test fixture needs it and a
# fresh container does not have it until the service first starts.
mkdir -p /run/sshd
chmod 0755 /run/sshd
