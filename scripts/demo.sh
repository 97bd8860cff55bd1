#!/usr/bin/env bash
# Lockstep's main job, end to end, on the bundled example (examples/): installs what is
# needed, builds lockstep, makes a local delivery repository with a merged pull request,
# starts the daemon on an embedded SQLite store, and walks release 1.0.0 through the gate:
# dev/v1.0.0 is planned, shown, approved by someone other than its tagger, applied and
# verified; the same commit is then promoted to staging. A tag on an unmerged branch is
# shown being refused. Everything it makes lives in examples/state/ and examples/secrets/
# (both git-ignored) and is rebuilt from scratch on every run.
#
# Run as root on Debian 12 with Swift 6.3:  bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\ndemo.sh: %s\n' "$*" >&2; exit 1; }

step "Installing dependencies (git, libgit2, SQLite, pinned Terraform 1.0.3 + offline null provider)"
bash scripts/install-test-deps.sh
bash scripts/install-terraform.sh
# The demo talks to the daemon's /readyz with curl, which a minimal Debian image lacks.
if ! command -v curl > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends curl
fi

step "Building lockstep (debug)"
swift build --product lockstep
# The launcher that confines terraform (Landlock); the daemon finds it next to lockstep.
swift build --product lockstep-confine
lockstep_bin="$(swift build --product lockstep --show-bin-path)/lockstep"
lockstep() { "$lockstep_bin" "$@"; }

examples="$root/examples"
state="$examples/state"
secrets="$examples/secrets"
config="$examples/agent.yaml"
server="http://127.0.0.1:8420"

if curl -fsS -o /dev/null --max-time 2 "$server/readyz" 2>/dev/null; then
    fail "something already answers on $server (an earlier demo's daemon?); stop it first"
fi

step "Creating the example delivery repository from examples/delivery (examples/state/delivery.git)"
rm -rf "$state" "$secrets"
mkdir -p "$state/tokens" "$secrets"
work="$state/work"
# The example's own git identities; the user's and the system's git config are not read.
git() {
    GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null command git -c init.defaultBranch=main -c advice.detachedHead=false "$@"
}
as() { # as NAME EMAIL: the author, committer and tagger of what follows
    export GIT_AUTHOR_NAME="$1" GIT_AUTHOR_EMAIL="$2" GIT_COMMITTER_NAME="$1" GIT_COMMITTER_EMAIL="$2"
}
git init -q "$work"
cp -R examples/delivery/. "$work/"
# Dev and staging keep their terraform state outside the run folders (which Lockstep
# removes after each run), so the next release plans against what is deployed. Each
# environment has a folder of its own: a command may write only its environment's folder.
mkdir -p "$state/tfstate/dev" "$state/tfstate/staging" "$state/tfstate/prod"
for env in dev staging; do
    printf '# Written by scripts/demo.sh: state kept across runs, outside the run folder.\npath = "%s"\n' \
        "$state/tfstate/$env/terraform.tfstate" > "$work/app/envs/$env.backend.hcl"
done
# The first commit ships 0.9.0; the pull request below brings the example's 1.0.0.
printf 'app_version = "0.9.0"\n' > "$work/app/release.auto.tfvars"
as "Dana Developer" dana@example.com
git -C "$work" add -A
git -C "$work" commit -qm "Initial delivery layout"
git -C "$work" checkout -qb release-1.0.0
cp examples/delivery/app/release.auto.tfvars "$work/app/release.auto.tfvars"
git -C "$work" commit -qam "Release 1.0.0"
git -C "$work" checkout -q main
as "Alice Maintainer" alice@example.com
git -C "$work" merge -q --no-ff -m "Merge pull request #1 from release-1.0.0" release-1.0.0
git -C "$work" tag -a dev/v1.0.0 -m "Release 1.0.0 to dev"
# A change that never went through review, tagged as if it were a release.
git -C "$work" checkout -qb unmerged
printf 'app_version = "9.9.9"\n' > "$work/app/release.auto.tfvars"
as "Mallory Outsider" mallory@example.com
git -C "$work" commit -qam "Unreviewed change"
git -C "$work" tag -a dev/v9.9.9 -m "Sneaky release from an unmerged branch"
git -C "$work" checkout -q main
git init -q --bare "$state/delivery.git"
git -C "$work" push -q "$state/delivery.git" main unmerged release-1.0.0 --follow-tags
git -C "$work" push -q "$state/delivery.git" dev/v9.9.9
git -C "$work" log --graph --oneline --decorate --all

step "Writing example credentials (fake values) and API tokens"
for env in dev staging prod; do
    for kind in plan apply; do
        printf '# Example %s credentials for %s: fake values, never real ones.\nEXAMPLE_CLOUD_TOKEN=fake-%s-%s-credential\n' \
            "$kind" "$env" "$env" "$kind" > "$secrets/$env-$kind.env"
    done
