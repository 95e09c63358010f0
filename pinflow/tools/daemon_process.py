"""``pinflow daemon`` as a child process: the second "host" of the benchmark's cross-host arm
and of the multi-host tests.

It lives with the tools, not in :mod:`pinflow.runtime.daemon`: the daemon serves launchers and
has no use for a harness that starts and stops daemons from outside.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pinflow.errors import LaunchError
from pinflow.runtime.daemon import READY


class DaemonProcess:
    """Returns once the daemon serves; ``stop()`` always ends it. ``prefix`` runs it through
    another command, e.g. ``ip netns exec NS`` (which execs in place, so signals still reach
    the daemon itself)."""

    def __init__(self, machine: str, endpoint: str, *, log: Path, log_dir: Path,
                 prefix: Sequence[str] = (), env: dict[str, str] | None = None,
                 cwd: Path | None = None, ready_timeout_s: float = 30.0) -> None:
        self.machine, self.log = machine, log
        self._log_file = open(log, "w")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "pinflow", "daemon", "--machine", machine,
             "--listen", endpoint, "--log-dir", str(log_dir)],
            stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, env=env)
        deadline = time.monotonic() + ready_timeout_s
        while READY not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.output.strip().splitlines()[-1:] or ["no output"]
                raise LaunchError(f"`pinflow daemon --machine {machine}` did not start: "
                                  f"{tail[0]}")
            time.sleep(0.05)

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (the daemon stops its nodes and unlinks its pools), SIGKILL if it hangs;
        the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode
