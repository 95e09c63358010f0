"""Dynamic nodes (`path: dynamic`): `pinflow run` does not start them; a process started by
hand joins the running dataflow with `Node("id")`, may leave and join again, and nobody
waits for it. Before: `path: dynamic` was "does not exist" and Node("viewer") a TypeError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import DATAFLOWS, BackgroundRun, assert_no_orphans

DORA = DATAFLOWS / "dora"


def _viewer(results: Path, *args: str, want: int = 10, tag: str | None = None
            ) -> subprocess.Popen[str]:
    """The viewer as a user starts it: its own process, no PINFLOW_NODE."""
    env = {k: v for k, v in os.environ.items() if k != "PINFLOW_NODE"}
    env.update(PINFLOW_TEST_RESULTS=str(results), WANT=str(want),
               TAG=tag or (args[0] if args else "viewer"))
    return subprocess.Popen([sys.executable, str(DORA / "viewer.py"), *args], env=env,
                            cwd=DORA, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def test_a_dynamic_node_joins_leaves_and_joins_again_and_wrong_ids_are_explained(tmp_path):
    with BackgroundRun(DORA / "dynamic.yml", tmp_path, stop_after=12) as run:
        run.wait_started(30)
        results = run.results
        first = _viewer(results, want=10, tag="first")
        assert first.wait(timeout=30) == 0, first.communicate()[0]
        # A second visit stays until STOP; while it is there, a third cannot join.
        second = _viewer(results, want=10**6, tag="second")
        _wait_file(results / "second.joined.json")
        third = _viewer(results, tag="third")
        assert third.wait(timeout=30) == 2
        for wrong in ("nope", "sender"):
            assert _viewer(results, wrong).wait(timeout=30) == 2
        assert second.wait(timeout=40) == 0, second.communicate()[0]
        assert run.wait(timeout=40) == 0, run.output
    output = run.output

    def result(name: str) -> dict:
        return json.loads((results / f"{name}.json").read_text())

    visit = result("first")
    assert len(visit["seen"]) == 10 and visit["id"] == "viewer"
    assert visit["seen"] == list(range(visit["seen"][0], visit["seen"][0] + 10)), "in order"
    assert result("second")["stop"] == "MANUAL"
    assert "node 'viewer' is already running in this run" in result("third")["error"]
    assert ("no running dataflow has a dynamic node 'nope' (run " in result("nope")["error"])
    assert "declare it in the YAML with `path: dynamic`" in result("nope")["error"]
    assert ("node 'sender' of run" in result("sender")["error"]
            and "is not dynamic: `pinflow run` starts it itself" in result("sender")["error"])
    sink = result("sink")
    assert sink["seen"][:10] == visit["seen"], "what the dynamic node sent reached the sink"
    assert len(sink["seen"]) > 10, "the second visit's messages too"
    assert sink["closed"] == [], "its input stays open while the dynamic node is away"
    assert sink["last"] == ["STOP", "MANUAL"]
    assert "dynamic node 'viewer' is not started by pinflow run" in output
    assert "not reachable yet" not in output, "nobody waits for a dynamic node"
    assert_no_orphans([sink["pid"]])


def test_a_run_whose_dynamic_node_never_comes_ends_on_its_own_terms(pinflow):
    run = pinflow("run", str(DORA / "dynamic.yml"), "--stop-after", "2")
    assert run.returncode == 0, run.output
    assert "not reachable yet" not in run.output
    sink = run.result("sink")
    assert sink["seen"] == [] and sink["last"] == ["STOP", "MANUAL"]


def test_node_with_an_id_and_no_run_says_how_to_start_one(tmp_path):
    """Before: Node("viewer") was a TypeError."""
    env = {k: v for k, v in os.environ.items() if k != "PINFLOW_NODE"}
    env["TMPDIR"] = str(tmp_path)  # no run's folder here
    proc = subprocess.run([sys.executable, "-c", "from pinflow import Node; Node('viewer')"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0
    assert ("NodeEnvironmentError: no running dataflow has a dynamic node 'viewer' (no "
            "dataflow is running on this machine for this user)") in proc.stderr
    assert "`path: dynamic`" in proc.stderr and "pinflow run FILE" in proc.stderr
