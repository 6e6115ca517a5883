"""Command line for gnc.data: what a dataset spec may say.

    python -m gnc.data list               sources, whether available here, description
    python -m gnc.data schema [SOURCE]    JSON schema of the spec (all sources or one)

Datasets are prepared by the workflow's rule ``prepare_dataset`` (:func:`gnc.data.prepare`).
"""

from __future__ import annotations

import argparse
import json
import sys

from . import SOURCES, SPEC_SCHEMA, available


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gnc.data", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    sub.add_parser("schema").add_argument("source", nargs="?", choices=sorted(SPEC_SCHEMA))
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for kind, src in sorted(SOURCES.items()):
            ok = available(kind, {"root": "."} if kind == "image_folder" else {})  # image_folder needs a root
            print(f"{kind:22s} {'available' if ok else 'not available':14s} {src.description}")
    else:
        schema = SPEC_SCHEMA[args.source] if args.source else SPEC_SCHEMA
        print(json.dumps(schema, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
