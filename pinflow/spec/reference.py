"""The README's YAML reference tables, generated from the field declarations.

Each table sits between ``<!-- pinflow:spec-table NAME -->`` and ``<!-- /pinflow:spec-table
-->`` (NAME: top, node, inputs, outputs); ``tests/test_spec_reference.py`` fails when the
README differs from what the declarations say. After changing a declaration::

    python -m pinflow.spec.reference --write README.md
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pinflow.spec.model import INPUT, NODE, OUTPUT, TOP
from pinflow.spec.schema import Level

TABLES = {"top": TOP, "node": NODE, "inputs": INPUT, "outputs": OUTPUT}
_BLOCK = re.compile(r"(<!-- pinflow:spec-table (\w+) -->\n)(.*?)(<!-- /pinflow:spec-table -->)",
                    re.DOTALL)


def table(level: Level) -> str:
    """One level's keys as a markdown table (rejected keys are not listed: no file has them)."""
    rows = ["| Field | Type | Default | Description |", "|---|---|---|---|"]
    for declared in level.keys.values():
        if declared.rejected is not None:
            continue
        cells = [f"`{declared.name}`", declared.kind.type_text, declared.default_column,
                 declared.doc]
        if any("|" in cell or "\n" in cell for cell in cells):
            raise ValueError(f"{level.title} key '{declared.name}': a table cell cannot hold "
                             "'|' or a line break")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def rewrite(text: str) -> str:
    """``text`` with every marked table replaced by the one the declarations give; every
    table must be marked exactly once."""
    seen: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise ValueError(f"unknown spec table '{name}' (known: {', '.join(TABLES)})")
        seen.append(name)
        return match.group(1) + table(TABLES[name]) + match.group(4)

    result = _BLOCK.sub(replace, text)
    missing = [name for name in TABLES if name not in seen]
    twice = sorted({name for name in seen if seen.count(name) > 1})
    if missing or twice:
        raise ValueError(f"spec table markers: missing {missing or 'none'}, repeated "
                         f"{twice or 'none'}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pinflow.spec.reference",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("readme", type=Path, help="the markdown file holding the tables")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the tables in place")
    action.add_argument("--check", action="store_true",
                        help="exit 1 if the tables differ from the declarations")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    try:
        fresh = rewrite(text)
    except ValueError as exc:
        print(f"{args.readme}: {exc}", file=sys.stderr)
        return 2
    if args.write:
        if fresh != text:
            args.readme.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != text:
        print(f"{args.readme}: the YAML reference tables are stale; run python -m "
              f"pinflow.spec.reference --write {args.readme}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
