"""``gnc-provenance FILE...`` (``python -m gnc.provenance``): print the provenance of result files and
re-hash the prepared datasets they name (:func:`gnc.data.verify_datasets`); exit status 1 when a file has
no readable provenance or a dataset no longer matches. ``--stale PATH...``: which results were made by
code that has changed since (:func:`gnc.fingerprint.report_stale`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..data import verify_datasets
from ..fingerprint import report_stale
from . import datasets_of, decode_attr, expand_paths, read_attrs, summary_lines


def _print_attrs(attrs: dict[str, Any], full: bool) -> None:
    for label, text in summary_lines(attrs):
        print(f"  [{label}] {text}")
    for k in sorted(attrs):
        if not str(k).startswith("gnc_"):
            continue
        v = decode_attr(attrs[k])
        text = json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else str(v)
        if not full and len(text) > 400:
            text = text[:400] + f" ... ({len(text)} chars; --full prints all)"
        print(f"  {k[4:]}: {text}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="gnc-provenance",
        description="Print the provenance of gnc-study result files and verify the datasets they name.")
    ap.add_argument("files", nargs="+",
                    help="result files: .nc, .pt (or a ckpt/ folder), .json, .csv/.png/.pdf/.svg (with a sidecar)")
    ap.add_argument("--root", default=None,
                    help="working directory of the workflow (default: found from the file's location, else .)")
    ap.add_argument("--no-verify", action="store_true", help="only print, do not re-hash datasets")
    ap.add_argument("--full", action="store_true", help="print long attributes (config, sources) in full")
    ap.add_argument("--json", action="store_true", help="print one JSON object {file: attributes} instead")
    ap.add_argument("--stale", action="store_true",
                    help="only say which results were made by code that has changed since (runs nothing; a folder: "
                         "every result file under it); exit status 1 when a file is stale or has no fingerprint")
    ap.add_argument("--code-root", default=None,
                    help="with --stale: the workflow/ folder holding scripts/ and gnc/ (default: this package's)")
    args = ap.parse_args(argv)
    if args.stale:
        return report_stale(args.files, args.code_root)
    status = 0
    cache: dict = {}
    collected: dict[str, Any] = {}
    root = Path(args.root) if args.root else None
    for f in expand_paths(args.files):
        if not args.json:
            print(f"== {f}")
        try:
            attrs = read_attrs(f)
            if not any(str(k).startswith("gnc_") for k in attrs):
                raise ValueError(f"{f}: no gnc_* provenance attributes")
        except Exception as exc:  # noqa: BLE001 - report every unreadable file and go on
            print(f"  ERROR: {exc}", file=sys.stderr if args.json else sys.stdout)
            status = 1
            continue
        problems = [] if args.no_verify else verify_datasets(attrs, root, near=Path(f), cache=cache)
        if args.json:
            collected[str(f)] = {"attributes": {k: decode_attr(v) for k, v in attrs.items()},
                                 "problems": problems}
        else:
            _print_attrs(attrs, args.full)
            for p in problems:
                print(f"  CHECKSUM MISMATCH: {p}")
            if not problems and not args.no_verify and datasets_of(attrs):
                print(f"  datasets verified: {len(datasets_of(attrs))} checksum(s) match")
        if problems:
            status = 1
    if args.json:
        print(json.dumps(collected, indent=2, sort_keys=True, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
