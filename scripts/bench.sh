#!/usr/bin/env bash
# Runs every managed/raw pair of docs/benchmarks.md, both ways, in one command:
#   1. criterion, per-operation interleaving (benches core, process, decode);
#   2. interleaved time rounds of every pair (benches pairs, pairs_audio: `time`),
#      with the median ratio and its spread across rounds;
#   3. instruction counts under `valgrind --tool=callgrind`: each side runs N operations
#      and, separately, 0 (same setup, same warm-up); (Ir(N) - Ir(0)) / N is the cost of
#      one operation alone, on every thread of the process (blocking pool included);
#   4. heap bytes per live registry entry (bench memory, a counting allocator).
# Usage: scripts/bench.sh [--quick] [PAIR...]   (PAIR limits steps 2 and 3)
# --quick: short criterion runs, 5 rounds, N/4 operations under callgrind (a few minutes
# on 2 cores). Everything goes to target/bench-report/ (summary.txt, the callgrind files
# of every side for `callgrind_annotate`).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
if [[ "${1:-}" == "--quick" ]]; then quick=1; shift; fi
pairs=("$@")
rounds=15; div=1; crit=(--warm-up-time 1 --measurement-time 4)
if ((quick)); then rounds=5; div=4; crit=(--warm-up-time 0.3 --measurement-time 1); fi

report=target/bench-report
mkdir -p "$report"
summary=$report/summary.txt
base=/dev/shm; [[ -d $base ]] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/custodian-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CUSTODIAN_BENCH_DIR=$work

exe() { # the executable of bench $2 of package $1
  cargo bench --no-run -p "$1" --bench "$2" --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$2"
}

{
  echo "# custodian benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(uname -sr), $(rustc --version), quick=$quick"
} | tee "$summary"

echo "== building (release)"
cargo bench --no-run -p tokio-custodian -p tokio-custodian-audio >/dev/null 2>&1 ||
  cargo bench --no-run -p tokio-custodian -p tokio-custodian-audio
pairs_exe=$(exe tokio-custodian pairs)
audio_exe=$(exe tokio-custodian-audio pairs_audio)
memory_exe=$(exe tokio-custodian memory)

if ((${#pairs[@]} == 0)); then
  echo "== 1. criterion (interleaved per operation), ratio of medians" | tee -a "$summary"
  rm -rf target/criterion # no stale groups from older runs in the summary
  cargo bench -q -p tokio-custodian --bench core --bench process -- "${crit[@]}" >"$report/criterion.txt" 2>&1
  cargo bench -q -p tokio-custodian-audio --bench decode -- "${crit[@]}" >>"$report/criterion.txt" 2>&1
  python3 - <<'PY' | tee -a "$summary"
import json, pathlib
root = pathlib.Path("target/criterion")
for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "report"):
    med = {}
    if (group / "new/estimates.json").exists():
        med[group.name] = json.loads((group / "new/estimates.json").read_text())["median"]["point_estimate"]
    for f in group.glob("*/new/estimates.json"):
        med[f.parent.parent.name] = json.loads(f.read_text())["median"]["point_estimate"]
    managed = [k for k in med if k.startswith("managed") or k in ("journal_on",)]
    raws = [k for k in med if k not in managed]
    for m in managed:
        for r in raws:
            print(f"{group.name:<40} {m} {med[m]/1e3:9.1f} µs / {r} {med[r]/1e3:9.1f} µs = {med[m]/med[r]:.2f}×")
    if not managed or not raws:
        for k, v in med.items():
            print(f"{group.name:<40} {k} {v/1e3:9.1f} µs")
PY
fi

echo "== 2. interleaved rounds ($rounds), managed/raw time per round: median (spread)" | tee -a "$summary"
"$pairs_exe" time "$rounds" "${pairs[@]}" | tee -a "$summary"
if ((${#pairs[@]} == 0)) || [[ " ${pairs[*]} " == *" audio_100ms "* ]]; then
  "$audio_exe" time "$rounds" audio_100ms | tee -a "$summary"
fi

echo "== 3. instructions per operation (callgrind, all threads), managed/raw" | tee -a "$summary"
count() { # exe pair side n -> instructions
  local out=$work/cg.$2.$3.$4
  # A fresh directory and a fresh pid namespace per run: what a run without teardown
  # leaves (temp roots, journals, children) must not become the next run's work, and in
  # the namespace every run is pid 1, so the names would collide.
  mkdir -p "$work/run.$2.$3.$4"
  CUSTODIAN_BENCH_DIR=$work/run.$2.$3.$4 unshare --fork --pid --mount-proc -- valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$1" count "$2" "$3" "$4" 2>"$out.log" >/dev/null </dev/null
  if [[ "$4" != 0 ]]; then cp "$out" "$report/callgrind.$2.$3.out"; fi
  grep -o 'Collected : [0-9]*' "$out.log" | grep -o '[0-9]*$'
}
{ "$pairs_exe" list; "$audio_exe" list; } | while read -r name batch sides; do
  if ((${#pairs[@]})) && [[ " ${pairs[*]} " != *" $name "* ]]; then continue; fi
  # A time against the grace, not a CPU cost; and 200 forks under valgrind, whose
  # setup varies between two runs by more than the release itself costs.
  [[ $name == sigterm_grace || $name == children_200 ]] && continue
  bin=$pairs_exe; [[ $name == audio_* ]] && bin=$audio_exe
  n=$((batch / div)); ((n > 0)) || n=1
  line="$(printf '%-24s' "$name")"
  first=""
  for side in ${sides//,/ }; do
    z=$(count "$bin" "$name" "$side" 0); c=$(count "$bin" "$name" "$side" "$n")
    per=$(( (c - z) / n ))
    line+=" $side $per Ir/op"
    if [[ -z $first ]]; then first=$per; else
      line+=" ($(python3 -c "print(f'{$first/$per:.2f}')")×)"; fi
  done
  echo "$line [N=$n]" | tee -a "$summary"
done

if ((${#pairs[@]} == 0)); then
  echo "== 4. memory" | tee -a "$summary"
  "$memory_exe" | tee -a "$summary"
fi
echo "summary: $summary"
