#!/bin/sh
# Verify command run by Lockstep after each apply, in the exported tree. Lockstep gives it
# the applied outputs as JSON in $LOCKSTEP_OUTPUTS_FILE and the release in $LOCKSTEP_VERSION;
# it checks that the environment now reports the version that was released there.
set -eu
env=""
while [ $# -gt 0 ]; do
    case "$1" in
        --env) env="$2"; shift 2 ;;
        *) echo "smoke.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$env" ] || { echo "smoke.sh: --env is required" >&2; exit 2; }
outputs=$(tr -d ' \n\t' < "${LOCKSTEP_OUTPUTS_FILE:?}")
want=${LOCKSTEP_VERSION#v}
case "$outputs" in
    *"\"app_version\":{"*"\"value\":\"$want\""*) ;;
    *) echo "smoke.sh: $env does not report app_version $want" >&2; exit 1 ;;
esac
case "$outputs" in
    *"\"environment\":{"*"\"value\":\"$env\""*) ;;
    *) echo "smoke.sh: the outputs are not those of $env" >&2; exit 1 ;;
esac
echo "smoke.sh: $env reports app_version $want"
