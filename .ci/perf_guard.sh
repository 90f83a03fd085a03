#!/usr/bin/env bash
# The performance guard: instructions per operation of custodian's single-threaded hot
# paths (crates/custodian/benches/guard.rs: registration, scope enter + exit, file open +
# drop, temp file create + drop) under callgrind, each against its budget in
# .ci/perf_budget.txt. Fails when an operation costs more than its budget plus the
# tolerance written beside it (the noise between identical runs, with a margin).
# One measure of an operation is the least of a few runs (`guard list` says how many),
# each the instructions of N operations less those of 0, over N.
#
# Usage: .ci/perf_guard.sh             check (CI): one measure per operation
#        .ci/perf_guard.sh --update    measure 3 times, write the largest as the budget
#                                      (the tolerances already in the file are kept)
#        .ci/perf_guard.sh --noise K   measure K times, print them and their spread
# Instruction counts do not drift with the machine's load; they change with the code,
# the toolchain and the dependencies' versions (Cargo.lock), so a budget is re-measured
# when any of them changes on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."

budget=${PERF_BUDGET:-.ci/perf_budget.txt}
mode=check; repeat=1
case "${1:-}" in
  --update) mode=update; repeat=3 ;;
  --noise) mode=noise; repeat=${2:-5} ;;
  "") ;;
  *) echo "usage: $0 [--update | --noise N]" >&2; exit 2 ;;
esac

if ! command -v valgrind >/dev/null 2>&1; then
  # CI runs as root on Debian.
  echo "perf_guard: installing valgrind" >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq valgrind >/dev/null
fi

cargo bench --no-run -q -p tokio-custodian --bench guard 2>/dev/null ||
  cargo bench --no-run -p tokio-custodian --bench guard
exe=$(cargo bench --no-run -p tokio-custodian --bench guard --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "guard" and m.get("executable"):
        print(m["executable"])')

base=/dev/shm; [[ -d $base ]] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/custodian-guard.XXXXXX")
trap 'rm -rf "$work"' EXIT

count() { # op n -> instructions of one run
  local out=$work/cg.$1.$2 dir=$work/run.$1.$2
  rm -rf "$dir"; mkdir -p "$dir"
  # --fair-sched: threads take turns in a fixed order, so that the hand-offs to the
  # blocking pool interleave alike from run to run.
  CUSTODIAN_BENCH_DIR=$dir valgrind --tool=callgrind --callgrind-out-file="$out" \
    --fair-sched=yes \
    "$exe" count "$1" "$2" 2>"$out.log" >/dev/null </dev/null ||
    { cat "$out.log" >&2; echo "perf_guard: $1 failed under callgrind" >&2; exit 1; }
  # Spinning on a contended lock is scheduling, not work: how long a thread spins
  # follows how valgrind interleaves the threads. Its own instructions are left out.
  callgrind_annotate --threshold=100 "$out" 2>/dev/null | python3 -c 'import re, sys
total = spin = 0
for l in sys.stdin:
    m = re.match(r"\s*([\d,]+) .*(PROGRAM TOTALS|lock_contended)", l)
    if m:
        n = int(m.group(1).replace(",", ""))
        if m.group(2) == "PROGRAM TOTALS": total = n
        else: spin += n
print(total - spin)'
}

per_op() { # op n -> instructions per operation
  local z c
  z=$(count "$1" 0); c=$(count "$1" "$2")
  echo $(((c - z) / $2))
}

measure() { # op n runs -> the least per-operation count of `runs` runs
  local best="" v
  for ((i = 0; i < $3; i++)); do
    v=$(per_op "$1" "$2")
    if [[ -z $best ]] || ((v < best)); then best=$v; fi
  done
  echo "$best"
}

declare -A seen
ops=()
while read -r op n runs; do
  ops+=("$op")
  vals=()
  for ((r = 0; r < repeat; r++)); do vals+=("$(measure "$op" "$n" "$runs")"); done
  seen[$op]="${vals[*]}"
done < <("$exe" list)

case $mode in
  noise)
    for op in "${ops[@]}"; do
      python3 - "$op" ${seen[$op]} <<'PY'
import sys
op, v = sys.argv[1], [int(x) for x in sys.argv[2:]]
lo, hi = min(v), max(v)
print(f"{op:<14} {' '.join(map(str, v))}  spread (max-min)/min {(hi - lo) / lo * 100:.2f} %")
PY
    done
    ;;
  update)
    {
      echo "# Budgets of .ci/perf_guard.sh: operation, instructions per operation (the largest"
      echo "# of $repeat measures), tolerance in % (above the noise of identical runs; see"
      echo "# crates/custodian/benches/README.md). Written by '.ci/perf_guard.sh --update',"
      echo "# $(date -u '+%Y-%m-%d'), $(rustc --version | cut -d' ' -f1-2)."
      for op in "${ops[@]}"; do
        max=0
        for v in ${seen[$op]}; do ((v > max)) && max=$v; done
        tol=$(awk -v op="$op" '$1 == op { print $3 }' "$budget" 2>/dev/null || true)
        echo "$op $max ${tol:-5}"
      done
    } >"$budget.new"
    mv "$budget.new" "$budget"
    cat "$budget"
    ;;
  check)
    fail=0
    for op in "${ops[@]}"; do
      read -r want tol < <(awk -v op="$op" '$1 == op { print $2, $3 }' "$budget") || true
      if [[ -z ${want:-} ]]; then
        echo "perf_guard: no budget for $op in $budget (run $0 --update)" >&2; fail=1; continue
      fi
      got=${seen[$op]}
      verdict=$(python3 -c "
got, want, tol = $got, $want, $tol
ratio, limit = got / want, 1 + tol / 100
if ratio > limit: print(f'FAIL: {ratio:.3f}x the budget, above {limit:.2f}x')
elif ratio < 1 - tol / 100: print(f'ok, {ratio:.3f}x (cheaper: --update keeps the gain)')
else: print(f'ok, {ratio:.3f}x')")
      printf '%-14s %7d Ir/op, budget %7d (+%s %%): %s\n' "$op" "$got" "$want" "$tol" "$verdict"
      [[ $verdict == FAIL* ]] && fail=1
      want=""
    done
    if ((fail)); then
      echo "perf_guard: an operation costs more than its budget. Profile it:" >&2
      echo "  valgrind --tool=callgrind $exe count OP N && callgrind_annotate --inclusive=yes callgrind.out.*" >&2
      echo "If the cost is meant (or the toolchain changed), re-measure: .ci/perf_guard.sh --update" >&2
      exit 1
    fi
    ;;
esac
