"""A dora dataflow YAML, untouched, loads: dora's keys map onto pinflow's, informational ones
are ignored with a note that says what they are, and what pinflow cannot honour is refused
with a message naming what to write instead."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from pinflow.errors import SpecError
from pinflow.spec import QueuePolicy, load, loads

DORA_FLOW = """\
_unstable_deploy:
  machine: default-box
env:
  SHARED: "1"
  MODE: global
communication:
  _unstable_local: UnixDomain
nodes:
  - id: camera
    name: Camera
    description: Grabs frames.
    path: camera.py
    args: --fps 30 --name "front cam"
    build: pip install opencv-python
    deploy:
      machine: gpu-box
    env:
      MODE: local
    inputs:
      tick: dora/timer/millis/33
    outputs:
      - image
    output_types:
      image: std/core/v1/UInt8
  - id: plotter
    path: camera.py
    inputs:
      image:
        source: camera/image
        queue_size: 2
        queue_policy: backpressure
    input_types:
      image: std/core/v1/UInt8
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "camera.py").write_text("")
    return tmp_path


def test_a_dora_dataflow_loads_with_its_keys_mapped(folder: Path) -> None:
    spec = loads(DORA_FLOW, folder / "dataflow.yml")
    camera, plotter = spec.node("camera"), spec.node("plotter")
    assert camera.machine == "gpu-box", "node deploy wins"
    assert plotter.machine == "default-box", "top-level deploy is the default"
    assert camera.env == {"SHARED": "1", "MODE": "local"} and plotter.env["MODE"] == "global"
    assert camera.args == ("--fps", "30", "--name", "front cam")
    assert camera.build == "pip install opencv-python"
    assert camera.name == "Camera" and camera.description == "Grabs frames."
    assert camera.inputs[0].timer_period_s == pytest.approx(0.033)
    image = plotter.inputs[0]
    assert image.queue_policy is QueuePolicy.BACKPRESSURE and image.queue_size == 100
    assert spec.notes == (
        f"{folder / 'dataflow.yml'}:6: top level: 'communication' is ignored: pinflow always "
        "talks zenoh over the run's unix sockets (and the wire endpoints of `pinflow run` "
        "between machines)",
        f"{folder / 'dataflow.yml'}:23: node 'camera': 'output_types' is ignored: a dora type "
        "annotation; pinflow does not check message types",
        f"{folder / 'dataflow.yml'}:32: node 'plotter': 'input_types' is ignored: a dora type "
        "annotation; pinflow does not check message types")


@pytest.mark.parametrize(("source", "period"), [
    ("dora/timer/secs/2", 2.0), ("dora/timer/millis/50", 0.05), ("dora/timer/micros/250", 250e-6),
    ("dora/timer/nanos/1000", 1e-6), ("dora/timer/hz/0.5", 2.0), ("pinflow/timer/secs/1", 1.0),
    ("pinflow/timer/hz/30", 1 / 30), ("pinflow/timer/millis/250", 0.25)])
def test_timers_in_every_unit_and_both_prefixes(source: str, period: float) -> None:
    spec = loads(f"nodes:\n  - {{id: a, module: m, inputs: {{t: {source}}}}}\n", "x.yml")
    assert spec.node("a").inputs[0].timer_period_s == pytest.approx(period)


@pytest.mark.parametrize("source", ["dora/timer/millis/0", "dora/timer/weeks/1",
                                    "dora/timer/secs/1.5", "dora/timer/hz/0"])
def test_bad_timers_list_the_units(source: str) -> None:
    with pytest.raises(SpecError) as info:
        loads(f"nodes:\n  - {{id: a, module: m, inputs: {{t: {source}}}}}\n", "x.yml")
    (message,) = info.value.messages
    assert f"invalid timer source '{source}'" in message
    assert "'secs', 'millis', 'micros', 'nanos'" in message and "'hz'" in message


def _refused(node_extra: str, top_extra: str = "", path: str = "module: m") -> str:
    with pytest.raises(SpecError) as info:
        loads(f"{top_extra}nodes:\n  - id: a\n    {path}\n{node_extra}", "x.yml")
    (message,) = info.value.messages
    return message


@pytest.mark.parametrize(("extra", "expected"), [
    ("    operators: []\n", "dora operators are not supported by pinflow: run the operator's "
     "code as a node of its own"),
    ("    operator: {python: op.py}\n", "dora operators are not supported by pinflow"),
    ("    custom: {source: x.py}\n", "dora's `custom:` is not supported by pinflow: move its "
     "`source`, `args`, `envs`, `inputs` and `outputs` onto the node"),
    ("    ros2: {}\n", "dora's ROS 2 bridge nodes are not supported by pinflow"),
    ("    git: https://example.invalid/x.git\n", "nodes fetched from git are not supported"),
    ("    send_stdout_as: out\n", "sending a node's output lines or logs as messages"),
    ("    restart_policy: on-failure\n", "`restart: never | on-failure | always`, "
     "`max_restarts` (0 means no restart, not unlimited)"),
    ("    inputs:\n      t: {source: dora/timer/secs/1, input_timeout: 5}\n",
     "dora's input_timeout (close an input after N s of silence) is not supported"),
    ("    inputs:\n      logs: dora/logs\n", "dora's built-in source 'dora/logs' is not "
     "supported by pinflow"),
    ("    deploy: {machine: m1, working_dir: /srv}\n", "'deploy: working_dir' is not supported "
     "by pinflow: nodes run in the YAML's folder"),
    ("    deploy: {machine: m1}\n    _unstable_deploy: {machine: m1}\n",
     "has both 'deploy' and '_unstable_deploy'"),
    ("    machine: m1\n    deploy: {machine: m2}\n", "'machine' (m1) and deploy's machine "
     "(m2) differ"),
    ("    deploy: {machine: 'gpu box'}\n", "deploy machine must be a host name"),
])
def test_what_pinflow_cannot_honour_is_refused_with_what_to_write(extra: str,
                                                                  expected: str) -> None:
    assert expected in _refused(extra)


