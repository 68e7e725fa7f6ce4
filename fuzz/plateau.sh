#!/usr/bin/env bash
# Fuzzes each named target until its coverage stops growing: a target stops once its edge
# count (libFuzzer's `cov:`) has not grown for PLATEAU seconds, or after MAX seconds in all.
# Prints one summary line per target (executions, exec/s, edges, features, corpus, seconds
# to the last new coverage, findings) and keeps the full logs in $OUT/<target>.log.
#
#   cd fuzz && cargo +nightly fuzz build -s none
#   PLATEAU=300 MAX=1800 ./plateau.sh frame_stream handshake     # or no names: all targets
#
# Scratch corpora go to $OUT/corpus/<target> (the committed corpus/<target> is read, never
# written); crash files to $OUT/artifacts/<target>/. Runs at nice 19, one job.
set -euo pipefail
cd "$(dirname "$0")"
PLATEAU=${PLATEAU:-300}
MAX=${MAX:-1800}
OUT=${OUT:-/tmp/privlm-fuzz}
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi
BIN=target/x86_64-unknown-linux-gnu/release
mkdir -p "$OUT"
printf '%-15s %12s %8s %7s %7s %7s %10s %8s %s\n' target execs exec/s edges feats corpus last-new-s total-s findings
for t in "${TARGETS[@]}"; do
    mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t"
    log="$OUT/$t.log"
    start=$(date +%s)
    nice -n 19 "$BIN/$t" "$OUT/corpus/$t" "corpus/$t" -max_total_time="$MAX" -timeout=10 \
        -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$t/" >"$log" 2>&1 &
    pid=$!
    last_new=$start
    seen=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 5
        n=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2 || true)
        n=${n:-0}
        now=$(date +%s)
        if [ "$n" -gt "$seen" ]; then
            seen=$n
            last_new=$now
        elif [ $((now - last_new)) -ge "$PLATEAU" ]; then
            kill -INT "$pid" 2>/dev/null || true
            break
        fi
    done
    wait "$pid" 2>/dev/null || true
    end=$(date +%s)
    stat=$(grep -E '^#[0-9]+' "$log" | tail -1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$stat")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$stat")
    corp=$(sed -n 's/.*corp: \([0-9]*\).*/\1/p' <<<"$stat")
    findings=$(find "$OUT/artifacts/$t" -type f | wc -l)
    printf '%-15s %12s %8s %7s %7s %7s %10s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" $((last_new - start)) $((end - start)) "$findings"
done
