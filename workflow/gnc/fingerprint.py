"""Fingerprint of the code a Snakemake job runs: its ``workflow/scripts/<name>.py`` plus every
definition of the ``gnc`` package that the script reaches, found by static analysis (``ast``; nothing
is imported, so computing it never loads torch). The rules pass ``code_fingerprint("<script>")``
(rules/common.smk) as a param, so Snakemake's params trigger reruns exactly the jobs whose code changed;
every result file records it (``gnc_code_fingerprint``) and ``gnc-provenance --stale`` recomputes it.

What counts (``closure``):

* the unit is a top-level statement of a module (a function, a class, an assignment, an import...);
  the script's statements all count;
* a statement counts when code that counts names it: a bare name bound in its module, an imported
  name, an attribute of an imported module (``F.make_figure``, ``gnc.metrics.measures.gnc1``), also
  through imports inside functions and re-exports in ``__init__.py``; a module used as a value (not
  through an attribute) counts whole;
* importing a module runs its top-level statements that bind no name, so those count for every module
  the job loads (its packages, and what their top-level imports load); ``if __name__ == "__main__"``
  blocks do not;
* non-Python files inside a loaded package folder (``gnc/codes/data/*.csv``) count by their bytes;
* ``select`` narrows a *dispatch table* (a module-level dict literal such as ``gnc.figures.FIGURES``)
  to one key: only that entry counts. A selected table that the analysis never reaches, or that is not
  a dict literal with that key, is an error (a rename must not silently widen or empty the fingerprint).

Each counted statement enters as a canonical form of its syntax tree without docstrings, positions and
empty fields: comments, docstrings, formatting and the order of definitions do not count; any other
change does (a renamed local variable too). Dynamic access (``getattr(module, name)`` with a computed
name, ``importlib.import_module``) is not followed: the package uses neither on its own modules.
"""

from __future__ import annotations

import ast
import atexit
import hashlib
import importlib.util
import json
import os
from pathlib import Path

from .io import write_text_atomic
from .provenance import decode_attr, read_attrs

PACKAGE = "gnc"
#: the folder holding ``gnc/`` and ``scripts/`` (the repository's ``workflow/``)
WORKFLOW_DIR = Path(__file__).resolve().parents[1]
#: bumped when the analysis changes, so fingerprints of different analyses never compare equal
FORMAT = "gnc-code-1"


class FingerprintError(ValueError):
    """The code cannot be fingerprinted as asked (syntax error, unknown script, bad selection)."""


# ------------------------------------------------------------------------------------ canonical form

def _strip_docstring(body: list) -> list:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:]
    return body


_DOC_OWNERS = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class _Facts:
    """One pass over a syntax tree: its canonical text, the imports in it and the names it uses."""

    def __init__(self):
        self.parts: list[str] = []
        self.imports: list[list] = []
        self.uses: set[tuple] = set()

    def visit(self, node, chained: bool = False) -> None:
        cls = type(node)
        emit = self.parts.append
        if cls is list:
            emit("[")
            for v in node:
                self.visit(v)
                emit(",")
            emit("]")
            return
        if not isinstance(node, ast.AST):
            emit(repr(node))
            return
        chain = False
        if cls is ast.Import:
            self.imports.append(["import", 0, None, [[a.name, a.asname] for a in node.names]])
        elif cls is ast.ImportFrom:
            self.imports.append(["from", node.level, node.module, [[a.name, a.asname] for a in node.names]])
        elif not chained:
            if cls is ast.Attribute:  # gnc.metrics.measures.f: one use, the inner nodes are part of it
                attrs, inner = [], node
                while type(inner) is ast.Attribute:
                    attrs.append(inner.attr)
                    inner = inner.value
                if type(inner) is ast.Name:
                    self.uses.add((inner.id, tuple(reversed(attrs))))
                    chain = True
            elif cls is ast.Name:
                self.uses.add((node.id, ()))
        elif cls is ast.Attribute:
            chain = True
        emit(cls.__name__ + "(")
        for name in node._fields:
            value = getattr(node, name, None)
            if value is None or (type(value) is list and not value):
                continue
            if name == "body" and isinstance(node, _DOC_OWNERS):
                value = _strip_docstring(value)
            emit(name + "=")
            self.visit(value, chain and name == "value")
            emit(",")
        emit(")")


