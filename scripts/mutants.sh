#!/usr/bin/env bash
# Mutation testing (cargo-mutants) of the privlm-protocols files that carry secrets: base OT,
# IKNP, garbling, dealer OTs, dealer expansion, weight masking, truncation, millionaire, B2A.
#
# Usage:  scripts/mutants.sh [OUT_DIR]           (default OUT_DIR: target/mutants)
# Env:    MUTANTS_FILES="ot/base.rs trunc.rs"    only these files (paths under protocols/src)
#         MUTANTS_TIMEOUT=300                      seconds per test run of one mutant
#         MUTANTS_SCRATCH=target/mutants-scratch   where the mutated copy of the tree lives
#         MUTANTS_REV=<commit>                     test that commit instead of the working tree
#                                                  (for before/after comparisons)
#         MUTANTS_SHARD=0/4                        test one shard of each file's mutants
#                                                  (round-robin: every 4th), for a shorter run
# Needs:  cargo install cargo-mutants   (tested with 27.1.0)
#
# The machine budget decides the shape of the run:
# - the tree (tracked and new files, or MUTANTS_REV) is copied into MUTANTS_SCRATCH and mutated
#   there in place, with its own target directory, so the working tree is never touched and a
#   rerun rebuilds incrementally;
# - one job at a time, the debug profile (an incremental rebuild of the crate is seconds; the
#   release profile's single codegen unit takes minutes per mutant);
# - each file is tested only by the tests that exercise it (the filters below, substrings of
#   test paths), library unit tests only;
# - mutants that cannot touch a secret are excluded by name (EXCLUDE_RE): Debug impls,
#   parameter validation, wire-format checks and error paths, size bookkeeping, and the
#   insecure test-only ideal functionalities.
# A full run takes several hours on two shared cores; run it in the background:
#   nohup scripts/mutants.sh > mutants.log 2>&1 &
# Results: OUT_DIR/<file>/mutants.out/{caught,missed,timeout,unviable}.txt and a summary line
# per file in OUT_DIR/summary.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${1:-target/mutants}
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
TIMEOUT=${MUTANTS_TIMEOUT:-300}
SCRATCH=${MUTANTS_SCRATCH:-target/mutants-scratch}
case "$SCRATCH" in /*) ;; *) SCRATCH="$ROOT/$SCRATCH" ;; esac

# file (under protocols/src) | test filters
SPECS=(
  "ot/base.rs|ot::base ot::iknp ot::view_tests"
  "ot/iknp.rs|ot::iknp ot::test_util ot::view_tests gc::security_tests over_every_ot"
  "gc/garble.rs|gc::tests::gadgets_garbled gc::tests::reveal gc::tests::a2y gc::tests::shared gc::tests::wrong gc::tests::circuit gc::tests::different gc::tests::gadgets_over gc::security_tests"
  "ot/dealer.rs|ot::dealer ot::view_tests over_every_ot"
  "beaver/expand.rs|beaver::tests beaver::view_tests"
  "beaver/weight.rs|beaver::tests::server beaver::tests::table beaver::tests::factored beaver::view_tests"
  "trunc.rs|beaver::tests::trunc beaver::tests::bilinear beaver::view_tests"
  "ot/millionaire.rs|ot::millionaire over_every_ot::drelu ot::b2a ot::view_tests"
  "ot/b2a.rs|ot::b2a ot::gilboa beaver::ot_provider over_every_ot gc::security_tests ot::view_tests"
)

EXCLUDE_RE='fmt -> std::fmt::Result|IknpConfig::with_chunk|GcConfig::|DreluParams::|[^_]padded|need_tables|sync_point|Evaluator<.a, C, R>::(new|finish|fail)|check_words|check_bits|[^_]dims2|PairedBitTriples::|::available|tree_nodes|digit_specs|IdealBitTriples|ideal_bit_triples|Widths::total|checked_cot[sr]'

if ! cargo mutants --version > /dev/null 2>&1; then
  echo "cargo-mutants is missing: cargo install cargo-mutants" >&2
  exit 1
fi

# A private copy of the tree (the mutated tree) with a persistent target directory. Files get
# the current time as mtime (tar -m), so cargo never mistakes a new copy for an old build.
mkdir -p "$SCRATCH"
find "$SCRATCH" -mindepth 1 -maxdepth 1 ! -name target -exec rm -rf {} +
if [ -n "${MUTANTS_REV:-}" ]; then
  git archive "$MUTANTS_REV" | tar -x -m -f - -C "$SCRATCH"
else
  git ls-files -z -co --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - 2> /dev/null \
    | tar -x -m -f - -C "$SCRATCH"
fi
mkdir -p "$OUT"
: > "$OUT/summary.txt"

for spec in "${SPECS[@]}"; do
  file=${spec%%|*}
  filters=${spec#*|}
  if [ -n "${MUTANTS_FILES:-}" ] && ! grep -qw -- "$file" <<< "$MUTANTS_FILES"; then
    continue
  fi
  name=$(echo "$file" | tr '/' '_' | sed 's/\.rs$//')
  echo "=== protocols/src/$file (tests: $filters)"
  shard=()
  if [ -n "${MUTANTS_SHARD:-}" ]; then
    shard=(--shard "$MUTANTS_SHARD" --sharding round-robin)
  fi
  # cargo-mutants exits non-zero when mutants survive; keep going.
  # shellcheck disable=SC2086
  (cd "$SCRATCH" && cargo mutants -p privlm-protocols --in-place --no-shuffle "${shard[@]}" \
      --file "protocols/src/$file" --exclude-re "$EXCLUDE_RE" \
      --timeout "$TIMEOUT" --output "$OUT/$name" \
      -- --lib -- $filters) || true
  res="$OUT/$name/mutants.out"
  count() { [ -f "$res/$1.txt" ] && wc -l < "$res/$1.txt" || echo 0; }
  echo "$file caught $(count caught) missed $(count missed) timeout $(count timeout) unviable $(count unviable)" \
    | tee -a "$OUT/summary.txt"
done
echo "=== summary ($OUT/summary.txt)"
cat "$OUT/summary.txt"
