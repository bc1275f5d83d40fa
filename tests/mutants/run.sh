#!/usr/bin/env bash
# `make mutants`: installs cargo-mutants (crates.io, pinned) if it is missing, runs it over the safety half
# (.cargo/mutants.toml says which code) and prints caught / missed / timeout / unviable per file, and the score:
# caught / (caught + missed + timeout). Not in CI: on 2 cores it takes hours. MUTANTS_FILES="a.rs b.rs" mutates
# every function of those files only (instead of the config's list); MUTANTS_ARGS adds cargo-mutants options.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=27.0.0
TOOLS="$PWD/.tools"
if ! "$TOOLS/bin/cargo-mutants" mutants --version 2>/dev/null | grep -q "$VERSION"; then
    echo "finops: installing cargo-mutants $VERSION into $TOOLS from crates.io"
    cargo install --quiet --locked --root "$TOOLS" --version "$VERSION" cargo-mutants
fi
# The approval callback's and actions' tests start moto: the copy of the tree has no .venv of its own.
export FINOPS_MOTO_PYTHON="$PWD/.venv/bin/python"
# The copy builds into a target dir of its own, kept between runs. Not the workspace's: cargo names a path package's
# artifacts by its path within the workspace, so the copy's mutated finops-core would replace this checkout's, newer
# than its sources, and later builds here would link a mutant (seen once).
export CARGO_TARGET_DIR="$PWD/target/mutants-build"
OUT="$PWD/target/mutants"
mkdir -p "$OUT"
selection=()
for file in ${MUTANTS_FILES:-}; do
    selection+=(--file "$file")
done
if [ ${#selection[@]} -gt 0 ]; then
    selection=(--no-config --gitignore true "${selection[@]}")
fi
status=0
# shellcheck disable=SC2086
"$TOOLS/bin/cargo-mutants" mutants --no-shuffle --jobs 1 --output "$OUT" "${selection[@]}" ${MUTANTS_ARGS:-} || status=$?
# 0: all caught; 2: some missed; 3: some timed out. Anything else: cargo-mutants itself failed.
case "$status" in 0 | 2 | 3) ;; *) echo "cargo-mutants failed ($status)" >&2; exit "$status" ;; esac
python3 tests/mutants/score.py "$OUT/mutants.out"
