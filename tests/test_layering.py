"""The library's dependency graph: maths modules free of provenance and I/O, and no import cycle
through the configuration or the provenance layer — counting imports inside functions too, which
would otherwise hide a cycle."""
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


def import_graph() -> dict[str, set[str]]:
    """gnc module -> gnc modules it imports anywhere in its source (module level or in a function)."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
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
                if t in mods and t != name and not name.startswith(t + "."):  # a package's own parent: no edge
                    graph[name].add(t)
    return graph


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


def test_the_graph_sees_function_local_imports():
    g = import_graph()
    assert "gnc.codes.compare" in g["gnc.comparison"]  # imported inside a function only
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_through_config_or_provenance_of_jobs():
    found = [c for c in cycles(import_graph()) if {"gnc.config", "gnc.jobs"} & set(c)]
    assert not found, found
    assert "gnc.config" not in import_graph()["gnc.provenance"]


def test_maths_modules_import_no_provenance_or_io():
    code = ("import sys; import gnc.metrics, gnc.losses; "
            "print(sorted(m for m in sys.modules if m in ('gnc.provenance', 'gnc.io', 'gnc.jobs')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(PKG.parent), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]", p.stdout
