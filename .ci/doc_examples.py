"""Counts the public items of a crate that have no doc example (no code block, and no
"for an example" pointer to one): structs, enums, traits, functions, type aliases,
constants, statics, inherent methods and trait methods; fields and variants are not
counted. Needs the nightly toolchain's JSON output:

    cargo +nightly rustdoc -p tokio-custodian -- -Z unstable-options --output-format json
    python3 .ci/doc_examples.py target/doc/tokio_custodian.json [list]

Prints "N public items, M with an example..."; with `list`, each item without one."""
import json, sys, re
d = json.load(open(sys.argv[1]))
idx = d["index"]; paths = d["paths"]
root = idx[str(d["root"])] if str(d["root"]) in idx else idx[d["root"]]
seen = {}
def has_ex(doc):
    doc = doc or ""
    return "```" in doc or re.search(r"for an example|for examples|example:|Example", doc) is not None
def visit(item_id, prefix):
    it = idx.get(str(item_id))
    if it is None or it.get("crate_id") != 0: return
    inner = it["inner"]; kind = next(iter(inner))
    name = it.get("name")
    if kind == "module":
        for c in inner["module"]["items"]:
            visit(c, prefix)
        return
    if kind == "use":
        u = inner["use"]
        if u.get("id") is not None: visit(u["id"], prefix)
        return
    if kind in ("struct","enum","trait","function","type_alias","constant","static"):
        key = (kind, name)
        if it["id"] in seen: return
        seen[it["id"]] = (kind, name, has_ex(it.get("docs")), it.get("span",{}).get("filename"))
        impls = []
        if kind in ("struct","enum"): impls = inner[kind].get("impls", [])
        if kind == "trait":
            for m in inner["trait"]["items"]:
                mi = idx.get(str(m))
                if mi and "function" in mi["inner"]:
                    seen[mi["id"]] = ("method", f"{name}::{mi['name']}", has_ex(mi.get("docs")), mi.get("span",{}).get("filename"))
        for imp in impls:
            ii = idx.get(str(imp))
            if not ii: continue
            im = ii["inner"]["impl"]
            if im.get("trait") is not None or im.get("is_synthetic") or im.get("blanket_impl"): continue
            for m in im["items"]:
                mi = idx.get(str(m))
                if mi and "function" in mi["inner"] and mi.get("visibility") == "public":
                    seen[mi["id"]] = ("method", f"{name}::{mi['name']}", has_ex(mi.get("docs")), mi.get("span",{}).get("filename"))
visit(d["root"], "")
items = list(seen.values())
missing = [i for i in items if not i[2]]
print(f"{len(items)} public items, {len(items)-len(missing)} with an example, {len(missing)} without ({100*(len(items)-len(missing))/len(items):.1f}% covered)")
if len(sys.argv) > 2:
    for k,n,_,f in sorted(missing, key=lambda x:(x[3] or "", x[1])):
        print(f"  {f}: {k} {n}")
