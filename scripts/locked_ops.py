#!/usr/bin/env python3
"""Locked read-modify-writes per operation of one side of a pair, in the binary's own code.

Usage: scripts/locked_ops.py PAIRS_EXE PAIR SIDE [N]
  e.g. scripts/locked_ops.py target/release/deps/pairs-<hash> scope managed 2000

Runs the side under callgrind twice (`count PAIR SIDE N` and `count PAIR SIDE 0`, each
in a fresh pid namespace, as scripts/bench.sh does), with per-instruction counts, and
sums the executions of the binary's `lock`-prefixed instructions and of `xchg` with
memory (implicitly locked), difference / N, per function. Code in shared libraries
(glibc) is not counted. On this VM an uncontended locked operation costs about
1.2-2.2 ns (measured on the scope pair, issue 22), so a count is a time estimate
that does not drift with the machine's load.
"""
import collections
import os
import re
import subprocess
import sys
import tempfile


def run(exe, pair, side, n, work):
    out = os.path.join(work, f"cg.{n}")
    d = os.path.join(work, f"run.{n}")
    os.makedirs(d)
    subprocess.run(
        ["unshare", "--fork", "--pid", "--mount-proc", "--", "valgrind", "--tool=callgrind",
         "--dump-instr=yes", "--dump-line=no", "--compress-pos=no", "--compress-strings=no",
         f"--callgrind-out-file={out}", exe, "count", pair, side, str(n)],
        env={**os.environ, "CUSTODIAN_BENCH_DIR": d},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return out


def costs(path, exe_name):
    """Self cost per instruction address of `exe_name`'s code, and each function's first
    executed address."""
    c, first, obj, fn, skip = collections.Counter(), {}, None, None, False
    for line in open(path):
        if line.startswith(("ob=", "fn=", "fl=", "fi=", "fe=", "cob=", "cfn=", "cfi=", "cfl=", "calls=")):
            key, _, val = line.rstrip("\n").partition("=")
            if key == "ob":
                obj = val
            elif key == "fn":
                fn = val
            elif key == "calls":
                skip = True  # the next cost line is the call's inclusive cost
            continue
        m = re.match(r"^(0x[0-9a-f]+)\s+(\d+)", line)
        if not m:
            continue
        if skip:
            skip = False
            continue
        if obj and os.path.basename(obj) == exe_name:
            a = int(m.group(1), 16)
            c[a] += int(m.group(2))
            first[fn] = min(first.get(fn, a), a)
    return c, first


def main():
    exe, pair, side = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    locked, start, cur = {}, {}, None
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", exe],
                         capture_output=True, text=True, check=True).stdout
    for line in dis.splitlines():
        m = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
        if m:
            cur = m.group(2)
            start[cur] = int(m.group(1), 16)
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(.*)$", line)
        if m and (m.group(2).startswith("lock ") or re.match(r"xchg\s+.*\(", m.group(2))):
            locked[int(m.group(1), 16)] = (cur, m.group(2))
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as work:
        c0, _ = costs(run(exe, pair, side, 0, work), os.path.basename(exe))
        cn, first = costs(run(exe, pair, side, n, work), os.path.basename(exe))
    base = first["main"] - start["main"]  # where valgrind loaded the (PIE) binary
    per = collections.Counter()
    for a, (f, text) in locked.items():
        d = cn.get(a + base, 0) - c0.get(a + base, 0)
        if d > n // 2:
            per[(f, text)] += d
    print(f"{pair} {side}: {sum(per.values()) / n:.2f} locked operations per operation [N={n}]")
    for (f, text), d in per.most_common():
        print(f"{d / n:6.2f}  {text:36.36s} {f[:110]}")


if __name__ == "__main__":
    main()
