"""Tests for the dataflow spec loader: the YAML corpus in tests/specs plus targeted checks.

Each ``tests/specs/invalid-*.yml`` starts with one or more ``# expect: <fragment>`` lines; the
loader must report every fragment. Cases are loaded by bare file name from inside tests/specs,
so messages start with that name exactly as a user typing ``pinflow run x.yml`` would see.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from pinflow.errors import SpecError
from pinflow.spec import (
    DEFAULT_QUEUE_SIZE,
    INPUT_KEYS,
    NODE_KEYS,
    OUTPUT_KEYS,
    QUEUE_POLICIES,
    TIMER_PREFIX,
    TOP_LEVEL_KEYS,
    DataflowSpec,
    InputSpec,
    NodeSpec,
    OutputSpec,
    load,
    loads,
)
from pinflow.spec.model import NODE

SPECS = Path(__file__).parent / "specs"
VALID = sorted(SPECS.glob("valid-*.yml"))
INVALID = sorted(SPECS.glob("invalid-*.yml"))


def _expectations(case: Path) -> list[str]:
    """The ``# expect:`` fragments at the top of an invalid case."""
    fragments = []
    for line in case.read_text(encoding="utf-8").splitlines():
        if not line.startswith("# expect:"):
            break
        fragments.append(line.removeprefix("# expect:").strip())
    return fragments


