"""Command line for gnc.data (also usable from a Snakemake ``shell:`` rule).

    python -m gnc.data list                                  sources, classes, whether available offline
    python -m gnc.data schema [SOURCE]                       JSON schema of the spec (all sources or one)
    python -m gnc.data version NAME [--spec JSON]            version id (cheap)
    python -m gnc.data num-classes NAME [--spec JSON]
    python -m gnc.data prepare NAME [--spec JSON] (--out DIR | --root DIR)
    python -m gnc.data verify FOLDER...                      re-hash prepared datasets

``--spec`` takes a JSON object or ``@file`` (JSON or YAML). With ``--root`` the output folder is
``<root>/<NAME>/<version>``. A Snakemake ``script:`` calls :func:`gnc.data.prepare` directly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from . import SOURCES, SPEC_SCHEMA, available, num_classes, prepare, prepared_path, verify_prepared, version_id
from .errors import DatasetIntegrityError


def _spec(text: str | None) -> dict:
    if not text:
        return {}
    if text.startswith("@"):
        raw = Path(text[1:]).read_text()
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return yaml.safe_load(raw) or {}
    return json.loads(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gnc.data", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    p = sub.add_parser("schema")
    p.add_argument("source", nargs="?")
    for name in ("version", "num-classes", "prepare"):
        p = sub.add_parser(name)
        p.add_argument("name")
        p.add_argument("--spec", default=None, help="JSON object or @file")
        if name == "prepare":
            g = p.add_mutually_exclusive_group(required=True)
            g.add_argument("--out", help="output folder")
            g.add_argument("--root", help="datasets root: writes <root>/<name>/<version>")
    p = sub.add_parser("verify")
    p.add_argument("folders", nargs="+")
    args = ap.parse_args(argv)

    if args.cmd == "list":
        for kind, src in sorted(SOURCES.items()):
            try:
                ok = available(kind, {"root": "."} if kind == "image_folder" else {})
            except Exception:  # noqa: BLE001 - listing only
                ok = False
            print(f"{kind:22s} {'available' if ok else 'not available':14s} {src.description}")
        return 0
    if args.cmd == "schema":
        print(json.dumps(SPEC_SCHEMA[args.source] if args.source else SPEC_SCHEMA, indent=2, ensure_ascii=False))
        return 0
    if args.cmd == "verify":
        status = 0
        for folder in args.folders:
            try:
                m = verify_prepared(folder)
                print(f"OK   {folder}  {m['name']} {m['version']} checksum {m['checksum']}")
            except DatasetIntegrityError as exc:
                print(f"FAIL {folder}: {exc}")
                status = 1
        return status
    spec = _spec(args.spec)
    if args.cmd == "version":
        print(version_id(args.name, spec))
    elif args.cmd == "num-classes":
        print(num_classes(args.name, spec))
    else:
        out = Path(args.out) if args.out else prepared_path(args.root, args.name, spec)
        m = prepare(args.name, spec, out)
        print(f"{out}: {m['name']} {m['version']} train {m['counts']['train']['total']} "
              f"test {m['counts']['test']['total']} classes {m['num_classes']} shape {m['shape']} "
              f"in {m['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
