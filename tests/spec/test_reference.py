"""The README's YAML reference tables are generated from the declarations, and kept so."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinflow.spec import reference
from pinflow.spec.model import NodeSpec
from pinflow.spec.schema import Level, ignored, rejected

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_tables_are_generated_from_the_declarations() -> None:
    """If this fails: python -m pinflow.spec.reference --write README.md"""
    text = README.read_text(encoding="utf-8")
    assert reference.rewrite(text) == text


def test_the_readme_table_shows_ignored_keys_but_not_rejected_ones() -> None:
    level = Level("Node", NodeSpec,
                  ignored("colour", "pinflow does not paint nodes; ignore it"),
                  rejected("flavour", "flavours are not supported"))
    table = reference.table(level)
    assert "| `colour` | any | — | Ignored: pinflow does not paint nodes; ignore it |" in table
    assert "flavour" not in table


def test_reference_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "README.md"
    fresh = README.read_text(encoding="utf-8")
    stale.write_text(fresh.replace("| `queue_size` | int ≥ 1 | `10` |",
                                   "| `queue_size` | int | `8` |"))
    assert reference.main([str(stale), "--check"]) == 1
    assert "--write" in capsys.readouterr().err
    assert reference.main([str(stale), "--write"]) == 0
    assert stale.read_text(encoding="utf-8") == fresh
    assert reference.main([str(stale), "--check"]) == 0


def test_reference_refuses_a_readme_without_every_table(tmp_path: Path) -> None:
    partial = tmp_path / "README.md"
    partial.write_text("<!-- pinflow:spec-table node -->\n<!-- /pinflow:spec-table -->\n")
    assert reference.main([str(partial), "--check"]) == 2


def test_the_readme_names_every_byte_unit() -> None:
    from pinflow.spec.units import SIZE_UNITS

    text = README.read_text(encoding="utf-8")
    assert all(f"`{unit}`" in text for unit in SIZE_UNITS)
