#!/usr/bin/env bash
# Fuzzing campaign: builds every cargo-fuzz target, writes seed inputs, runs each target for
# FUZZ_SECONDS and prints, per target, executions per second, coverage, corpus size and the
# crashes found. Not run in CI (CI only checks that the targets build).
#
#   fuzz/campaign.sh                 every target, 600 s each, one at a time
#   fuzz/campaign.sh delta wal_parsers
#   FUZZ_SECONDS=60 FUZZ_JOBS=2 fuzz/campaign.sh
#
# Environment: FUZZ_SECONDS (600) per target; FUZZ_JOBS (1) targets run at once; FUZZ_NICE (19)
# niceness of the fuzzers; FUZZ_TIMEOUT (10) seconds after which one input counts as a hang.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain its nightly flags are
# allowed with RUSTC_BOOTSTRAP=1, which this script sets.
#
# Corpora grow in fuzz/corpus/<target>, crashing inputs land in fuzz/artifacts/<target>/, logs in
# fuzz/logs/<target>.log; none of these are committed. Inputs that once crashed a target are kept
# in fuzz/regressions/<target>/ (and as tests of the crate that owns the parser) and rerun first. Exit status: 0 when no target crashed.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-600}
jobs=${FUZZ_JOBS:-1}
niceness=${FUZZ_NICE:-19}
timeout=${FUZZ_TIMEOUT:-10}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "campaign.sh: cargo-fuzz is not installed: run 'cargo install cargo-fuzz'" >&2
  exit 2
fi

if (($#)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${#targets[@]} targets"
for t in "${targets[@]}"; do
  nice -n "$niceness" cargo fuzz build "$t"
done
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=target/$host/release

echo "== writing seeds"
nice -n "$niceness" cargo run --quiet --example seeds -- corpus

mkdir -p logs
run_one() {
  local t=$1
  mkdir -p "corpus/$t" "artifacts/$t"
  local started=$SECONDS
  touch "logs/$t.start"
  # libFuzzer exits non-zero on a crash, a hang or running out of memory: recorded below.
  # Inputs that once crashed a target are run first (new ones are written to corpus/ only).
  local dirs=("corpus/$t")
  [[ -d regressions/$t ]] && dirs+=("regressions/$t")
  nice -n "$niceness" "$bin_dir/$t" "${dirs[@]}" -max_total_time="$seconds" \
    -timeout="$timeout" -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    >"logs/$t.log" 2>&1 || true
  echo $((SECONDS - started)) >"logs/$t.seconds"
}

echo "== running each target for ${seconds} s, ${jobs} at a time, under nice -n ${niceness}"
running=0
for t in "${targets[@]}"; do
  if ((running >= jobs)); then
    wait -n
    running=$((running - 1))
  fi
  echo "   $t"
  run_one "$t" &
  running=$((running + 1))
done
wait

# The last value of `field:` (e.g. cov, ft) on libFuzzer's status lines.
status_field() {
  grep -E "^#[0-9]+" "$1" | grep -oE "$2: [0-9]+[a-zA-Z]*" | tail -n 1 | awk '{print $2}'
}
stat() {
  grep -E "^stat::$2:" "$1" | tail -n 1 | awk '{print $2}'
}

crashed=0
summary=logs/summary.txt
{
  printf '%-14s %8s %10s %8s %8s %8s %8s  %s\n' target seconds exec/s cov ft corpus crashes artifacts
  for t in "${targets[@]}"; do
    log=logs/$t.log
    runs=$(stat "$log" number_of_executed_units)
    secs=$(cat "logs/$t.seconds")
    rate=$(stat "$log" average_exec_per_sec)
    corpus=$(find "corpus/$t" -type f | wc -l)
    # Inputs that crashed, hung or ran out of memory in this run.
    new=$(find "artifacts/$t" -type f -newer "logs/$t.start")
    found=$(printf '%s' "$new" | grep -c . || true)
    ((found == 0)) || crashed=1
    printf '%-14s %8s %10s %8s %8s %8s %8s  %s\n' "$t" "$secs" "${rate:-?}" \
      "$(status_field "$log" cov)" "$(status_field "$log" ft)" "$corpus" "$found" "$(echo $new)"
    [[ -n $runs ]] || echo "   $t: no final statistics: see fuzz/$log"
  done
} >"$summary"
cat "$summary"
if ((crashed)); then
  echo "campaign.sh: at least one target crashed, hung or ran out of memory: see fuzz/logs/ and fuzz/artifacts/" >&2
  exit 1
fi
