"""The library's dependency graph: no import cycle anywhere in the package, and numerical modules free of
provenance, I/O and subprocesses — counting imports inside functions too, which would otherwise hide an edge."""
import ast
import subprocess
import sys

from conftest import ROOT

PKG = ROOT / "workflow" / "gnc"


def _modules() -> dict[str, object]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = f
    return mods


def _imports() -> dict[str, tuple[set[str], set[str]]]:
    """gnc module -> (gnc modules, top-level outside modules) it imports anywhere in its source: at module
    level or inside a function (where an import would otherwise hide an edge)."""
    mods = _modules()
    out = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        ours, outside = set(), set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in mods:
                    if t != name and not name.startswith(t + "."):  # a package's own parent: no edge
                        ours.add(t)
                elif t.split(".")[0] != "gnc":
                    outside.add(t.split(".")[0])
        out[name] = (ours, outside)
    return out


def import_graph() -> dict[str, set[str]]:
    """gnc module -> gnc modules it imports anywhere in its source (module level or in a function)."""
    return {m: ours for m, (ours, _) in _imports().items()}


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules ``start`` imports, directly or through others (``start`` included)."""
    seen, todo = {start}, [start]
    while todo:
        for w in graph[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


#: numerical modules: pure functions of arrays, free of provenance, file I/O, the job and subprocesses
MATHS = ("gnc.maths", "gnc.metrics.ovr", "gnc.losses", "gnc.codes._common", "gnc.codes._polish", "gnc.codes._smooth",
         "gnc.codes.softmax", "gnc.codes.tammes", "gnc.codes.hardmax", "gnc.codes.ufm")
NOT_IN_MATHS = ("gnc.provenance", "gnc.io", "gnc.jobs", "gnc.config", "gnc.fingerprint")


def test_the_graph_sees_function_local_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "gnc"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import numpy\n\ndef f():\n    from . import b\n    import subprocess\n")
    (pkg / "b.py").write_text("from .sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("def g():\n    from ..a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", pkg)
    found = _imports()
    assert found["gnc.a"] == ({"gnc.b"}, {"numpy", "subprocess"})
    assert found["gnc.sub.c"][0] == {"gnc.a"}  # relative import from a sub-package, inside a function
    assert cycles(import_graph()) == [["gnc.a", "gnc.b", "gnc.sub.c"]]
    assert reach(import_graph(), "gnc.b") == {"gnc.a", "gnc.b", "gnc.sub.c"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_import_graph_has_no_cycle():
    found = cycles(import_graph())
    assert not found, f"import cycles (module-level and function-local imports): {found}"
    assert "gnc.config" not in import_graph()["gnc.provenance"]


def test_maths_modules_reach_no_provenance_io_or_subprocess():
    imports = _imports()
    graph = {m: ours for m, (ours, _) in imports.items()}
    for m in MATHS:
        reached = reach(graph, m)
        assert not reached & set(NOT_IN_MATHS), (m, sorted(reached & set(NOT_IN_MATHS)))
        spawn = sorted(r for r in reached if "subprocess" in imports[r][1])
        assert not spawn, (m, "reaches subprocess through", spawn)


def test_maths_modules_import_no_provenance_or_io():
    """Independent of the static graph: the gnc modules Python actually loads (not subprocess: torch and
    numpy load it themselves)."""
    code = ("import sys; import " + ", ".join(MATHS) + "; "
            "print(sorted(m for m in sys.modules if m in " + repr(NOT_IN_MATHS) + "))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(PKG.parent), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]", p.stdout
