"""How a run ended: every node's result (``pinflow.protocol.control.NodeResult``, local or
reported by a daemon) and the summary ``pinflow run`` prints."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from pinflow.protocol.control import NodeResult
from pinflow.runtime.child import LAUNCHER_LOST_EXIT

LAUNCHER_LOST_WHY = ("it stopped with LAUNCHER_LOST while the launcher was running: its run "
                     "lock was not held, was it removed by hand or by a cleaner?")


@dataclass(frozen=True)
class RunResult:
    run_id: str
    results: list[NodeResult]
    log_dir: Path

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failures(self) -> list[NodeResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        lines = [f"run {self.run_id}: {len(self.results)} node(s), logs in {self.log_dir}"]
        for r in self.results:
            if r.restarts:
                lines.append(f"  node {r.node_id!r} was restarted {r.restarts} time(s)")
            if r.ok:
                continue
            why = (f"stopped by the launcher: {r.stopped_why}" if r.stopped_why
                   else f"did not stop within the grace period ({r.forced})" if r.forced
                   else f"exit code {r.returncode} ({LAUNCHER_LOST_WHY})"
                   if r.returncode == LAUNCHER_LOST_EXIT
                   else f"exit code {r.returncode}" if r.returncode >= 0
                   else f"killed by signal {signal.Signals(-r.returncode).name}")
            where = f" on machine {r.machine!r}" if r.machine else ""
            lines.append(f"  node {r.node_id!r}{where} failed: {why}; last lines:")
            lines.extend(f"    | {line}" for line in r.tail or ["(no output)"])
        return "\n".join(lines)
