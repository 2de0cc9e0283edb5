#!/usr/bin/env bash
# Run every `$ ...` line of the README's ```console blocks, in order, from a
# scratch copy of the repository's layout (testdata and ../shared linked), with
# the release build on PATH: the examples must run as written. Exits 1 on the
# first that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/main"
ln -s "$repo/testdata" "$scratch/main/testdata"
[ -d "$repo/../shared" ] && ln -s "$(cd "$repo/../shared" && pwd)" "$scratch/shared"
export PATH="$repo/target/release:$PATH"
n=0
while IFS= read -r cmd; do
  n=$((n + 1))
  echo "\$ $cmd"
  (cd "$scratch/main" && bash -o pipefail -c "$cmd" > /dev/null) || { echo "README example $n failed: $cmd" >&2; exit 1; }
done < <(awk '/^```console/{f=1; next} /^```/{f=0} f && /^\$ /{sub(/^\$ /, ""); print}' README.md)
echo "README examples: $n ran"
