"""Where a dynamic node (``path: dynamic``) finds the run it joins.

``pinflow run`` does not start a dynamic node; it writes the node's wiring (what
``PINFLOW_NODE`` holds for the nodes it starts) into the run's private socket folder, and
``Node("id")`` in a process started by hand looks for it there: in the runs of this user on
this machine whose launcher is alive. The folder is the run's (0700, see
``transport/session.py``), so only the user who started the run can join it. Every run also
writes ``nodes.json`` (its dataflow and node ids), so a wrong id gets a precise answer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pinflow.errors import DescriptorError, NodeEnvironmentError
from pinflow.protocol.wiring import WIRING, Wiring
from pinflow.transport.liveness import run_is_live
from pinflow.transport.session import LAUNCHER_SOCKET, runs_dir

OFFERS = "dynamic"
INDEX = "nodes.json"


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)


def publish(run_dir: Path, dataflow: str, nodes: list[str], offers: dict[str, Wiring]) -> None:
    """Write the run's index and one wiring per dynamic node into ``run_dir``."""
    _write_private(run_dir / INDEX, json.dumps(
        {"dataflow": dataflow, "nodes": nodes, "dynamic": sorted(offers)}))
    if offers:
        folder = run_dir / OFFERS
        folder.mkdir(mode=0o700, exist_ok=True)
        for node_id, wiring in offers.items():
            _write_private(folder / f"{node_id}.json", wiring.to_env())


@dataclass(frozen=True)
class _Run:
    run_id: str
    folder: Path
    dataflow: str
    nodes: list[str]
    dynamic: list[str]

    @property
    def label(self) -> str:
        return f"run {self.run_id} ({self.dataflow})"


def _live_runs() -> list[_Run]:
    try:
        folders = sorted(runs_dir().iterdir())
    except OSError:
        return []
    found = []
    for folder in folders:
        if not (folder / LAUNCHER_SOCKET).exists():
            continue
        try:
            if not run_is_live(folder.name):
                continue
            index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
            found.append(_Run(folder.name, folder, str(index["dataflow"]),
                              list(index["nodes"]), list(index["dynamic"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a run starting or ending, or one of an older pinflow
    return found


def find(node_id: str) -> Wiring:
    """The wiring of the dynamic node ``node_id`` in the one live run that has it;
    ``NodeEnvironmentError`` naming the fix otherwise."""
    runs = _live_runs()
    offering = [run for run in runs if node_id in run.dynamic]
    if len(offering) > 1:
        raise NodeEnvironmentError(
            f"several running dataflows have a dynamic node {node_id!r}: "
            f"{', '.join(run.label for run in offering)}; stop all but one")
    if offering:
        run = offering[0]
        path = run.folder / OFFERS / f"{node_id}.json"
        try:
            return WIRING.decode(path.read_bytes())
        except (OSError, DescriptorError) as exc:
            raise NodeEnvironmentError(
                f"cannot read the wiring of dynamic node {node_id!r} of {run.label}: "
                f"{getattr(exc, 'strerror', None) or exc}") from None
    static = [run for run in runs if node_id in run.nodes]
    if static:
        raise NodeEnvironmentError(
            f"node {node_id!r} of {static[0].label} is not dynamic: `pinflow run` starts it "
            "itself; write `path: dynamic` on it in the YAML to start it by hand")
    running = "; ".join(
        f"{run.label} has dynamic node(s) {', '.join(run.dynamic) or 'none'}" for run in runs)
    raise NodeEnvironmentError(
        f"no running dataflow has a dynamic node {node_id!r} "
        f"({running or 'no dataflow is running on this machine for this user'}): declare it "
        "in the YAML with `path: dynamic` and start the dataflow with `pinflow run FILE` "
        "first, then start this process; a node that `pinflow run` starts finds its place "
        "in the PINFLOW_NODE environment variable instead")