def _digest(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


# ------------------------------------------------------------------------------------ analysis of one file

def _is_main_guard(stmt) -> bool:
    return isinstance(stmt, ast.If) and ast.unparse(stmt.test) == "__name__ == '__main__'"


def _bound_names(stmt) -> set[str]:
    """Names a top-level statement binds in its module's namespace."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            return set()
        return {(a.asname or a.name.split(".")[0]) for a in stmt.names if a.name != "*"}
    out: set[str] = set()

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update(_bound_names(node))
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(stmt)
    return out


def _code_facts(node) -> dict:
    """{"hash", "imports": [[kind, level, module, [[name, asname], ...]]], "uses": [[name, [attr, ...]]]}."""
    f = _Facts()
    f.visit(node)
    return {"hash": _digest("".join(f.parts)), "imports": f.imports,
            "uses": [[n, list(a)] for n, a in sorted(f.uses)]}


_IMPORT_TIME = (ast.Import, ast.ImportFrom, ast.If, ast.Try, ast.With) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())


def analyze_source(text: str, filename: str = "<code>") -> dict:
    """The facts the fingerprint needs from one Python file's text (JSON, cached by content hash): per
    top-level statement the names it binds, its canonical hash, the imports in it (function bodies
    included) and the names/attribute chains it uses; per module-level dict literal the same per entry."""
    try:
        tree = ast.parse(text, filename=filename)
    except SyntaxError as exc:
        raise FingerprintError(f"{filename}: cannot fingerprint code that does not parse: {exc}") from exc
    stmts, dicts = [], {}
    for stmt in _strip_docstring(tree.body):
        main = _is_main_guard(stmt)
        stmts.append({**_code_facts(stmt), "names": sorted(_bound_names(stmt)), "main": main,
                      # its imports run when the module is imported (not those inside a function)
                      "runs_imports": isinstance(stmt, _IMPORT_TIME) and not main})
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                and isinstance(stmt.value, ast.Dict):
            dicts[stmt.targets[0].id] = {
                str(k.value): _code_facts(ast.Dict(keys=[k], values=[v]))
                for k, v in zip(stmt.value.keys, stmt.value.values)
                if isinstance(k, ast.Constant) and isinstance(k.value, (str, int))}
    return {"stmts": stmts, "dicts": dicts}


class _Cache:
    """Analyses by content hash: in memory, and in a JSON file when one is set (``use_cache``)."""

    def __init__(self):
        self.mem: dict[str, dict] = {}
        self.used: set[str] = set()
        self.keys: dict[tuple, str] = {}   # (path, stat stamp) -> content hash
        self.path: Path | None = None
        self.dirty = False

    def use(self, path: str | os.PathLike | None) -> None:
        """Keep file analyses in ``path`` (JSON) between processes, written once when the process exits;
        ``None``: memory only."""
        # absolute: Snakemake parses the Snakefile in the working directory but exits elsewhere
        self.path = Path(path).absolute() if path is not None else None
        atexit.unregister(self.save)
        if self.path is None:
            return
        atexit.register(self.save)
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") == FORMAT:
                self.mem = {**data.get("entries", {}), **self.mem}
        except (OSError, ValueError, AttributeError, TypeError):
            pass  # a missing or damaged cache is rebuilt

    def digest(self, path: Path) -> str:
        """sha256 of a file's bytes, read again only when its stat stamp changes."""
        st = path.stat()
        stamp = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp not in self.keys:
            self.keys[stamp] = _digest(path.read_bytes())
        return self.keys[stamp]

    def analysis(self, path: Path) -> dict:
        key = self.digest(path)
        if key not in self.mem:
            self.mem[key] = analyze_source(path.read_bytes().decode("utf-8"), str(path))
            self.dirty = True
        self.used.add(key)
        return self.mem[key]

    def save(self) -> None:
        """Write the analyses this process used (older ones are dropped)."""
        if self.path is None or not self.dirty:
            return
        entries = {k: v for k, v in self.mem.items() if k in self.used}
        try:
            write_text_atomic(self.path, json.dumps({"format": FORMAT, "entries": entries}))
            self.dirty = False
        except OSError:
            pass  # the cache only saves time


_CACHE = _Cache()
use_cache = _CACHE.use


# ------------------------------------------------------------------------------------ modules

class Module:
    """One analysed file (``name``: dotted, "" for a script): ``binds`` {name: indices of the statements
    binding it}, ``unnamed`` the import-time statements that bind no name."""

    def __init__(self, name: str, path: Path, is_package: bool):
        self.name, self.path = name, path
        self.package = name if is_package else name.rpartition(".")[0]
        self.facts = _CACHE.analysis(path)
        self.stmts: list[dict] = self.facts["stmts"]
        self.binds: dict[str, list[int]] = {}
        for i, st in enumerate(self.stmts):
            for n in st["names"]:
                self.binds.setdefault(n, []).append(i)
        self.unnamed = [i for i, st in enumerate(self.stmts) if not st["names"] and not st["main"]]
        self._refs: dict = {}  # work items per statement and name, computed once


class Package:
    """The modules of one package tree on disk (``<root>/gnc``), analysed on demand."""

    def __init__(self, root: Path, name: str = PACKAGE):
        self.root, self.name = Path(root), name
        self._files: dict[str, tuple[Path, bool] | None] = {}
        self._modules: dict[str, Module] = {}

    def file_of(self, modname: str) -> tuple[Path, bool] | None:
        """(file, is a package) of a module of the package; None for other names."""
        if modname not in self._files:
            found = None
            if modname == self.name or modname.startswith(self.name + "."):
                base = self.root / Path(*modname.split("."))
                found = next(((f, f.name == "__init__.py") for f in (base / "__init__.py", base.with_suffix(".py"))
                              if f.is_file()), None)
            self._files[modname] = found
        return self._files[modname]

    def is_module(self, modname: str) -> bool:
        return self.file_of(modname) is not None

    def module(self, modname: str) -> Module:
        if modname not in self._modules:
            found = self.file_of(modname)
            if found is None:
                raise FingerprintError(f"no module {modname} under {self.root}")
            self._modules[modname] = Module(modname, *found)
        return self._modules[modname]

    def data_files(self, modname: str) -> list[Path]:
        """Non-Python files in a package's folder (not in its subpackages, not caches)."""
        found = self.file_of(modname)
        if found is None or not found[1]:
            return []
        out = []
        for dirpath, dirnames, filenames in os.walk(found[0].parent):
            d = Path(dirpath)
            dirnames[:] = sorted(x for x in dirnames if x != "__pycache__" and not x.startswith(".")
                                 and not (d / x / "__init__.py").is_file())
            out.extend(d / f for f in sorted(filenames)
                       if not f.endswith((".py", ".pyc")) and not f.startswith("."))
        return out


# ------------------------------------------------------------------------------------ references

def _import_targets(imp: list, mod: Module, pkg: Package) -> dict[str, tuple]:
    """{bound name: target} of one import; targets are ("mod", M, loaded), ("sym", M, name) or
    ("all", M), only inside the package (other imports are not part of the fingerprint)."""
    kind, level, module, names = imp
    out: dict[str, tuple] = {}
    if kind == "import":
        for name, asname in names:
            if not pkg.is_module(name):
                continue
            if asname:
                out[asname] = ("mod", name, name)
            else:  # `import gnc.a.b` binds gnc and loads gnc.a.b
                out[name.split(".")[0]] = ("mod", name.split(".")[0], name)
        return out
    base_name = importlib.util.resolve_name("." * level + (module or ""), mod.package) if level else module or ""
    if not pkg.is_module(base_name):
        return out
    for name, asname in names:
        if name == "*":
            out["*"] = ("all", base_name)
            continue
        sub = f"{base_name}.{name}"
        out[asname or name] = ("mod", sub, sub) if pkg.is_module(sub) else ("sym", base_name, name)
    return out


def _references(pkg: Package, mod: Module, facts: dict) -> list[tuple]:
    """Work items for what a piece of code of ``mod`` uses: ("stmt", M, i), ("sym", M, name),
    ("all", M), ("load", M)."""
    out: list[tuple] = []
    local: dict[str, list[tuple]] = {}
    for imp in facts["imports"]:
        for name, target in _import_targets(imp, mod, pkg).items():
            local.setdefault(name, []).append(target)
            out.append(("all", target[1]) if target[0] == "all" else
                       ("load", target[2] if target[0] == "mod" else target[1]))
    for name, attrs in facts["uses"]:
        out.extend(_name_items(pkg, mod, name, attrs, local))
    return out


def _name_items(pkg: Package, mod: Module, name: str, attrs: list[str], local: dict) -> list[tuple]:
    """A name used in ``mod``: the statements binding it there count (the script's count anyway), and
    what it is imported as is followed (through module attributes: ``F.make_figure``)."""
    out: list[tuple] = []
    targets = list(local.get(name, []))
    for j in mod.binds.get(name, []):
        if ("imports", j) not in mod._refs:
            mod._refs[("imports", j)] = [_import_targets(imp, mod, pkg) for imp in mod.stmts[j]["imports"]]
        for bound in mod._refs[("imports", j)]:
            if name in bound:
                targets.append(bound[name])
        if mod.name:
            out.append(("stmt", mod.name, j))
    for t in targets:
        if t[0] in ("sym", "all"):  # the target is a work item itself
            out.append(t)
        else:
            modname = t[1]
            out.append(("load", t[2]))
            for a in attrs:
                sub = f"{modname}.{a}"
                if pkg.is_module(sub):
                    modname = sub
                    out.append(("load", modname))
                    continue
                out.append(("sym", modname, a))
                break
            else:  # the module itself is used as a value
                out.append(("all", modname))
    return out


class _Closure:
    def __init__(self, pkg: Package, select: dict[str, str]):
        self.pkg = pkg
        self.select = {k: str(v) for k, v in select.items()}
        self.reached_select: set[str] = set()
        self.items: dict[tuple, str] = {}     # (module, what) -> digest
        self.done: set[tuple] = set()
        self.todo: list[tuple] = []

    def push_all(self, items):
        for item in items:
            if item not in self.done:
                self.done.add(item)
                self.todo.append(item)

    def run(self):
        while self.todo:
            item = self.todo.pop()
            getattr(self, "_" + item[0])(*item[1:])

    def _load(self, modname: str):
        parts = modname.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
            name = ".".join(parts[:k])
            if not self.pkg.is_module(name):
                continue
            mod = self.pkg.module(name)
            self.push_all(("stmt", name, i) for i in mod.unnamed)
            for st in mod.stmts:  # the modules its top-level imports load run their import-time code too
                if st.get("runs_imports"):
                    for imp in st["imports"]:
                        for t in _import_targets(imp, mod, self.pkg).values():
                            self.push_all([("load", t[2] if t[0] == "mod" else t[1])])
            for f in self.pkg.data_files(name):
                rel = f.relative_to(self.pkg.root).as_posix()
                self.items[(name, "file:" + rel)] = _CACHE.digest(f)

    def _all(self, modname: str):
        self.push_all([("load", modname)])
        self.push_all(("stmt", modname, i) for i in range(len(self.pkg.module(modname).stmts)))

    def _sym(self, modname: str, name: str):
        mod = self.pkg.module(modname)
        self.push_all([("load", modname)])
        if not mod.binds.get(name):  # defined dynamically or by a star import: the whole module counts
            self.push_all([("all", modname)])
            return
        if ("sym", name) not in mod._refs:
            mod._refs[("sym", name)] = _name_items(self.pkg, mod, name, [], {})
        self.push_all(mod._refs[("sym", name)])

    def _stmt(self, modname: str, i: int):
        mod = self.pkg.module(modname)
        st = mod.stmts[i]
        key = f"{modname}.{st['names'][0]}" if len(st["names"]) == 1 else None
        if key in self.select:
            self.reached_select.add(key)
            want = self.select[key]
            table = mod.facts["dicts"].get(st["names"][0])
            if table is None:
                raise FingerprintError(f"{mod.path}: {key} is selected by {want!r} but is not a dict literal")
            if want not in table:
                raise FingerprintError(f"{mod.path}: {key} has no entry {want!r}")
            self.items[(modname, f"select:{key}")] = table[want]["hash"]
            self.push_all(_references(self.pkg, mod, table[want]))
            return
        self.items[(modname, f"stmt:{st['hash']}")] = st["hash"]
        if i not in mod._refs:
            mod._refs[i] = _references(self.pkg, mod, st)
        self.push_all(mod._refs[i])


def closure(script: str | os.PathLike, select: dict[str, str] | None = None,
            root: str | os.PathLike | None = None) -> _Closure:
    """Everything the script's code reaches (see the module docstring): ``.items`` is
    {(module, item): digest}."""
    root = Path(root) if root is not None else WORKFLOW_DIR
    script = Path(script)
    if not script.is_file():
        raise FingerprintError(f"no script {script}")
    pkg = Package(root)
    smod = Module("", script, False)
    cl = _Closure(pkg, select or {})
    cl.items[("<script>", "")] = _digest("\n".join(st["hash"] for st in smod.stmts))  # in order
    for st in smod.stmts:
        cl.push_all(_references(pkg, smod, st))
    cl.run()
    missing = set(cl.select) - cl.reached_select
    if missing:
        raise FingerprintError(f"{script.name}: selected table(s) {', '.join(sorted(missing))} not reached by "
                               "the code (renamed or no longer used?)")
    return cl


def loaded_modules(script: str | os.PathLike, select: dict[str, str] | None = None,
                   root: str | os.PathLike | None = None) -> set[str]:
    """The package modules the analysis considers loaded by the job (their import-time code counts)."""
    cl = closure(script, select, root)
    out = set()
    for kind, modname, *_ in cl.done:
        if kind in ("load", "all"):
            parts = modname.split(".")
            out.update(n for n in (".".join(parts[:k]) for k in range(1, len(parts) + 1)) if cl.pkg.is_module(n))
    return out


def script_path(script: str, root: str | os.PathLike | None = None) -> Path:
    """``workflow/scripts/<script>.py`` for a script name (``metrics``) or the path itself."""
    root = Path(root) if root is not None else WORKFLOW_DIR
    p = Path(script)
    if p.suffix == ".py" or len(p.parts) > 1:
        return p if p.is_absolute() else root / p
    return root / "scripts" / f"{script}.py"


def fingerprint(script: str, select: dict[str, str] | None = None,
                root: str | os.PathLike | None = None) -> str:
    """sha256 (hex) of the code the script runs; ``select`` narrows dispatch tables to one key."""
    items = closure(script_path(script, root), select, root).items
    payload = json.dumps([FORMAT, sorted([list(k), v] for k, v in items.items())])
    return _digest(payload)


def code_param(script: str, select: dict[str, str] | None = None,
               root: str | os.PathLike | None = None) -> dict:
    """The ``params: code=...`` value of a rule: what was fingerprinted and the fingerprint. The job
    records it (gnc_code_fingerprint, gnc_code_scope); ``gnc-provenance --stale`` recomputes it."""
    out = {"script": script, "fingerprint": fingerprint(script, select, root)}
    if select:
        out["select"] = dict(sorted(select.items()))
    return out


def explain(script: str, select: dict[str, str] | None = None,
            root: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """{module: sorted names of the counted definitions} (``<unnamed>`` for import-time statements)."""
    cl = closure(script_path(script, root), select, root)
    out: dict[str, set] = {}
    for modname, what in cl.items:
        names = out.setdefault(modname, set())
        if modname == "<script>":
            names.add(script)
        elif what.startswith("stmt:"):
            for st in cl.pkg.module(modname).stmts:
                if st["hash"] == what[5:]:
                    names.update(st["names"] or {"<unnamed>"})
        else:
            names.add(what.split(":", 1)[1])
    return {k: sorted(v) for k, v in sorted(out.items())}


# ------------------------------------------------------------------------------------ stale results

def staleness(attrs: dict, root: str | os.PathLike | None, cache: dict) -> tuple[str, str]:
    """("current" | "stale" | "unknown", explanation) for one file's provenance attributes, against the
    code now on disk under ``root`` (None: the workflow this package belongs to); ``cache`` is shared
    between files: {scope: fingerprint now}."""
    made, scope = attrs.get("gnc_code_fingerprint"), decode_attr(attrs.get("gnc_code_scope"))
    if not made or not isinstance(scope, dict) or "script" not in scope:
        return "unknown", "no code fingerprint recorded (made before fingerprints, or not by a workflow job)"
    script, select, made = scope["script"], scope.get("select") or None, str(made)
    key = (script, json.dumps(select, sort_keys=True))
    if key not in cache:
        try:
            cache[key] = fingerprint(script, select, root)
        except FingerprintError as exc:
            cache[key] = exc
    now = cache[key]
    if isinstance(now, Exception):
        return "stale", f"the code it was made with cannot be fingerprinted now: {now}"
    what = script + (f" {select}" if select else "")
    if now == made:
        return "current", f"code of {what} unchanged ({now[:12]})"
    return "stale", f"code of {what} changed: made with {made[:12]}, now {now[:12]}"


#: result files a folder stands for in a staleness check (checkpoints: their run's history.nc says the same)
RESULT_GLOBS = ("*.nc", "*.provenance.json", "manifest.json")


def result_files(paths) -> list[Path]:
    """Files as given; a folder stands for the result files anywhere under it (not logs, not .work)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        found = set()
        for pattern in RESULT_GLOBS:
            found.update(f for f in p.rglob(pattern) if f.is_file()
                         and not any(part in ("logs", ".work", ".snakemake") for part in f.relative_to(p).parts))
        out.extend(sorted(found))
    return out


def report_stale(paths, root: str | os.PathLike | None = None) -> int:
    """Print, per result file, whether the code that made it is still the code on disk (no job is
    run). Exit status 0 when every file is current, 1 when one is stale, unreadable or has no
    fingerprint."""
    counts = {"current": 0, "stale": 0, "unknown": 0}
    cache: dict = {}
    for f in result_files(paths):
        try:
            state, why = staleness(read_attrs(f), root, cache)
        except Exception as exc:  # noqa: BLE001 - report every unreadable file and go on
            state, why = "unknown", f"no readable provenance: {exc}"
        counts[state] += 1
        print(f"{state.upper() if state != 'current' else state:8s} {f}: {why}")
    print(f"== {counts['current']} current, {counts['stale']} stale, {counts['unknown']} without a fingerprint "
          f"(code under {Path(root) if root else WORKFLOW_DIR})")
    return 0 if counts["stale"] == counts["unknown"] == 0 else 1
