"""Where a run's zenoh sockets may live: a folder zenoh can name as an endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pinflow.errors import LaunchError
from pinflow.transport.session import make_run_dir, unix_endpoint

DATAFLOWS = Path(__file__).resolve().parents[1] / "dataflows"


@pytest.mark.parametrize("mark", ["#", "?"])
def test_a_socket_folder_zenoh_would_cut_is_refused_with_the_fix(tmp_path, monkeypatch, mark):
    odd = tmp_path / f"a{mark}b"
    odd.mkdir()
    monkeypatch.setenv("TMPDIR", str(odd))
    monkeypatch.setattr("tempfile.tempdir", None)
    with pytest.raises(LaunchError, match="point TMPDIR at a folder whose path has no"):
        make_run_dir("r1")
    assert list(odd.iterdir()) == [], "nothing created before the refusal"
    with pytest.raises(LaunchError, match=f"holds '{'#' if mark == '#' else '?'}'"):
        unix_endpoint(odd / "x.sock")


def test_pinflow_run_under_such_a_tmpdir_says_so_instead_of_a_zenoh_traceback(tmp_path):
    """Before: a zenoh ``ZError`` traceback about a lock on the path cut at the '#'."""
    odd = tmp_path / "runs#1"
    odd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "pinflow", "run", str(DATAFLOWS / "pinned_stream.yml"),
         "--stop-after", "2", "--log-dir", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(odd)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "which zenoh reads as an endpoint separator" in proc.stderr
    assert list(Path(odd).iterdir()) == []
