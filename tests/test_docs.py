"""The methods document is part of the repository, and every reference to one of its sections exists."""
import re
import subprocess

from conftest import ROOT

METHODS = ROOT / "docs" / "methods.md"
REF = re.compile(r"(?:docs/methods\.md`?|methods)\s+((?:§[\d.]+(?:[–-][\d.]+)?(?:,\s*)?)+)")


def _sections() -> set[str]:
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", METHODS.read_text(), re.M))


def _tracked_text_files():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in out.split():
        path = ROOT / name
        if path.suffix in {".py", ".smk", ".md", ".yaml", ".yml", ".rst", ".txt"} or path.name == "Snakefile":
            if path.is_file():
                yield path


def test_methods_sections_are_numbered():
    sections = _sections()
    assert {"1", "2", "2.1", "2.3", "5.2", "9", "10"} <= sections, sorted(sections)


def test_every_section_reference_exists():
    sections = _sections()
    bad, seen = [], 0
    for path in _tracked_text_files():
        for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for m in REF.finditer(line):
                for ref in re.findall(r"§([\d.]+)(?:[–-]([\d.]+))?", m.group(1)):
                    for part in filter(None, ref):
                        seen += 1
                        if part.rstrip(".") not in sections:
                            bad.append(f"{path.relative_to(ROOT)}:{line_no}: §{part}")
    assert seen > 20, f"only {seen} references found: the pattern no longer matches the code's citations"
    assert not bad, bad


def test_no_reference_to_notes_outside_the_repository():
    hits = [f"{p.relative_to(ROOT)}" for p in _tracked_text_files() if "STUDY" + ".md" in p.read_text(errors="replace")]
    assert not hits, hits
