"""``pinflow build FILE``: run the nodes' ``build:`` steps, like ``dora build``.

Each node's ``build:`` is a string of commands, one per line, run in YAML order (nodes, then
lines), dynamic nodes included, and the first one that fails stops the build. As in dora,
a line is split into words like a shell would split it (quotes group, nothing else) and run
without a shell: no ``&&``, pipes, globbing or ``$VAR``; put those in a script. Each command
runs in the YAML's folder, with stdin closed, in pinflow's environment plus the node's
``env`` (the top level's under it), its output prefixed with the node id.

Python packages must land where pinflow runs the nodes: ``pip``/``pip3`` run as
``<interpreter> -m pip``, and the interpreter's folder (a virtual environment's ``bin``) comes
first on ``PATH``, so ``python`` and the console scripts installed there are found even when
pinflow was started as ``.venv/bin/pinflow``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from typing import TextIO

from pinflow.errors import BuildError
from pinflow.spec import DataflowSpec, NodeSpec

PIP_NAMES = ("pip", "pip3")


def commands(node: NodeSpec) -> Iterator[tuple[str, list[str]]]:
    """(the line as written, the argv it runs) for each non-blank line of ``build:``."""
    for line in (node.build or "").splitlines():
        words = shlex.split(line)
        if not words:
            continue
        if words[0] in PIP_NAMES:
            words = [sys.executable, "-m", "pip", *words[1:]]
        yield line.strip(), words


def environment(node: NodeSpec) -> dict[str, str]:
    """pinflow's environment, the node's ``env``, the interpreter's folder first on PATH."""
    env = {**os.environ, **node.env}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                   env.get("PATH", os.defpath)])
    return env


def build(spec: DataflowSpec, out: TextIO | None = None) -> int:
    """Run every ``build:`` step of ``spec``; the number of commands run. ``BuildError``
    names the node and the command that failed."""
    out = out or sys.stdout
    ran = 0
    for node in spec.nodes:
        env = environment(node)
        for line, argv in commands(node):
            print(f"pinflow | building node {node.id!r}: {line}", file=out, flush=True)
            _run(node.id, line, argv, spec, env, out)
            ran += 1
    if not ran:
        print(f"pinflow | no node of {spec.path.name} has a `build:` step", file=out,
              flush=True)
    return ran


def _run(node_id: str, line: str, argv: list[str], spec: DataflowSpec, env: dict[str, str],
         out: TextIO) -> None:
    try:
        proc = subprocess.Popen(argv, cwd=spec.path.parent, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as exc:
        where = "on PATH" if os.sep not in argv[0] else "there"
        raise BuildError(f"node {node_id!r}: build command {line!r} cannot start: "
                         f"{argv[0]!r}: {exc.strerror} (looked {where}, with "
                         f"{os.path.dirname(sys.executable)} first)") from None
    assert proc.stdout is not None
    with proc:
        for raw in proc.stdout:
            text = raw.decode("utf-8", errors="replace").rstrip("\n")
            print(f"{node_id} | {text}", file=out, flush=True)
    if proc.returncode != 0:
        raise BuildError(f"node {node_id!r}: build command {line!r} exited with "
                         f"{proc.returncode}; nothing after it was built")
