#!/usr/bin/env bash
# Runs hookgate's benchmarks in release mode and appends the output, with the
# date, commit and machine facts, to bench/RESULTS.md.
#
#   bash bench/run.sh                       # ingest at 16,64,256 connections + all delivery phases
#   HG_CONNS=64 HG_PHASES=pacing bash bench/run.sh   # a subset (any HG_* option of the benches)
#
# Both benches talk to 127.0.0.1 only and stop by themselves (about 8-10
# minutes in all on 2 cores). Numbers are noisy on a shared machine: read the
# ratios against the baseline measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."

export HG_CONNS="${HG_CONNS:-16,64,256}"
out="bench/RESULTS.md"
tmp="$(mktemp)"
err="$(mktemp)"
trap 'rm -f "$tmp" "$err"' EXIT

# The delivery bench's memory phase runs the real binary (target/release/hookgate).
cargo build --release --bin hookgate --benches

{
  echo
  echo "## Run of $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "- commit: \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ has uncommitted changes)')"
  echo "- machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: \`bash bench/run.sh\` (HG_CONNS=$HG_CONNS${HG_PHASES:+, HG_PHASES=$HG_PHASES})"
  echo
} >"$tmp"

# Progress goes to stderr (kept in $err); on a failure its tail is recorded too.
status=0
for b in ingest delivery; do
  rc=0
  cargo bench --bench "$b" 2>"$err" | tee -a "$tmp" || rc=$?
  if [ "$rc" -ne 0 ]; then
    status=$rc
    { echo; echo "**\`cargo bench --bench $b\` failed (exit $rc); end of its stderr:**"; echo; echo '```'; tail -n 15 "$err"; echo '```'; echo; } | tee -a "$tmp"
  fi
done
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$tmp"

[ -f "$out" ] || printf '# hookgate benchmark results\n\nAppended by `bench/run.sh`; newest last.\n' >"$out"
cat "$tmp" >>"$out"
echo "appended to $out (exit status $status)"
exit "$status"