def _errors(name: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(name)
    return info.value.messages


@pytest.fixture
def in_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(SPECS)


@pytest.fixture
def pipeline(in_specs: None) -> DataflowSpec:
    return load("valid-pipeline.yml")


def test_the_corpus_has_both_valid_and_invalid_cases() -> None:
    assert len(VALID) >= 3
    assert len(INVALID) >= 30


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_invalid_spec_reports_every_expected_message(case: Path, in_specs: None) -> None:
    expected = _expectations(case)
    assert expected, f"{case.name} has no '# expect:' line"
    messages = _errors(case.name)
    for fragment in expected:
        assert any(fragment in message for message in messages), (fragment, messages)


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_invalid_spec_messages_are_file_line_text_without_traceback(
    case: Path, in_specs: None
) -> None:
    for message in _errors(case.name):
        prefix, line, text = message.split(":", 2)
        assert prefix == case.name
        assert line.isdigit() and int(line) >= 1
        assert text.startswith(" ") and text.strip()
        assert "Traceback" not in message and "Error(" not in message


@pytest.mark.parametrize("case", VALID, ids=lambda p: p.stem)
def test_valid_spec_loads(case: Path, in_specs: None) -> None:
    spec = load(case.name)
    assert spec.nodes
    assert spec.path == case.resolve()


def test_defaults_are_queue_size_ten_and_drop_oldest(pipeline: DataflowSpec) -> None:
    tick = pipeline.node("camera").inputs[0]
    assert tick.queue_size == DEFAULT_QUEUE_SIZE == 10
    assert tick.queue_policy == QUEUE_POLICIES[0] == "drop_oldest"


def test_long_form_input_sets_queue_size_and_policy(pipeline: DataflowSpec) -> None:
    image = pipeline.node("gpu").inputs[0]
    assert (image.name, image.source) == ("image", "camera/image")
    assert (image.source_node, image.source_output) == ("camera", "image")
    assert (image.queue_size, image.queue_policy) == (4, "drop_newest")
    assert not image.is_timer and image.timer_period_s is None
    assert image.line == 17


def test_timer_periods_come_from_hz_and_millis(pipeline: DataflowSpec) -> None:
    periods = {
        inp.source: inp.timer_period_s
        for node in pipeline.nodes
        for inp in node.inputs
        if inp.is_timer
    }
    assert periods == {
        TIMER_PREFIX + "hz/30": 1 / 30,
        TIMER_PREFIX + "millis/250": 0.25,
        TIMER_PREFIX + "hz/0.5": 2.0,
    }
    tick = pipeline.node("camera").inputs[0]
    assert tick.source_node is None and tick.source_output is None


def test_string_args_are_split_like_a_shell(pipeline: DataflowSpec) -> None:
    assert pipeline.node("camera").args == ("--fps", "30", "--name", "front cam")


def test_list_args_are_scalars_as_strings(pipeline: DataflowSpec) -> None:
    assert pipeline.node("gpu").args == ("--batch", "4", "true")


def test_env_values_become_strings_as_written(pipeline: DataflowSpec) -> None:
    assert pipeline.node("camera").env == {
        "LEVEL": "3",
        "DEBUG": "true",
        "RATIO": "1.10",
        "QUIET": "false",
        "EMPTY": "",
    }


def test_path_is_absolute_and_relative_to_the_yaml_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load(SPECS / "valid-pipeline.yml")
    camera = spec.node("camera")
    assert camera.path == (SPECS / "nodes" / "noop.py").resolve()
    assert camera.path.is_absolute() and camera.module is None
    gpu = spec.node("gpu")
    assert gpu.path is None and gpu.module == "pinflow_demo.gpu"


def test_outputs_accept_strings_and_id_mappings(pipeline: DataflowSpec) -> None:
    camera = pipeline.node("camera")
    assert camera.outputs == (OutputSpec("image", 10), OutputSpec("frames", 11))
    assert camera.output("frames").line == 11
    with pytest.raises(KeyError):
        camera.output("depth")


def test_node_lookup_raises_key_error_for_unknown_ids(pipeline: DataflowSpec) -> None:
    assert pipeline.node("sink").line == 28
    with pytest.raises(KeyError):
        pipeline.node("nope")


def test_consumers_of_lists_every_reader_including_self_loops(pipeline: DataflowSpec) -> None:
    def readers(node_id: str, output_id: str) -> list[tuple[str, str]]:
        return [(reader, inp.name) for reader, inp in pipeline.consumers_of(node_id, output_id)]

    assert readers("camera", "image") == [("gpu", "image"), ("sink", "image")]
    assert readers("gpu", "result") == [("gpu", "feedback"), ("sink", "result")]
    assert pipeline.consumers_of("camera", "nothing") == []


def test_node_dict_round_trips_through_json(pipeline: DataflowSpec) -> None:
    for node in pipeline.nodes:
        data = json.loads(json.dumps(node.to_dict()))
        assert NodeSpec.from_dict(data) == node
        assert set(data) == {"id", "name", "description", "path", "module", "build", "args",
                             "env", "inputs", "outputs", "line", "memory_limit", "restart",
                             "max_restarts", "restart_backoff", "machine", "dynamic",
                             "executable"}


def test_specs_are_frozen_and_hashable(pipeline: DataflowSpec) -> None:
    node = pipeline.node("gpu")
    with pytest.raises(AttributeError):
        node.id = "other"  # type: ignore[misc]
    assert hash(node) == hash(NodeSpec.from_dict(node.to_dict()))
    assert isinstance(node.inputs[0], InputSpec)


def test_anchors_and_merge_keys_share_settings(in_specs: None) -> None:
    spec = load("valid-anchors.yml")
    second = spec.node("second")
    assert second.path == spec.node("first").path
    assert second.env == {"MODE": "fast"}
    assert second.outputs[0].id == "out"
    assert spec.consumers_of("first", "out")[0][0] == "second"


def test_empty_optional_sections_mean_none(in_specs: None) -> None:
    lonely = load("valid-empty-sections.yml").node("lonely")
    assert (lonely.args, lonely.env, lonely.inputs, lonely.outputs) == ((), {}, (), ())


def test_missing_file_is_reported_by_name(in_specs: None) -> None:
    messages = _errors("no-such-dataflow.yml")
    assert len(messages) == 1
    assert messages[0].startswith("no-such-dataflow.yml: cannot read dataflow file")


def test_a_directory_is_not_a_readable_dataflow(in_specs: None) -> None:
    assert "cannot read dataflow file" in _errors("nodes")[0]


def test_invalid_utf8_is_reported_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_bytes(b"nodes:\n  - id: \xff\n")
    with pytest.raises(SpecError) as info:
        load(bad)
    assert info.value.messages == [f"{bad}:2: not valid UTF-8 (byte 15)"]


def test_yaml_syntax_error_is_one_message_with_its_line() -> None:
    with pytest.raises(SpecError) as info:
        loads("nodes:\n  - id: a\n    path: [x\n", "inline.yml")
    assert len(info.value.messages) == 1
    assert info.value.messages[0].startswith("inline.yml:")
    assert "invalid YAML" in info.value.messages[0]


def test_forbidden_characters_are_a_yaml_error() -> None:
    with pytest.raises(SpecError) as info:
        loads("nodes:\n  - id: a\x07\n", "ctrl.yml")
    assert info.value.messages[0].startswith("ctrl.yml:2: invalid YAML")


def test_multiple_documents_are_rejected() -> None:
    with pytest.raises(SpecError) as info:
        loads("nodes: []\n---\nnodes: []\n", "two.yml")
    assert "invalid YAML" in info.value.messages[0]


def test_many_problems_are_reported_at_once_sorted_by_line(in_specs: None) -> None:
    messages = _errors("invalid-many-problems.yml")
    assert len(messages) >= 5
    lines = [int(message.split(":")[1]) for message in messages]
    assert lines == sorted(lines)
    assert len(set(messages)) == len(messages)
    # The misspelt 'output' key must not also claim camera has no outputs.
    assert not any("no output" in message for message in messages), messages


def test_unknown_node_key_names_allowed_keys_and_suggests_a_close_match(in_specs: None) -> None:
    (message,) = _errors("invalid-unknown-node-key.yml")
    for key in NODE.listed:
        assert f"{key}" in message
    assert "output_types" not in message, "dora's keys accepted for compatibility are not listed"
    assert message.endswith("did you mean 'inputs'?")


def test_missing_output_message_has_the_documented_form() -> None:
    text = (
        "nodes:\n"
        "  - id: camera\n"
        "    module: cam\n"
        "    outputs: [image]\n"
        "  - id: gpu\n"
        "    module: gpu\n"
        "    inputs: {image: camera/img}\n"
    )
    with pytest.raises(SpecError) as info:
        loads(text, "bench.yml")
    assert info.value.messages[0].startswith(
        "bench.yml:7: node 'gpu' input 'image': no output 'img' on node 'camera' (outputs: image)"
    )


def test_missing_path_message_shows_the_resolved_path(in_specs: None) -> None:
    (message,) = _errors("invalid-path-missing.yml")
    assert str((SPECS / "nodes" / "camera.py").resolve()) in message


def test_bad_outputs_do_not_cascade_into_source_errors() -> None:
    text = (
        "nodes:\n"
        "  - {id: camera, module: cam, outputs: image}\n"
        "  - {id: gpu, module: gpu, inputs: {image: camera/image}}\n"
    )
    with pytest.raises(SpecError) as info:
        loads(text, "cascade.yml")
    assert len(info.value.messages) == 1
    assert "'outputs' must be a list" in info.value.messages[0]


def test_a_node_may_read_its_own_output() -> None:
    spec = loads(
        "nodes:\n  - {id: loop, module: m, inputs: {prev: loop/next}, outputs: [next]}\n", "x.yml"
    )
    assert spec.consumers_of("loop", "next")[0][0] == "loop"


def test_loads_resolves_paths_against_the_given_file_folder() -> None:
    spec = loads("nodes:\n  - {id: a, path: nodes/noop.py}\n", SPECS / "virtual.yml")
    assert spec.node("a").path == (SPECS / "nodes" / "noop.py").resolve()
    assert spec.path == (SPECS / "virtual.yml").resolve()


def test_allowed_key_sets_are_frozensets_for_later_extension() -> None:
    for keys in (TOP_LEVEL_KEYS, NODE_KEYS, INPUT_KEYS, OUTPUT_KEYS):
        assert isinstance(keys, frozenset)
    assert {"nodes"} <= TOP_LEVEL_KEYS
    assert {"id", "path", "module", "args", "env", "inputs", "outputs"} <= NODE_KEYS
    assert {"source", "queue_size", "queue_policy"} <= INPUT_KEYS
    assert {"id"} <= OUTPUT_KEYS


def test_spec_module_imports_only_stdlib_and_yaml() -> None:
    folder = Path(__file__).parents[1] / "pinflow" / "spec"
    imported = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert not imported & {"zenoh", "numpy", "torch", "cuda", "cupy"}
