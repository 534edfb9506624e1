#!/usr/bin/env bash
# `make lock`: refresh dvc.lock, and the reports it records, to what a fresh clone's `make repro` writes.
#
# The pipeline runs in a throw-away copy of the checkout's files as git sees them (tracked and untracked, not
# ignored: no outputs, no CSVs in data/raw/external/, no tracking store), so nothing of this workspace's state
# reaches the lock; every file the run changed or added is then copied back. Commit them:
# tests/test_dvc_lock.py fails while dvc.lock does not match the code and params.
#   VENV, UV: the venv and uv the copy uses (make passes its own).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(realpath "${VENV:-.venv}")
uv=$(realpath -m "${UV:-.tools/bin/uv}")
copy=$(mktemp -d "${TMPDIR:-/tmp}/logitlab-lock.XXXXXX")
trap 'rm -rf "$copy"' EXIT

git ls-files -z -co --exclude-standard | while IFS= read -r -d '' file; do
  if [[ -f "$file" ]]; then cp --parents -p "$file" "$copy/"; fi
done
git -C "$copy" init -q
git -C "$copy" add -A
git -C "$copy" -c user.name=lock -c user.email=lock@localhost commit -q -m "the checkout's files"

echo "make lock: running the pipeline in a fresh copy ($copy)"
# The copy's own tracking store: a run for the lock is not an experiment of this workspace or a team server.
(cd "$copy" && env -u MLFLOW_TRACKING_URI PATH="$venv/bin:$PATH" \
  make --no-print-directory -o "$venv/.synced" VENV="$venv" UV="$uv" repro)

mapfile -t changed < <(cd "$copy" && git diff --name-only && git ls-files -o --exclude-standard)
for file in "${changed[@]}"; do
  if [[ -f "$copy/$file" ]]; then
    mkdir -p "$(dirname "$file")"
    cp -p "$copy/$file" "$file"
    echo "make lock: updated $file"
  else
    rm -f "$file"
    echo "make lock: removed $file (the pipeline no longer writes it)"
  fi
done
[[ ${#changed[@]} -gt 0 ]] || echo "make lock: dvc.lock and the reports were up to date"
