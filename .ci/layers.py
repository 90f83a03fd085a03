#!/usr/bin/env python3
"""Check that custodian's `crate::` paths only point down the layers.

The layers of crates/custodian/src, lowest first. A module may name (`use crate::...`, a
path in code, or a doc link `crate::module::...`) only modules of its own layer or of a
lower one:

  1. sys        OS primitives, no knowledge of the rest: safe removal, creation, mounts,
                the private root, processes, abandoned roots.
  2. vocabulary kinds (kind), errors (error), ids (id), labels (label), sites and
                records (leak),
                counters (stats), the shutdown report (report), quotas' and
                containment's settings and reasons (quota, containment).
  2b. services  the blocking I/O the shared state drives, over sys and the
                vocabulary: the crash journal's writer, records, compaction and sweep
                report (journal), the child subreaper's proofs, adoptions and stops
                (reaper). Their blocking calls run on the blocking pool or a thread of
                their own, never on a runtime thread for long.
  3. registry   the registry, its extension API (Reclaim, Cleanup) and the per-scope
                state its entries point to (registry/scope_state.rs).
  4. inner      the supervisor's shared state: registration and the release decision,
                records, retries, the hook list, and the `Supervisor` type itself
                (declared here so that scopes and guards can hold one).
  5. scope      scopes, their runner and sweep, `Registration`, scoped tasks.
  6. resource   every kind that hands out a guard (files, temp files and dirs, child
                processes; locks, atomic writers and the journal's guards go here).
  7. lifecycle  shutdown, hook, signal, emergency (a journal's recovery goes here).
  8. handle     supervisor: the public handle's methods and its builder.
  9. tools      optional tools over the handle: the leak check (testing, which reads
                supervisor::census), the metrics facade (metrics).

Where a lower layer must reach up, a callback or a narrow trait is passed down (for
example `inner::Config::on_last_drop`, set by the builder to the emergency path).

Where the coming features go: locks and atomic writers are resources (layer 6, built
on guards); quotas are an admission check of the shared state (layer 4, `Inner::admit`
and `register`); the journal's file primitives are in `sys` (1), its writer and records in
the services (2b), written by `inner` (4) when it registers and releases, and read back
by recovery (7).

What is checked: every `crate::NAME` in a file under src/ (outside its `#[cfg(test)] mod
tests` block or out-of-line `#[cfg(test)] mod NAME;` file: unit tests may drive a module
through the public handle), where NAME is a
module or a name lib.rs re-exports (resolved to the module it comes from), and every
module of a `use crate::{a::x, b::y}` group. Exempt, on purpose: a doc comment (`///`,
`//!`) naming a root re-export such as `crate::Supervisor::shutdown` — rustdoc resolves
it, `cargo doc -D warnings` checks it, it creates no dependency, and a low-level type's
docs should say which public operation produces it. A doc link through a module path
(`crate::supervisor::...`) is not exempt. Every top-level module must be assigned to a
layer, so that a new module has to be placed.

Exit 1 with `file:line` for each upward reference; print a one-line summary when clean.
"""
import os
import re
import sys

LAYERS = [
    ("sys", ["sys"]),
    ("vocabulary", ["kind", "error", "id", "label", "leak", "stats", "report", "quota", "containment"]),
    ("services", ["journal", "reaper"]),
    ("registry", ["registry"]),
    ("inner", ["inner"]),
    ("scope", ["scope"]),
    ("resource", ["resource"]),
    ("lifecycle", ["shutdown", "hook", "signal", "emergency", "recovery", "drain", "notify", "inspect", "watcher"]),
    ("handle", ["supervisor"]),
    ("tools", ["testing", "metrics"]),
]

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "crates", "custodian", "src")

layer_of = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}


def strip_tests(text):
    """Blank out the `#[cfg(test)] mod tests { ... }` block, keeping line numbers."""
    m = re.search(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)
    if not m:
        return text
    tail = text[m.start():]
    return text[: m.start()] + re.sub(r"[^\n]", " ", tail)


def root_reexports():
    """Map each name lib.rs re-exports (`pub use module::{A, B}`) to its module."""
    lib = open(os.path.join(SRC, "lib.rs")).read()
    names = {}
    for m in re.finditer(r"pub use (\w+)(?:::\w+)*::\{([^}]*)\};", lib):
        for n in re.findall(r"\w+", m.group(2)):
            names[n] = m.group(1)
    for m in re.finditer(r"pub use (\w+)(?:::\w+)*::(\w+);", lib):
        names[m.group(2)] = m.group(1)
    return names


def test_only_files():
    """Files of out-of-line test modules (`#[cfg(test)] mod NAME;` in `x.rs` or
    `x/mod.rs`): unit tests, exempt like an inline `mod tests` block."""
    out = set()
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            base = dirpath if f == "mod.rs" else os.path.join(dirpath, f.removesuffix(".rs"))
            for name in re.findall(r"#\[cfg\(test\)\]\s*mod (\w+);", open(path).read()):
                out.add(os.path.normpath(os.path.join(base, name + ".rs")))
                out.add(os.path.normpath(os.path.join(base, name, "mod.rs")))
    return out


def main():
    reexports = root_reexports()
    tests_only = test_only_files()
    errors, checked, exempt, modules = [], 0, 0, set()
    for dirpath, _, files in os.walk(SRC):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            if os.path.normpath(path) in tests_only:
                continue
            rel = os.path.relpath(path, SRC)
            top = rel.split(os.sep)[0].removesuffix(".rs")
            if top == "lib":
                continue
            modules.add(top)
            if top not in layer_of:
                errors.append(f"{rel}: module `{top}` is in no layer: add it to LAYERS in .ci/layers.py")
                continue
            here = layer_of[top]
            text = strip_tests(open(path).read())
            for lineno, line in enumerate(text.split("\n"), 1):
                doc = line.lstrip().startswith(("///", "//!"))
                targets = [m.group(1) for m in re.finditer(r"\bcrate::(\w+)", line)]
                for g in re.finditer(r"\bcrate::\{([^}]*)\}?", line):
                    targets += re.findall(r"(?:^|[,{\s])(\w+)::", g.group(1))
                # A `use crate::{` group over several lines.
                if re.match(r"\s*(\w+)::", line) and in_use_group(text, lineno):
                    targets.append(re.match(r"\s*(\w+)::", line).group(1))
                for t in targets:
                    if t in layer_of:
                        mod, via = t, ""
                    elif t in reexports:
                        if doc:
                            exempt += 1
                            continue
                        mod, via = reexports[t], f" (re-exported from `{reexports[t]}`)"
                    else:
                        continue
                    checked += 1
                    if mod != top and layer_of[mod] > here:
                        errors.append(
                            f"{rel}:{lineno}: `{top}` ({LAYERS[here][0]}, layer {here + 1}) names "
                            f"`crate::{t}`{via} ({LAYERS[layer_of[mod]][0]}, layer {layer_of[mod] + 1})"
                        )
    if errors:
        print("\n".join(errors))
        print(f"layers: {len(errors)} upward reference(s)")
        sys.exit(1)
    print(
        f"layers OK: {len(modules)} modules in {len(LAYERS)} layers, {checked} crate:: "
        f"references point down ({exempt} doc links to root re-exports exempt)"
    )


def in_use_group(text, lineno):
    """Whether line `lineno` (1-based) is inside a multi-line `use crate::{ ... };`."""
    before = "\n".join(text.split("\n")[: lineno - 1])
    start = before.rfind("use crate::{")
    return start != -1 and ";" not in before[start:]


if __name__ == "__main__":
    main()
