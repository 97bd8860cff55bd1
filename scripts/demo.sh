#!/usr/bin/env bash
# Installs what Lockstep needs, builds it, makes the example delivery repository with a merged
# pull request and release tags, and shows which tags Lockstep would accept per environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
swift build --product lockstep
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
repo="$work/delivery"
export GIT_CONFIG_NOSYSTEM=1 HOME="$work" GIT_AUTHOR_NAME="Release Manager" GIT_AUTHOR_EMAIL="release@example.test" \
  GIT_COMMITTER_NAME="Release Manager" GIT_COMMITTER_EMAIL="release@example.test"
git init -q -b main "$repo"
cp -R examples/delivery/. "$repo/"
git -C "$repo" add -A && git -C "$repo" commit -qm "Initial delivery layout"
git -C "$repo" checkout -qb change
echo "# reviewed change" >> "$repo/lockstep.yaml"
git -C "$repo" commit -qam "A reviewed change"
git -C "$repo" checkout -q main
git -C "$repo" merge -q --no-ff -m "Merge pull request #1" change
git -C "$repo" tag -a dev/v1.0.0 -m "Release 1.0.0 to dev"
git -C "$repo" checkout -qb unmerged
git -C "$repo" commit -q --allow-empty -m "Never reviewed"
git -C "$repo" tag -a dev/v9.9.9 -m "Sneaky release from an unmerged branch"
git -C "$repo" checkout -q main
"$(swift build --product lockstep --show-bin-path)/lockstep" tags --repo "$repo" --mirror "$work/mirror.git" --env dev
