#!/usr/bin/env python3
"""Age sweep benchmark (docs/benchmarks.md, "The age sweep").

A 10,000-entry tree, a third of its files written again after the age passed (young);
`custodian sweep` dry and real, timed by the report's `took_ms`, and the opens of
/proc/locks and /proc/net/unix counted with strace.

  cargo build --release -p tokio-custodian-cli
  scripts/age-sweep-bench.py target/release/custodian /tmp/age-bench all   # --all: 100 dirs x 10 x 9 files
  scripts/age-sweep-bench.py target/release/custodian /tmp/age-bench own   # default: 100 roots x 99 files

The scratch dir is its own (ext4 without a journal creates files slowly for a minute
after a mass delete); it is removed at the end.
"""
import json, os, shutil, subprocess, sys, time
B = sys.argv[1]            # the custodian binary
root = sys.argv[2]         # a scratch dir (its own: mass deletes slow later creation on ext4)
mode = sys.argv[3] if len(sys.argv) > 3 else "all"
AGE = 5  # seconds: every run of one tree ends before its young entries age
def build():
    shutil.rmtree(root, ignore_errors=True)
    base, state = os.path.join(root, "base"), os.path.join(root, "state")
    os.makedirs(base); os.makedirs(state); os.chmod(state, 0o700)
    files = []
    n = 0
    if mode == "all":
        for d in range(100):                       # 100 + 100*10 dirs + 100*10*9 files = 10,100
            for s in range(10):
                p = os.path.join(base, f"d{d}", f"s{s}")
                os.makedirs(p)
                for f in range(9):
                    fp = os.path.join(p, f"f{f}")
                    open(fp, "w").write("x")
                    files.append(fp)
        n = 100 + 1000 + 9000
    else:                                          # 100 abandoned roots of 99 files = 10,000
        for r in range(100):
            p = os.path.join(base, f"custodian-{r:032x}")
            os.makedirs(p); os.chmod(p, 0o700)
            for f in range(99):
                fp = os.path.join(p, f"f{f}")
                open(fp, "w").write("x")
                files.append(fp)
        n = 100 * 100
    time.sleep(AGE + 0.3)
    for fp in files[::3]:                          # a third written again: young
        open(fp, "a").write("y")
    return base, state, n
def run(extra):
    cmd = ["strace", "-f", "-qq", "-e", "trace=openat", "-o", os.path.join(root, "strace.txt"),
           B, "sweep", "--json", "--state-dir", state, "--base", base, "--older-than", f"{AGE}s"] + extra
    t = time.monotonic(); out = subprocess.run(cmd, capture_output=True); el = time.monotonic() - t
    tr = open(os.path.join(root, "strace.txt")).read()
    v = json.loads(out.stdout)["age"]
    return dict(extra=" ".join(extra), code=out.returncode, wall_ms=round(el * 1000),
                took_ms=round(v["took_ms"], 1), scanned=v["scanned"], removed=len(v["removed"]),
                kept=len(v["kept"]), proc_locks_reads=tr.count('"/proc/locks"'),
                proc_net_unix_reads=tr.count('"/proc/net/unix"'))
def untraced(extra):
    cmd = [B, "sweep", "--json", "--state-dir", state, "--base", base, "--older-than", f"{AGE}s"] + extra
    out = subprocess.run(cmd, capture_output=True)
    v = json.loads(out.stdout)["age"]
    return dict(took_ms=round(v["took_ms"], 1), removed=len(v["removed"]), kept=len(v["kept"]), scanned=v["scanned"])
flags = ["--all"] if mode == "all" else []
base, state, n = build()
print(f"entries: {n}")
print("real run:", untraced(flags))
base, state, n = build()
print("dry runs:", [untraced(flags + ["--dry-run"]) for _ in range(3)])
print("traced dry run:", run(flags + ["--dry-run"]))
base, state, n = build()
print("traced real run:", run(flags))
shutil.rmtree(root, ignore_errors=True)
