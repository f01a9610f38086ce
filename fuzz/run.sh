#!/usr/bin/env bash
# Runs one fuzz target for a time budget and prints what it reached.
#
#   fuzz/run.sh TARGET SECONDS [libFuzzer flags...]   fuzz, then report
#   fuzz/run.sh --minimize TARGET                     merge finds into fuzz/corpus
#   fuzz/run.sh --list                                the targets
#
# Needs `cargo install cargo-fuzz`; stable Rust is enough (`--sanitizer
# none`). The run reads fuzz/corpus/TARGET and writes what it finds to a
# work corpus outside the repo ($FUZZ_WORK, default /tmp/gossip-ledger-fuzz),
# so the repo keeps only what `--minimize` picks (small files). A crash is
# saved under fuzz/artifacts/TARGET/ and the script exits non-zero.
# Everything runs at the lowest CPU and I/O priority.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${FUZZ_WORK:-/tmp/gossip-ledger-fuzz}"
quiet() { nice -n 19 ionice -c3 "$@"; }
build_flags=(--fuzz-dir fuzz --release --debug-assertions --sanitizer none)

if [ "${1:-}" = "--list" ]; then
  ls fuzz/fuzz_targets | sed 's/\.rs$//'
  exit 0
fi

if [ "${1:-}" = "--minimize" ]; then
  target="$2"
  mkdir -p "$work/$target" "fuzz/corpus/$target"
  merged="$(mktemp -d)"
  quiet cargo fuzz build "${build_flags[@]}" "$target"
  # The smallest set of inputs that keeps every feature seen, at most
  # 4 KiB each; the seeds from real data stay whatever they cover.
  quiet cargo fuzz run "${build_flags[@]}" "$target" "$merged" "fuzz/corpus/$target" "$work/$target" \
    -- -merge=1 -max_len=4096 2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new files' || true
  # libFuzzer names each file by the SHA-1 of its bytes: skip those held.
  held="$(sha1sum fuzz/corpus/"$target"/* 2>/dev/null | cut -d' ' -f1)"
  for file in "$merged"/*; do
    [ -f "$file" ] || continue
    name="$(basename "$file")"
    grep -qx "$name" <<<"$held" || cp "$file" "fuzz/corpus/$target/$name"
  done
  rm -rf "$merged"
  echo "fuzz/corpus/$target: $(ls "fuzz/corpus/$target" | wc -l) files, $(du -sh "fuzz/corpus/$target" | cut -f1)"
  exit 0
fi

target="${1:?usage: fuzz/run.sh TARGET SECONDS}"
seconds="${2:?usage: fuzz/run.sh TARGET SECONDS}"
shift 2
mkdir -p "$work/$target" "fuzz/corpus/$target" "$work/logs"
log="$work/logs/$target-$(date -u +%Y%m%dT%H%M%SZ).log"
quiet cargo fuzz build "${build_flags[@]}" "$target"
status=0
# The CPU time the fuzzer got, beside the wall time: on a shared machine
# at nice 19 execs per CPU-second is what compares one run with another.
cpu="$(mktemp)"
quiet /usr/bin/time -f '%U %S' -o "$cpu" \
  cargo fuzz run "${build_flags[@]}" "$target" "$work/$target" "fuzz/corpus/$target" -- \
  -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 "$@" \
  >"$log" 2>&1 || status=$?
cpu_s="$(awk 'END { printf "%.0f", $1 + $2 }' "$cpu")"
rm -f "$cpu"
runs="$(grep -oE 'stat::number_of_executed_units:[[:space:]]+[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
rate="$(grep -oE 'stat::average_exec_per_sec:[[:space:]]+[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
wall="$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE '[0-9]+ second' | grep -oE '[0-9]+' || echo '?')"
per_cpu="$(awk -v runs="$runs" -v cpu="$cpu_s" 'BEGIN { if (cpu > 0 && runs ~ /^[0-9]+$/) printf "%.0f", runs / cpu; else print "?" }')"
last="$(grep -E '^#[0-9]+' "$log" | tail -1)"
cov="$(echo "$last" | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+' || echo '?')"
ft="$(echo "$last" | grep -oE 'ft: [0-9]+' | grep -oE '[0-9]+' || echo '?')"
corpus="$(echo "$last" | grep -oE 'corp: [0-9]+' | grep -oE '[0-9]+' || echo '?')"
crash="none"
if [ "$status" -ne 0 ]; then
  crash="$(grep -m1 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" || echo "exit $status")"
fi
echo "target=$target seconds=$seconds wall_s=$wall cpu_s=$cpu_s execs=$runs execs_per_s=$rate execs_per_cpu_s=$per_cpu cov_edges=$cov features=$ft corpus=$corpus crash=$crash log=$log"
exit "$status"
