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


def test_allowed_keys_are_the_declared_fields() -> None:
    for level in model.LEVELS:
        declared = {f.name for f in dataclasses.fields(level.spec) if "pinflow.yaml" in f.metadata}
        assert level.allowed == declared, level.title
    assert "line" not in model.NODE_KEYS and "name" not in model.INPUT_KEYS


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


@pytest.fixture
def with_dora_keys(monkeypatch: pytest.MonkeyPatch) -> Level:
    """The node level as a later issue will extend it: one key accepted and ignored, one
    refused with its own message. Each is one declaration."""
    level = Level("Node", NodeSpec,
                  ignored("build", "pinflow does not build nodes; run the build step yourself"),
                  rejected("operators", "operators are not supported; make each operator a "
                           "node with 'path' or 'module'"))
    monkeypatch.setattr("pinflow.spec.loader.NODE", level)
    return level


def test_an_ignored_key_loads_with_a_note(with_dora_keys: Level) -> None:
    spec = loads("nodes:\n  - id: a\n    module: m\n    build: cargo build\n", "x.yml")
    assert spec.node("a").module == "m"
    assert spec.notes == ("x.yml:4: node 'a': 'build' is ignored: pinflow does not build "
                          "nodes; run the build step yourself",)
    assert "build" in with_dora_keys.allowed and "operators" not in with_dora_keys.allowed


def test_a_rejected_key_is_refused_with_its_own_message(with_dora_keys: Level) -> None:
    with pytest.raises(SpecError) as info:
        loads("nodes:\n  - id: a\n    module: m\n    operators: []\n", "x.yml")
    assert info.value.messages == [
        "x.yml:4: node 'a': operators are not supported; make each operator a node with "
        "'path' or 'module'"]


def test_unknown_keys_list_ignored_keys_but_not_rejected_ones(with_dora_keys: Level) -> None:
    with pytest.raises(SpecError) as info:
        loads("nodes:\n  - {id: a, module: m, biuld: x}\n", "x.yml")
    (message,) = info.value.messages
    assert "build" in message.split("(allowed: ")[1] and "operators" not in message
    assert message.endswith("did you mean 'build'?")


def test_validate_prints_notes_on_stderr_and_still_succeeds(
        with_dora_keys: Level, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataflow = tmp_path / "flow.yml"
    dataflow.write_text("nodes:\n  - id: a\n    module: m\n    build: make\n")
    assert cli.main(["validate", str(dataflow)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{dataflow}: ok (1 node(s))\n"
    assert err == (f"pinflow: note: {dataflow}:4: node 'a': 'build' is ignored: pinflow does "
                   "not build nodes; run the build step yourself\n")


def test_a_clean_file_has_no_notes() -> None:
    assert load(Path(__file__).parents[1] / "specs" / "valid-pipeline.yml").notes == ()


def test_node_level_is_the_one_the_loader_uses() -> None:
    from pinflow.spec import loader

    assert loader.NODE is NODE
