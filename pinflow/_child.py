"""Bootstrap of every node process: die with the launcher, then run the node's code.

``python -m pinflow._child LAUNCHER_PID (path FILE | module NAME) [ARGS...]``. Linux's
PR_SET_PDEATHSIG makes the kernel SIGKILL the node if the launcher dies without cleaning
up (kill -9, OOM), so a crashed launcher never leaves orphan nodes behind. Doing this in
the child instead of a ``preexec_fn`` keeps the launcher's fork safe with zenoh's threads.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the launcher died before prctl took effect
        sys.exit("pinflow: launcher is gone, not starting")


def main() -> None:
    parent_pid, how, target, *args = sys.argv[1:]
    _die_with_parent(int(parent_pid))
    if how == "path":
        sys.argv = [target, *args]
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")
    else:
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