done
for name in alice bob carol; do printf '%s-example-token\n' "$name" > "$state/tokens/$name.token"; done
chmod 0700 "$secrets" "$state/tokens"
chmod 0600 "$secrets"/*.env "$state/tokens"/*.token
ls "$secrets"

step "Checking the agent config and the repo layout"
lockstep config check --config "$config" --repo "$work"

step "Which dev tags would Lockstep accept? (dev/v9.9.9 is on an unmerged branch)"
lockstep tags dev --offline --config "$config" --mirror "$state/tags-mirror.git"

step "Starting the daemon: lockstep serve --config examples/agent.yaml (log: examples/state/lockstep.log)"
"$lockstep_bin" serve --config "$config" > "$state/lockstep.log" 2>&1 &
daemon=$!
stop_daemon() {
    if kill -0 "$daemon" 2>/dev/null; then
        kill -TERM "$daemon"
        wait "$daemon" || true
    fi
}
on_exit() {
    local status=$?
    stop_daemon
    if [ "$status" -ne 0 ] && [ -f "$state/lockstep.log" ]; then
        echo "--- last lines of examples/state/lockstep.log ---" >&2
        tail -n 30 "$state/lockstep.log" >&2
    fi
}
trap on_exit EXIT

# wait_for WHAT SECONDS COMMAND…: runs COMMAND every 0.2s until it succeeds, at most SECONDS.
wait_for() {
    local what=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        kill -0 "$daemon" 2>/dev/null || fail "the daemon exited while waiting for $what"
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${seconds}s waiting for $what"
        sleep 0.2
    done
}
ready() { curl -fsS -o /dev/null --max-time 2 "$server/readyz" 2>/dev/null; }
wait_for "the daemon to be ready (/readyz)" 60 ready
echo "ready: $(curl -fsS "$server/readyz")"

export LOCKSTEP_SERVER="$server"
as_identity() { export LOCKSTEP_TOKEN_FILE="$state/tokens/$1.token"; }
as_identity alice

# run_field TAG FIELD: FIELD (id, state or digest) of the newest run of TAG, empty if none.
run_field() {
    lockstep runs --json | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin)["runs"] if r.get("tag") == sys.argv[1]]
print(runs[0].get(sys.argv[2]) or "" if runs else "")' "$1" "$2"
}
# run_reaches TAG STATE: true once the run of TAG is in STATE; fails the demo on a dead end.
run_reaches() {
    local current
    current=$(run_field "$1" state)
    case "$current" in
        "$2") return 0 ;;
        failed|rejected|superseded|expired|interrupted|no_changes)
            [ -z "$(run_field "$1" id)" ] || lockstep show "$(run_field "$1" id)" || true
            fail "the run of $1 ended in $current instead of $2" ;;
    esac
    return 1
}

# release TAG APPROVER [REFUSED]: waits for TAG's plan, shows it, lets REFUSED try to approve
# it (the gate must say no), approves it as APPROVER, waits for apply and verify.
release() {
    local tag=$1 approver=$2 refused=${3:-} run digest
    step "Waiting for the daemon to plan $tag"
    wait_for "$tag to await approval" 180 run_reaches "$tag" awaiting_approval
    run=$(run_field "$tag" id)
    digest=$(run_field "$tag" digest)
    lockstep runs

    step "The plan to review: lockstep show $run"
    lockstep show "$run"

    if [ -n "$refused" ]; then
        step "$refused cut this tag and tries to approve it herself: the gate refuses (four eyes)"
        as_identity "$refused"
        if lockstep approve "$run" --digest "$digest"; then fail "$refused's self-approval was accepted"; fi
        [ "$(run_field "$tag" state)" = awaiting_approval ] || fail "the refused approval changed the run"
        echo "refused as expected; the run still awaits approval"
    fi

    step "Approving as $approver (the tag was cut by alice): lockstep approve $run --digest $digest"
    as_identity "$approver"
    lockstep approve "$run" --digest "$digest"
    as_identity alice

    step "Waiting for apply and verify of $tag"
    wait_for "$tag to be verified" 180 run_reaches "$tag" verified
    lockstep runs --target "app/${tag%%/*}"
}

step "The board right after start: lockstep status"
lockstep status

release dev/v1.0.0 bob

step "Promoting the same commit to staging: alice tags staging/v1.0.0"
as "Alice Maintainer" alice@example.com
git -C "$work" tag -a staging/v1.0.0 -m "Promote 1.0.0 to staging" dev/v1.0.0^{commit}
git -C "$work" push -q "$state/delivery.git" staging/v1.0.0
release staging/v1.0.0 bob alice

step "The board now: lockstep status"
lockstep status
lockstep runs

step "What the daemon decided about the dev release tags: lockstep tags dev"
lockstep tags dev

step "Stopping the daemon (SIGTERM) and checking the audit log's hash chain"
kill -TERM "$daemon"
daemon_status=0
wait "$daemon" || daemon_status=$?
trap - EXIT
[ "$daemon_status" -eq 0 ] || fail "the daemon exited with status $daemon_status after SIGTERM"
echo "daemon stopped cleanly"
lockstep audit verify --store "$state/lockstep.sqlite"
echo "terraform state kept across runs (the next release plans against it):"
ls "$state/tfstate/dev" "$state/tfstate/staging"

step "Done: dev and staging run 1.0.0, approved by bob, verified; dev/v9.9.9 was never planned"
