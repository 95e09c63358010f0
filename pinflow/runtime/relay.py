"""Where a run's lines go: each node's output to its log file and, prefixed with its id, to the
launcher's stdout; the launcher's own ``pinflow | ...`` lines; and, on a daemon's host, a copy
of both to the leading launcher.

One lock orders every printed line, so lines of different nodes never interleave mid-line.
"""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import Protocol, TextIO


class LeaderLink(Protocol):
    """How a launcher that runs one host's share for a daemon reaches the leading launcher
    on the first host (the daemon builds it; the launcher only talks through it)."""

    def say(self, text: str) -> None:
        """A ``pinflow | ...`` line of this host, shown there as ``pinflow@MACHINE | ...``."""

    def line(self, node_id: str, text: str) -> None:
        """One output line of a node of this host."""


class Relay:
    """Prints and logs the lines of one host's share of a run."""

    def __init__(self, out: TextIO, node_ids: list[str], link: LeaderLink | None = None
                 ) -> None:
        self.out = out
        self.link = link
        """On a daemon: where this host's lines go to the leading launcher."""
        self._lock = threading.Lock()
        self._id_width = max(len(n) for n in node_ids)
        """Node ids are padded to this in the output, so columns line up across nodes."""

    def say(self, text: str) -> None:
        """A line of the launcher itself."""
        with self._lock:
            print(f"pinflow | {text}", file=self.out, flush=True)
        if self.link is not None:
            self.link.say(text)

    def follow(self, node_id: str, process: subprocess.Popen[bytes], log_path: Path,
               tail: deque[str]) -> None:
        """Copy a node's output to its log file and to our stdout, prefixed with its id,
        until the process closes it (run on a thread of its own); keep the last lines in
        ``tail``."""
        assert process.stdout is not None
        with open(log_path, "a", encoding="utf-8") as log_file:
            for raw in process.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                log_file.write(line + "\n")
                log_file.flush()
                tail.append(line)
                with self._lock:
                    print(f"{node_id:<{self._id_width}} | {line}", file=self.out, flush=True)
                if self.link is not None:
                    self.link.line(node_id, line)

    def remote_line(self, node_id: str, line: str, log_path: Path) -> None:
        """A line of a node on another host: printed and logged here like a local one."""
        with self._lock:
            with open(log_path, "a", encoding="utf-8") as log_file:
                log_file.write(line + "\n")
            print(f"{node_id:<{self._id_width}} | {line}", file=self.out, flush=True)

    def remote_say(self, machine: str, text: str) -> None:
        """A line of the daemon that runs ``machine``'s share."""
        with self._lock:
            print(f"pinflow@{machine} | {text}", file=self.out, flush=True)