def test_top_level_exit_when_nodes_finish_is_refused() -> None:
    message = _refused("", "exit_when_nodes_finish: true\n")
    assert "exit_when_nodes_finish is not supported by pinflow" in message


@pytest.mark.parametrize(("path", "expected"), [
    ("path: shell", "dora's `path: shell` is not supported by pinflow"),
    ("path: https://example.invalid/node.py", "pinflow does not download nodes"),
    ("module: nodes/camera.yml", "dora's `module:` (a module definition file) is not "
     "supported by pinflow"),
])
def test_dora_only_paths_and_module_files_are_refused(path: str, expected: str) -> None:
    assert expected in _refused("", path=path)


def test_a_dynamic_node_has_no_program_and_may_not_name_a_machine() -> None:
    spec = loads("nodes:\n  - {id: viewer, path: dynamic}\n", "x.yml")
    viewer = spec.node("viewer")
    assert viewer.dynamic and viewer.path is None and not viewer.executable
    message = _refused("    deploy: {machine: m1}\n", path="path: dynamic")
    assert "a dynamic node joins on the launcher's host; remove its machine (m1)" in message


def test_a_top_level_deploy_does_not_move_a_dynamic_node() -> None:
    spec = loads("deploy: {machine: m1}\nnodes:\n  - {id: viewer, path: dynamic}\n"
                 "  - {id: a, module: m}\n", "x.yml")
    assert spec.node("viewer").machine is None and spec.node("a").machine == "m1"


def test_a_program_on_path_or_beside_the_interpreter_is_found(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """Before: `path: pyarrow-sender` (a console script) was "does not exist"."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "my-sender"
    script.write_text("#!/bin/sh\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    spec = loads("nodes:\n  - {id: a, path: my-sender}\n  - {id: b, path: python}\n",
                 tmp_path / "x.yml")
    assert spec.node("a").path == script and spec.node("a").executable
    assert spec.node("b").path == Path(os.path.dirname(sys.executable)) / "python"


def test_an_executable_file_beside_the_yaml_runs_itself_a_python_file_does_not(
        tmp_path: Path) -> None:
    for name, mode in (("run.sh", 0o755), ("node.py", 0o755), ("plain", 0o644)):
        (tmp_path / name).write_text("")
        (tmp_path / name).chmod(mode)
    spec = loads("nodes:\n  - {id: a, path: run.sh}\n  - {id: b, path: node.py}\n"
                 "  - {id: c, path: plain}\n", tmp_path / "x.yml")
    assert [spec.node(n).executable for n in "abc"] == [True, False, False]


def test_a_missing_program_names_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        loads("nodes:\n  - {id: a, path: no-such-program-here}\n", tmp_path / "x.yml")
    (message,) = info.value.messages
    assert "path 'no-such-program-here' does not exist" in message
    assert f"on PATH and in {os.path.dirname(sys.executable)}" in message


def test_a_missing_program_with_a_build_step_is_unbuilt_not_an_error(tmp_path: Path) -> None:
    spec = loads("nodes:\n  - id: a\n    build: python make.py\n    path: made-by-build\n",
                 tmp_path / "x.yml")
    (text,) = spec.unbuilt
    assert text.startswith(f"{tmp_path / 'x.yml'}:4: node 'a': path 'made-by-build' does not "
                           "exist yet")
    assert text.endswith("its `build:` step should make it")
    assert spec.node("a").path is None


def test_a_build_line_with_broken_quotes_is_reported_before_anything_runs() -> None:
    message = _refused("    build: |\n      pip install 'x\n")
    assert "cannot split line 1 of 'build'" in message


def test_the_dora_examples_keys_validate(tmp_path: Path) -> None:
    """The keys of dora's Python examples (build, console-script path, env ints, dynamic)."""
    (tmp_path / "node.py").write_text("")
    flow = tmp_path / "dataflow.yml"
    flow.write_text(
        "nodes:\n"
        "  - id: camera\n    build: pip install opencv-video-capture\n"
        "    path: opencv-video-capture\n    inputs:\n      tick: dora/timer/millis/20\n"
        "    outputs:\n      - image\n    env:\n      CAPTURE_PATH: 0\n"
        "      IMAGE_WIDTH: 640\n"
        "  - id: plot\n    path: dynamic\n    inputs:\n      image: camera/image\n"
        "  - id: echo\n    path: node.py\n    inputs:\n      image: camera/image\n")
    spec = load(flow)
    assert spec.node("camera").env == {"CAPTURE_PATH": "0", "IMAGE_WIDTH": "640"}
    assert spec.node("plot").dynamic and len(spec.unbuilt) == 1
