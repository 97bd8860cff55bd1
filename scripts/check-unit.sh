#!/bin/sh
# Checks the shipped systemd files without installing them or needing systemd as PID 1:
#
# 1. `systemd-analyze security --offline=true` rates deploy/lockstep.service at an
#    overall exposure of 2.0 or less (systemd's "OK" band). Removing a sandboxing line
#    raises the figure, so a weakened unit fails the test run instead of shipping.
# 2. `systemd-analyze verify` finds no error or warning (unknown keys, bad values,
#    missing dependencies). verify insists that the ExecStart binary exists, which it
#    does not on a build machine, so it runs against a scratch root holding a copy of
#    the unit, the host's stock units (for sysinit.target and friends) and an
#    executable stub at /usr/local/bin/lockstep. The stub is never run; only the
#    unit text is checked.
# 3. `systemd-sysusers --root=` can create the lockstep user from
#    deploy/lockstep.sysusers.conf (a syntax error there would leave the unit's
#    User= without a user on a real agent).
# 4. RestrictNamespaces= allows exactly user and PID namespaces: lockstep-confine needs
#    both to contain every command's descendants (the daemon refuses to start without
#    them), and no other kind is needed. `RestrictNamespaces=true`, which tightening the
#    unit by habit would write, would stop the daemon at its first start.
#
# Needs the `systemd` package (scripts/install-test-deps.sh), not root.
set -eu

ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
UNIT="$ROOT/deploy/lockstep.service"
SYSUSERS="$ROOT/deploy/lockstep.sysusers.conf"
# Exposure is printed with one decimal; --threshold takes it times ten.
MAX_EXPOSURE=2.0
THRESHOLD=20

for tool in systemd-analyze systemd-sysusers; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "check-unit.sh: $tool not found; install the systemd package (scripts/install-test-deps.sh)" >&2
        exit 1
    fi
done

SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT INT TERM

# --- 1. security exposure ------------------------------------------------------------
# --threshold makes systemd-analyze itself exit non-zero above the limit; the figure is
# also parsed and compared here, so the check still holds on a systemd without
# --threshold and the figure is always printed.
set -- security --offline=true
if systemd-analyze --help 2>/dev/null | grep -q -- '--threshold'; then
    set -- "$@" --threshold="$THRESHOLD"
fi
status=0
systemd-analyze "$@" "$UNIT" >"$SCRATCH/security.txt" 2>&1 || status=$?
exposure=$(sed -n 's/^.*Overall exposure level for [^:]*: \([0-9][0-9]*\.[0-9]\).*$/\1/p' "$SCRATCH/security.txt")
if [ -z "$exposure" ]; then
    cat "$SCRATCH/security.txt" >&2
    echo "check-unit.sh: no exposure figure in the output of systemd-analyze security" >&2
    exit 1
fi
if [ "$status" -ne 0 ] || ! awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'; then
    # Show only the lines that cost exposure, so the culprit is visible at once.
    grep '✗' "$SCRATCH/security.txt" >&2 || true
    echo "check-unit.sh: FAIL lockstep.service exposure $exposure > $MAX_EXPOSURE" >&2
    exit 1
fi
echo "check-unit.sh: lockstep.service exposure $exposure (limit $MAX_EXPOSURE)"

# --- 2. verify -----------------------------------------------------------------------
VROOT="$SCRATCH/root"
mkdir -p "$VROOT/etc/systemd/system" "$VROOT/usr/lib/systemd" "$VROOT/usr/local/bin"
cp "$UNIT" "$VROOT/etc/systemd/system/lockstep.service"
if [ -d /usr/lib/systemd/system ]; then
    cp -R /usr/lib/systemd/system "$VROOT/usr/lib/systemd/system"
else
    cp -R /lib/systemd/system "$VROOT/usr/lib/systemd/system"
fi
printf '#!/bin/sh\nexit 1\n' >"$VROOT/usr/local/bin/lockstep"
chmod 0755 "$VROOT/usr/local/bin/lockstep"
# verify reports unknown keys as warnings with exit status 0: any output is a failure.
status=0
systemd-analyze verify --man=false --root="$VROOT" lockstep.service >"$SCRATCH/verify.txt" 2>&1 || status=$?
if [ "$status" -ne 0 ] || [ -s "$SCRATCH/verify.txt" ]; then
    cat "$SCRATCH/verify.txt" >&2
    echo "check-unit.sh: FAIL systemd-analyze verify (exit $status)" >&2
    exit 1
fi
echo "check-unit.sh: lockstep.service verify clean"

# --- 3. sysusers ---------------------------------------------------------------------
UROOT="$SCRATCH/users"
mkdir -p "$UROOT/etc"
status=0
systemd-sysusers --root="$UROOT" "$SYSUSERS" >"$SCRATCH/sysusers.txt" 2>&1 || status=$?
if [ "$status" -ne 0 ] || ! grep -q '^lockstep:x:[0-9]*:[0-9]*:[^:]*:/var/lib/lockstep:/usr/sbin/nologin$' "$UROOT/etc/passwd" 2>/dev/null; then
    cat "$SCRATCH/sysusers.txt" >&2
    echo "check-unit.sh: FAIL deploy/lockstep.sysusers.conf does not create the lockstep user" >&2
    exit 1
fi
echo "check-unit.sh: lockstep.sysusers.conf creates user lockstep"

# --- 4. namespaces -------------------------------------------------------------------
namespaces=$(sed -n 's/^RestrictNamespaces=//p' "$UNIT" | tr ' ' '\n' | sort | tr '\n' ' ')
if [ "$namespaces" != "pid user " ]; then
    echo "check-unit.sh: FAIL RestrictNamespaces= must allow exactly 'user pid' (lockstep-confine's PID namespace), found '$namespaces'" >&2
    exit 1
fi
echo "check-unit.sh: lockstep.service allows only user and PID namespaces"
