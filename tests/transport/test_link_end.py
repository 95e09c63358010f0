"""The end of an output on a same-host link says whether the run is stopping, so the
consumer stops with the run instead of ending its stream as ALL_INPUTS_CLOSED when the link
outruns the launcher's STOP over zenoh (it did under load: tests/test_runtime.py's
--stop-after run then ended with ALL_INPUTS_CLOSED instead of MANUAL)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pinflow.testing import use_standin
from pinflow.testing.rig import make_rig
from pinflow.transport.inbound import Incoming


def _end(rig, timeout: float = 5.0) -> Incoming:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for incoming in rig.inbound.receive():
            if incoming.end:
                return incoming
        rig.inbound.wait(0.05)
    raise AssertionError("no end of stream arrived on the link")


@pytest.mark.parametrize("run_stopping", [True, False])
def test_the_end_of_an_output_says_whether_the_run_is_stopping(tmp_path: Path, run_stopping):
    with use_standin() as runtime, make_rig(tmp_path, runtime) as rig:
        rig.send(np.zeros(8192, dtype=np.uint8))
        view, _, _ = rig.receive()
        del view
        rig.arrived.clear()
        rig.channel.close(drain_timeout=0.5, run_stopping=run_stopping)
        end = _end(rig)
        assert end.source == ("cam", "image") and end.run_stopping is run_stopping
