"""`pinflow build` and `pinflow run --build` run dora's `build:` steps; `path:` may name a
console script; a dora project runs with its YAML untouched. Nothing here installs from a
package index: the build steps are Python one-liners and a script that writes console
scripts, as `pip install` would."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

from conftest import DATAFLOWS

PROJECT = DATAFLOWS / "dora" / "project"


def _flow(folder: Path, text: str) -> Path:
    path = folder / "dataflow.yml"
    path.write_text(textwrap.dedent(text))
    return path


WRITES_CWD_AND_ENV = (
    "python -c \"import os, pathlib; pathlib.Path('built-' + os.environ['WHO'])"
    ".write_text(os.getcwd())\"")


def test_build_runs_each_line_in_the_yaml_folder_with_the_node_env_and_no_shell(pinflow,
                                                                                 tmp_path):
    """Before: `build:` was an unknown key and `pinflow build` did not exist."""
    folder = tmp_path / "project"  # not the folder pinflow is started in
    folder.mkdir()
    flow = _flow(folder, f"""\
        nodes:
          - id: first
            module: m
            env:
              WHO: first
            build: |
              {WRITES_CWD_AND_ENV}

              echo a && echo b
          - id: second
            module: m
            env:
              WHO: second
            build: {WRITES_CWD_AND_ENV}
        """)
    run = pinflow("build", str(flow))
    assert run.returncode == 0, run.output
    assert (folder / "built-first").read_text() == str(folder)
    assert (folder / "built-second").read_text() == str(folder)
    assert "first | a && echo b" in run.stdout, "no shell: `&&` is an argument of echo"
    assert run.stdout.index("building node 'first'") < run.stdout.index(
        "building node 'second'")


def test_a_failing_build_line_stops_the_build_and_names_it(pinflow, tmp_path):
    flow = _flow(tmp_path, """\
        nodes:
          - id: broken
            module: m
            build: |
              python -c "raise SystemExit(4)"
              python -c "open('never', 'w')"
          - id: later
            module: m
            build: python -c "open('never-either', 'w')"
        """)
    run = pinflow("build", str(flow))
    assert run.returncode == 1
    assert ("pinflow: error: node 'broken': build command 'python -c \"raise SystemExit(4)\"' "
            "exited with 4; nothing after it was built") in run.stderr
    assert not (tmp_path / "never").exists() and not (tmp_path / "never-either").exists()


def test_a_build_program_that_does_not_exist_is_named(pinflow, tmp_path):
    flow = _flow(tmp_path, """\
        nodes:
          - {id: a, module: m, build: no-such-build-tool --now}
        """)
    run = pinflow("build", str(flow))
    assert run.returncode == 1
    assert "node 'a': build command 'no-such-build-tool --now' cannot start" in run.stderr


def test_pip_in_a_build_step_is_the_interpreter_s_own(pinflow, tmp_path):
    flow = _flow(tmp_path, "nodes:\n  - {id: a, module: m, build: pip --version}\n")
    run = pinflow("build", str(flow))
    assert run.returncode == 0, run.output
    (line,) = [x for x in run.stdout.splitlines() if x.startswith("a | pip ")]
    site = next(p for p in sys.path if p.endswith("site-packages"))
    assert f"from {site}" in line, (line, site)


def _project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the dora project (its build writes into its folder) and a PATH that holds
    the folder its build installs console scripts into."""
    folder = tmp_path / "project"
    shutil.copytree(PROJECT, folder)
    env = {"PATH": f"{folder / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    return folder, env


def test_a_dora_project_runs_untouched_with_build_and_console_scripts(pinflow, tmp_path):
    """node-hub's echo example, rebuilt: console-script paths, Node(args.name) with names
    that are not the YAML ids, a build that installs the scripts. Before: `build:` and
    `path: pyarrow-sender` were refused, and Node("echo") was a TypeError."""
    folder, env = _project(tmp_path)
    flow = folder / "dataflow.yml"
    before = pinflow("run", str(flow), env=env)
    assert before.returncode == 2
    assert ("node 'pyarrow-sender': path 'pyarrow-sender' does not exist yet" in before.stderr)
    assert f"run `pinflow build {flow}` first, or `pinflow run --build {flow}`" in (
        before.stderr)
    assert not (folder / "bin").exists(), "nothing ran"
    run = pinflow("run", "--build", str(flow), env=env)
    assert run.returncode == 0, run.output
    assert "pyarrow-assert | [PASS] #1 data matches: [1, 2, 3, 4, 5]" in run.stdout
    assert "pyarrow-assert | Total PASS: 1" in run.stdout
    assert "INFO dora-echo: ignoring node id 'echo' passed to Node()" in run.stdout
    again = pinflow("run", str(flow), env=env)  # built already: plain run works
    assert again.returncode == 0, again.output
    assert "Total PASS: 1" in again.stdout


def test_validate_notes_a_path_its_build_will_make(pinflow, tmp_path):
    folder, env = _project(tmp_path)
    run = pinflow("validate", str(folder / "dataflow.yml"), env=env)
    assert run.returncode == 0, run.output
    assert run.stderr.count("does not exist yet") == 3
    assert "its `build:` step should make it: run `pinflow build" in run.stderr
