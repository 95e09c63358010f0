"""Bootstrap of every node process: die with the launcher, then run the node's code.

``python -m pinflow.runtime.child LAUNCHER_PID (path FILE | module NAME | exec PROGRAM)
[ARGS...]``; ``exec`` replaces this process with the program (a console script, whose own
interpreter line then applies), keeping the death signal, which survives ``execve``. Linux's
PR_SET_PDEATHSIG makes the kernel SIGKILL the node if the launcher dies without cleaning
up (kill -9, OOM), so a crashed launcher never leaves orphan nodes behind. Doing this in
the child instead of a ``preexec_fn`` keeps the launcher's fork safe with zenoh's threads.

A node whose stream ended with STOP ``LAUNCHER_LOST`` exits with ``LAUNCHER_LOST_EXIT``
even if its code returned normally: if the launcher is really gone nobody reads the status,
and if it is alive (its run lock was removed behind its back) the run fails and says why.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

_PR_SET_PDEATHSIG = 1
LAUNCHER_LOST_EXIT = 75
"""Exit status of a node that stopped because it believed its launcher gone."""


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the launcher died before prctl took effect
        sys.exit("pinflow: launcher is gone, not starting")


def _run(how: str, target: str, args: list[str]) -> None:
    sys.argv = [target, *args]
    if how == "exec":
        sys.stdout.flush()
        try:
            os.execv(target, [target, *args])
        except OSError as exc:
            sys.exit(f"pinflow: cannot run {target}: {exc.strerror}")
    if how == "path":
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)


def _stopped_by_launcher_loss() -> bool:
    node_module = sys.modules.get("pinflow.nodes.node")  # never imported: no Node here
    return bool(getattr(node_module, "launcher_lost", False))


def main() -> None:
    parent_pid, how, target, *args = sys.argv[1:]
    _die_with_parent(int(parent_pid))
    try:
        _run(how, target, args)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    if _stopped_by_launcher_loss():
        print(f"pinflow: this node stopped with LAUNCHER_LOST; exiting {LAUNCHER_LOST_EXIT}",
              file=sys.stderr, flush=True)
        sys.exit(LAUNCHER_LOST_EXIT)


if __name__ == "__main__":
    main()
