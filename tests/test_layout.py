"""The layout of csrc/ follows its layers (csrc/README.md): every library file sits in a layer
folder, and no file includes a header of a layer above its own (lower layers never call up).

Checked from the sources themselves, no compiler needed: the quoted #include lines of every
.c/.h file are resolved like a C preprocessor does for "..." includes (relative to the file),
and the layer of the target must be the file's own, one of the layers it may use, or the
public header. A deliberate upward include in a copy of the tree is caught (the checker can
fail). The source lists of the two builds (csrc/Makefile, loomrt/_build_ffi.py) must agree.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
from typing import Dict, List, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")

# What each layer may include besides itself (csrc/README.md). include/ (the public header)
# is open to all. The outside folders (tests, fuzz, tools) may include anything.
ALLOWED: Dict[str, Set[str]] = {
    "base": set(),
    "formats": {"base"},
    "text": {"base", "formats"},
    "kernels": {"base"},
    "model": {"base", "formats", "kernels"},
    "train": {"base", "formats", "kernels", "model"},
    "weave": {"base", "formats", "kernels", "model"},
    "api": {"base", "formats", "text", "kernels", "model", "train", "weave"},
}
OUTSIDE = {"tests", "fuzz", "tools", "include", "build"}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(path: str, csrc: str) -> str:
    rel = os.path.relpath(path, csrc).replace(os.sep, "/")
    return rel.split("/")[0] if "/" in rel else ""


def violations(csrc: str) -> Tuple[List[str], List[str]]:
    """(upward or unresolved includes, library files outside a layer folder)."""
    bad: List[str] = []
    stray: List[str] = []
    for dirpath, dirs, files in os.walk(csrc):
        dirs[:] = [d for d in dirs if d != "build"]
        for name in files:
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(dirpath, name)
            layer = layer_of(path, csrc)
            if layer in OUTSIDE:
                continue
            if layer not in ALLOWED:
                stray.append(os.path.relpath(path, csrc))
                continue
            text = open(path, encoding="utf-8").read()
            for inc in INCLUDE_RE.findall(text):
                target = os.path.normpath(os.path.join(dirpath, inc))
                rel = os.path.relpath(path, csrc)
                if not os.path.exists(target):
                    bad.append(f"{rel}: #include \"{inc}\" does not resolve relative to the file")
                    continue
                tl = layer_of(target, csrc)
                if tl == layer or tl == "include" or tl in ALLOWED[layer]:
                    continue
                bad.append(f"{rel} ({layer}) includes {os.path.relpath(target, csrc)} ({tl or 'csrc/'}): "
                           f"{layer} may use only {sorted(ALLOWED[layer]) or 'itself'}")
    return bad, stray


def test_no_upward_include_and_every_file_in_a_layer() -> None:
    bad, stray = violations(CSRC)
    assert not stray, f"library files outside the layer folders (csrc/README.md): {stray}"
    assert not bad, "includes against the layer order:\n" + "\n".join(bad)


def test_the_checker_catches_an_upward_include(tmp_path) -> None:
    tree = str(tmp_path / "csrc")
    shutil.copytree(CSRC, tree, ignore=shutil.ignore_patterns("build"))
    victim = os.path.join(tree, "formats", "json.c")
    text = open(victim, encoding="utf-8").read()
    open(victim, "w", encoding="utf-8").write('#include "../model/model.h"\n' + text)
    bad, _ = violations(tree)
    assert any("formats/json.c (formats) includes model/model.h (model)" in b for b in bad), bad
    open(os.path.join(tree, "stray.c"), "w").write("int x;\n")
    _, stray = violations(tree)
    assert stray == ["stray.c"]


def test_makefile_and_python_build_compile_the_same_sources() -> None:
    spec = importlib.util.spec_from_file_location("_bf", os.path.join(ROOT, "loomrt", "_build_ffi.py"))
    bf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bf)
    make = open(os.path.join(CSRC, "Makefile"), encoding="utf-8").read()
    m = re.search(r"^LAYERS\s*=(.*)$", make, re.M)
    assert m and m.group(1).split() == bf.LAYERS, "csrc/Makefile LAYERS and loomrt/_build_ffi.py LAYERS differ"
    assert set(bf.LAYERS) == set(ALLOWED), "the layer list of this test is out of date"
    on_disk = sorted(os.path.relpath(os.path.join(d, f), CSRC).replace(os.sep, "/")
                     for layer in bf.LAYERS for d, _, fs in os.walk(os.path.join(CSRC, layer)) for f in fs
                     if f.endswith(".c"))
    assert sorted(bf.SOURCES) == on_disk
    # the include order of the layer list is the layer order: each may use only earlier ones
    for i, layer in enumerate(bf.LAYERS):
        assert ALLOWED[layer] <= set(bf.LAYERS[:i]), layer


@pytest.mark.parametrize("pair", [("model/model.c", "lrt_text_init"), ("model/model.c", "lrt_model_attach_tokenizer"),
                                  ("model/state.c", "lrt_gen_stop"), ("api/generate.c", "lrt_session_eval(")])
def test_no_call_up_or_back_into_the_gate(pair) -> None:
    """The import circles issue 10 named: the model does not attach tokenizers or chat
    templates, a state load does not reach into generation, generation does not call the
    exported lrt_session_eval."""
    rel, name = pair
    text = open(os.path.join(CSRC, rel), encoding="utf-8").read()
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    assert name not in code, f"{rel} still calls {name}"


# ---- Python: no import circles in loomrt/ --------------------------------------------------------

PKG = os.path.join(ROOT, "loomrt")


def python_imports(pkg: str) -> Dict[str, Set[str]]:
    """Module -> the package modules it imports, at module level or inside functions.

    Every ``import`` / ``from ... import`` node of every .py file of the package counts
    (function-level imports make circles too, only later). ``from . import X`` names the
    module X when X.py exists, else the package itself (``__init__``)."""
    import ast

    name = os.path.basename(pkg)
    mods = {f[:-3] for f in os.listdir(pkg) if f.endswith(".py")}
    graph: Dict[str, Set[str]] = {}
    for mod in sorted(mods):
        tree = ast.parse(open(os.path.join(pkg, mod + ".py"), encoding="utf-8").read())
        deps: Set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    parts = a.name.split(".")
                    if parts[0] == name and (len(parts) == 1 or parts[1] in mods):
                        deps.add(parts[1] if len(parts) > 1 else "__init__")
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0 and (node.module or "").split(".")[0] != name:
                    continue  # another package
                if node.level > 1:
                    deps.add("__init__")  # above the package: not expected here
                    continue
                path = (node.module or "").split(".")
                if node.level == 0:
                    path = path[1:]
                if path and path[0]:
                    if path[0] in mods:  # else a compiled module (_loomrt_cffi): a leaf
                        deps.add(path[0])
                else:
                    for a in node.names:
                        deps.add(a.name if a.name in mods else "__init__")
        deps.discard(mod)
        graph[mod] = deps
    return graph


def import_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Every elementary circle found by a depth-first search (each reported once, from its
    smallest name)."""
    found: Set[Tuple[str, ...]] = set()
    out: List[List[str]] = []

    def dfs(start: str, node: str, path: List[str], on_path: Set[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                cyc = tuple(path)
                if cyc not in found:
                    found.add(cyc)
                    out.append(path + [start])
            elif nxt > start and nxt not in on_path:
                on_path.add(nxt)
                dfs(start, nxt, path + [nxt], on_path)
                on_path.discard(nxt)

    for start in sorted(graph):
        dfs(start, start, [start], {start})
    return out


def test_python_package_has_no_import_circle() -> None:
    graph = python_imports(PKG)
    assert "audit" in graph and "model" in graph["__init__"]  # the parser sees the package
    assert "audit" in graph["model"], "model.py imports audit (receipts point one way: model -> audit)"
    cycles = import_cycles(graph)
    assert not cycles, "import circles in loomrt/ (function-level imports included):\n" + \
        "\n".join(" -> ".join(c) for c in cycles)


def test_the_import_checker_catches_a_circle(tmp_path) -> None:
    pkg = tmp_path / "loomrt"
    shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.pyd"))
    audit = pkg / "audit.py"
    text = audit.read_text(encoding="utf-8")
    # a lazy import inside a function is still a circle
    audit.write_text(text + "\n\ndef _late():\n    from .model import Model\n    return Model\n", encoding="utf-8")
    cycles = import_cycles(python_imports(str(pkg)))
    assert ["audit", "model", "audit"] in cycles, cycles
    audit.write_text(text + "\n\ndef _late():\n    from . import __version__\n    return __version__\n",
                     encoding="utf-8")
    assert any(c[0] == "__init__" and "audit" in c for c in import_cycles(python_imports(str(pkg))))


def test_no_package_module_shadows_the_standard_library():
    """A module in loomrt/ named like a standard-library one (inspect.py did) is imported instead
    of it when a script in that folder runs (`python loomrt/_build_ffi.py` puts loomrt/ first on
    sys.path): numpy's `import inspect` then got loomrt's and the sanitizer build broke."""
    import sys

    pkg = os.path.join(os.path.dirname(CSRC), "loomrt")
    names = {n[:-3] for n in os.listdir(pkg) if n.endswith(".py")}
    assert not names & set(sys.stdlib_module_names), sorted(names & set(sys.stdlib_module_names))
