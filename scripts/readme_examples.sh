#!/usr/bin/env bash
# Run every `$ ...` line of the ```console blocks of README.md and of each page
# in docs/ (results pages hold measurements, not examples), in order, each file
# from its own scratch copy of the repository's layout (testdata, scripts,
# passes, .venv and ../shared linked), with the release build on PATH: the
# examples must run as written.
# Exits 1 on the first that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PATH="$repo/target/release:$PATH"
total=0
for doc in README.md docs/*.md; do
  scratch=$(mktemp -d)
  mkdir -p "$scratch/main"
  for d in testdata scripts passes .venv; do
    if [ -e "$repo/$d" ]; then ln -s "$repo/$d" "$scratch/main/$d"; fi
  done
  if [ -d "$repo/../shared" ]; then ln -s "$(cd "$repo/../shared" && pwd)" "$scratch/shared"; fi
  n=0
  while IFS= read -r cmd; do
    n=$((n + 1))
    echo "\$ $cmd"
    (cd "$scratch/main" && bash -o pipefail -c "$cmd" > /dev/null) || { echo "$doc example $n failed: $cmd" >&2; rm -rf "$scratch"; exit 1; }
  done < <(awk '/^```console/{f=1; next} /^```/{f=0} f && /^\$ /{sub(/^\$ /, ""); print}' "$doc")
  rm -rf "$scratch"
  total=$((total + n))
done
echo "README and docs examples: $total ran"
