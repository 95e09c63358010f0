"""Each YAML field is declared once; the allowed keys, defaults, checks, JSON form and README
tables follow from the declarations, and a new key (accepted, ignored with a note, or refused
with a message of its own) is one declaration."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pinflow import cli
from pinflow.errors import SpecError
from pinflow.spec import load, loads, model
from pinflow.spec.model import NODE, NodeSpec
from pinflow.spec.schema import Level, OnFull, QueuePolicy, Restart, ignored, rejected


def test_allowed_keys_are_the_declared_fields_and_extra_keys() -> None:
    for level in model.LEVELS:
        declared = {f.name for f in dataclasses.fields(level.spec) if "pinflow.yaml" in f.metadata}
        extra = {k.name for k in level.keys.values() if k.attr is None and k.rejected is None}
        assert level.listed == declared, level.title
        assert level.allowed == declared | extra, level.title
    assert "line" not in model.NODE_KEYS and "name" not in model.INPUT_KEYS
    assert "dynamic" not in model.NODE_KEYS, "derived from `path: dynamic`, not a YAML key"


def test_defaults_come_from_the_declarations() -> None:
    bare = loads("nodes:\n  - id: a\n    module: m\n    inputs: {t: pinflow/timer/hz/1}\n"
                 "    outputs: [o]\n", "x.yml").node("a")
    for level, spec in ((model.NODE, bare), (model.INPUT, bare.inputs[0]),
                        (model.OUTPUT, bare.outputs[0])):
        for declared in level.keys.values():
            if not (declared.required or declared.structured or declared.name == "module"):
                assert getattr(spec, declared.attr) == declared.default, declared.name


def test_closed_sets_are_enums_that_read_and_print_as_their_words() -> None:
    spec = loads("nodes:\n  - id: a\n    module: m\n    restart: on-failure\n"
                 "    inputs: {t: {source: pinflow/timer/hz/1, queue_policy: drop_newest}}\n"
                 "    outputs: [{id: o, on_full: drop}]\n", "x.yml").node("a")
    assert spec.restart is Restart.ON_FAILURE and spec.restart == "on-failure"
    assert spec.inputs[0].queue_policy is QueuePolicy.DROP_NEWEST
    assert spec.outputs[0].on_full is OnFull.DROP
    assert f"{spec.restart}" == str(spec.restart) == "on-failure"
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["restart"] == "on-failure" and data["outputs"][0]["on_full"] == "drop"
    assert NodeSpec.from_dict(data).restart is Restart.ON_FAILURE


def test_a_choice_typo_gets_the_choices_and_a_suggestion() -> None:
    with pytest.raises(SpecError) as info:
        loads("nodes:\n  - {id: a, module: m, outputs: [{id: o, on_full: dorp}]}\n", "x.yml")
    assert info.value.messages == [
        "x.yml:2: node 'a' output 'o': on_full must be 'block' or 'drop', got 'dorp' (str); "
        "did you mean 'drop'?"]


def test_top_level_memory_limit_must_be_at_least_one_byte() -> None:
    """Before: 0 was accepted at the top level (and handed to every node, whose own key
    refuses 0), so every node was stopped as over its limit at the first check."""
    with pytest.raises(SpecError) as info:
        loads("memory_limit: 0\nnodes: [{id: a, module: m}]\n", "x.yml")
    assert info.value.messages == [
        "x.yml:1: top level: memory_limit must be a byte count like '2 GiB', got '0' (int)"]
    spec = loads("memory_limit: 1 GiB\nnodes: [{id: a, module: m}]\n", "x.yml")
    assert spec.memory_limit == 1 << 30 and spec.node("a").memory_limit == 1 << 30


def test_an_ignored_key_loads_with_a_note_that_says_what_it_is() -> None:
    """Before: `output_types` was an unknown key, with "did you mean 'outputs'?"."""
    spec = loads("nodes:\n  - id: a\n    module: m\n    outputs: [o]\n"
                 "    output_types: {o: std/core/v1/Int64}\n", "x.yml")
    assert spec.node("a").module == "m"
    assert spec.notes == ("x.yml:5: node 'a': 'output_types' is ignored: a dora type "
                          "annotation; pinflow does not check message types",)
    assert "output_types" in NODE.allowed and "operators" not in NODE.allowed


def test_a_rejected_key_is_refused_with_its_own_message() -> None:
    with pytest.raises(SpecError) as info:
        loads("nodes:\n  - id: a\n    module: m\n    operators: []\n", "x.yml")
    assert info.value.messages == [
        "x.yml:4: node 'a': dora operators are not supported by pinflow: run the operator's "
        "code as a node of its own, with `path:` or `module:`"]


def test_unknown_keys_list_pinflow_s_keys_and_suggest_any_accepted_one() -> None:
    with pytest.raises(SpecError) as info:
        loads("nodes:\n  - {id: a, module: m, outptu_types: x}\n", "x.yml")
    (message,) = info.value.messages
    listing = message.split("(allowed: ")[1].split(")")[0]
    assert "build" in listing and "output_types" not in listing and "operators" not in message
    assert message.endswith("did you mean 'output_types'?")


def test_a_level_with_an_extra_key_declared_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        Level("Node", NodeSpec, ignored("build", "x"))
    with pytest.raises(ValueError, match="declared twice"):
        Level("Node", NodeSpec, rejected("path", "x"))


def test_validate_prints_notes_on_stderr_and_still_succeeds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataflow = tmp_path / "flow.yml"
    dataflow.write_text("nodes:\n  - id: a\n    module: m\n    input_types: {}\n")
    assert cli.main(["validate", str(dataflow)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{dataflow}: ok (1 node(s))\n"
    assert err == (f"pinflow: note: {dataflow}:4: node 'a': 'input_types' is ignored: a dora "
                   "type annotation; pinflow does not check message types\n")


def test_a_clean_file_has_no_notes() -> None:
    assert load(Path(__file__).parents[1] / "specs" / "valid-pipeline.yml").notes == ()


def test_node_level_is_the_one_the_loader_uses() -> None:
    from pinflow.spec import loader

    assert loader.NODE is NODE
