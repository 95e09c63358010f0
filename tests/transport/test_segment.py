"""Segments are real /dev/shm files shared with real child processes."""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest

from pinflow.errors import ClosedError, DescriptorError
from pinflow.transport import segment as seg_mod
from pinflow.transport.segment import (
    PAGE,
    Segment,
    new_incarnation,
    parse_segment_name,
    run_glob,
    segment_name,
)


def name_of(run_id: str, output: str = "out") -> str:
    return segment_name(run_id, "cam", output, new_incarnation())


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30
    )


def test_segment_names_round_trip_through_parse() -> None:
    name = segment_name("run-1", "cam_0", "image", "0a1b2c3d")
    assert name == "pinflow-run-1.cam_0.image.0a1b2c3d"
    assert parse_segment_name(name) == ("run-1", "cam_0", "image", "0a1b2c3d")


@pytest.mark.parametrize(
    ("run", "node", "output", "incarnation"),
    [
        ("a.b", "n", "o", "ab"),
        ("r", "../x", "o", "ab"),
        ("r", "n", "o/p", "ab"),
        ("r", "n", "", "ab"),
        ("r", "n", "o", "AB"),
        ("r", "n", "o", "xyz"),
        ("r\n", "n", "o", "ab"),
    ],
)
def test_segment_name_refuses_ids_outside_the_id_alphabet(
    run: str, node: str, output: str, incarnation: str
) -> None:
    with pytest.raises(ValueError):
        segment_name(run, node, output, incarnation)


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "pinflow-x/../y",
        "pinflow-x/../y.a.b.c",
        "pinflow-a.b.c.0a\x00",
        "pinflow-a.b.c.0a\n",
        "pinflow-a.b.c",
        "pinflow-a.b.c.d.e",
        "pinflow-a.b.c.XY",
        "pinflow-a..c.0a",
        "pinflow-r.lock",
        "other-a.b.c.0a",
        "/dev/shm/pinflow-a.b.c.0a",
        "",
    ],
)
def test_parse_refuses_hostile_and_foreign_names(name: str) -> None:
    assert parse_segment_name(name) is None


def test_new_incarnations_are_eight_random_hex_digits() -> None:
    first, second = new_incarnation(), new_incarnation()
    assert len(first) == 8 and int(first, 16) >= 0
    assert first != second


def test_run_glob_matches_the_files_of_one_run_only() -> None:
    assert run_glob("r1") == "pinflow-r1.*"
    with pytest.raises(ValueError):
        run_glob("r1/*")


def test_create_makes_a_private_file_of_the_requested_size(run_id: str) -> None:
    seg = Segment.create(name_of(run_id), 3 * PAGE + 5)
    try:
        st = os.stat(seg.path)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_size == seg.size == 3 * PAGE + 5
        assert seg.path == seg_mod.shm_dir() / seg.name
        assert len(seg.buffer) == seg.size
    finally:
        seg.unlink()
        seg.close()


def test_creating_an_existing_name_fails(run_id: str) -> None:
    seg = Segment.create(name_of(run_id), PAGE)
    try:
        with pytest.raises(FileExistsError):
            Segment.create(seg.name, PAGE)
    finally:
        seg.unlink()
        seg.close()


def test_create_refuses_bad_names_and_sizes(run_id: str) -> None:
    with pytest.raises(ValueError):
        Segment.create("pinflow-x/../y", PAGE)
    with pytest.raises(ValueError):
        Segment.create(name_of(run_id), 0)


def test_prefault_makes_the_pages_resident_and_without_it_none_are(run_id: str) -> None:
    size = 64 * PAGE
    faulted = Segment.create(name_of(run_id, "a"), size)
    lazy = Segment.create(name_of(run_id, "b"), size, prefault=False)
    try:
        assert os.stat(faulted.path).st_blocks * 512 >= size
        assert os.stat(lazy.path).st_blocks == 0
    finally:
        for seg in (faulted, lazy):
            seg.unlink()
            seg.close()


def test_open_refuses_missing_segments_and_wrong_sizes(run_id: str) -> None:
    with pytest.raises(DescriptorError, match="does not exist"):
        Segment.open(name_of(run_id))
    seg = Segment.create(name_of(run_id), 2 * PAGE)
    try:
        with pytest.raises(DescriptorError, match="expected"):
            Segment.open(seg.name, expected_size=PAGE)
        other = Segment.open(seg.name, expected_size=2 * PAGE)
        assert other.size == 2 * PAGE
        other.close()
    finally:
        seg.unlink()
        seg.close()


def test_open_refuses_hostile_names_symlinks_and_directories(run_id: str) -> None:
    with pytest.raises(DescriptorError):
        Segment.open("../etc/passwd")
    with pytest.raises(DescriptorError):
        Segment.open("pinflow-x/../y")
    link = seg_mod.shm_dir() / name_of(run_id, "link")
    folder = seg_mod.shm_dir() / name_of(run_id, "dir")
    link.symlink_to("/etc/passwd")
    folder.mkdir()
    try:
        with pytest.raises(DescriptorError, match="regular file"):
            Segment.open(link.name)
        with pytest.raises(DescriptorError):
            Segment.open(folder.name)
    finally:
        link.unlink()
        folder.rmdir()


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another uid needs root")
def test_open_refuses_a_segment_owned_by_another_user(run_id: str) -> None:
    seg = Segment.create(name_of(run_id), PAGE)
    try:
        os.chown(seg.path, 4242, 4242)
        with pytest.raises(DescriptorError, match="uid 4242"):
            Segment.open(seg.name)
    finally:
        seg.unlink()
        seg.close()


CHILD_WRITES = """
import sys
from pinflow.transport.segment import Segment
seg = Segment.open(sys.argv[1], expected_size=int(sys.argv[2]), writable=True)
seg.view(int(sys.argv[3]), 5, writable=True)[:] = list(b"hello")
seg.close()
"""


def test_a_child_process_writes_bytes_the_parent_sees_and_exit_keeps_the_segment(
    run_id: str,
) -> None:
    seg = Segment.create(name_of(run_id), 2 * PAGE)
    try:
        view = seg.view(PAGE + 7, 5, writable=False)
        done = run_python(CHILD_WRITES, seg.name, str(seg.size), str(PAGE + 7))
        assert done.returncode == 0, done.stderr
        assert bytes(view) == b"hello"  # seen through the mapping made before: no copy
        assert seg.path.exists()
        assert Segment.open(seg.name).view(PAGE + 7, 5, writable=False).tobytes() == b"hello"
    finally:
        seg.unlink()
        seg.close()


CHILD_WRITES_THROUGH_A_POINTER = """
import ctypes, sys
from pinflow.transport.segment import Segment
seg = Segment.open(sys.argv[1])
view = seg.view(int(sys.argv[2]), 5, writable=False)
ctypes.memmove(view.__array_interface__["data"][0], b"evil!", 5)
"""


def test_a_consumer_cannot_write_a_producers_slot(run_id: str) -> None:
    producer = Segment.create(name_of(run_id), 2 * PAGE)
    try:
        slot = producer.view(PAGE + 7, 5, writable=True)
        slot[:] = list(b"hello")
        consumer = Segment.open(producer.name)
        assert not consumer.writable
        with pytest.raises(ValueError, match="read-only"):
            consumer.view(PAGE, 5, writable=True)
        with pytest.raises(TypeError):
            consumer.buffer[PAGE + 7] = 0  # Python refuses a write to a PROT_READ mapping
        consumer.close()
        # ... and so does the CPU, for code that goes around numpy (ctypes, C extensions)
        done = run_python(CHILD_WRITES_THROUGH_A_POINTER, producer.name, str(PAGE + 7))
        assert done.returncode == -signal.SIGSEGV, done.stderr
        assert bytes(slot) == b"hello"
    finally:
        producer.unlink()
        producer.close()


def test_views_are_bounds_checked(run_id: str) -> None:
    seg = Segment.create(name_of(run_id), PAGE, prefault=False)
    try:
        assert seg.view(PAGE - 1, 1, writable=True).shape == (1,)
        assert seg.view(PAGE, 0, writable=False).shape == (0,)
        for offset, length in [(-1, 1), (0, PAGE + 1), (PAGE, 1), (1, -1), (True, 1)]:
            with pytest.raises(DescriptorError):
                seg.view(offset, length, writable=False)
    finally:
        seg.unlink()
        seg.close()


def test_read_only_views_share_memory_and_cannot_be_made_writable(run_id: str) -> None:
    seg = Segment.create(name_of(run_id), PAGE, prefault=False)
    try:
        out = seg.view(10, 4, writable=True)
        seen = seg.view(10, 4, writable=False)
        out[:] = [1, 2, 3, 4]
        assert seen.tolist() == [1, 2, 3, 4]
        assert seen.dtype == np.uint8 and seen.ndim == 1
        with pytest.raises(ValueError):
            seen[0] = 9
        with pytest.raises(ValueError):
            seen.flags.writeable = True
        assert out.__array_interface__["data"][0] == seg.address() + 10
        assert ctypes.string_at(seg.address() + 10, 4) == b"\x01\x02\x03\x04"
    finally:
        seg.unlink()
        seg.close()


def test_close_with_live_views_leaves_them_valid_and_is_idempotent(run_id: str) -> None:
    seg = Segment.create(name_of(run_id), PAGE)
    view = seg.view(0, 3, writable=True)
    seg.unlink()
    seg.unlink()
    assert not seg.path.exists()
    seg.close()
    seg.close()
    view[:] = [7, 8, 9]  # mapping outlives the name and close() while views exist
    assert view.tolist() == [7, 8, 9]
    with pytest.raises(ClosedError):
        _ = seg.buffer
    with pytest.raises(ClosedError):
        seg.view(0, 1, writable=False)


def test_mlock_pins_a_small_segment(run_id: str) -> None:
    seg = Segment.create(name_of(run_id), 4 * PAGE)
    try:
        assert seg.mlock() is True
    finally:
        seg.unlink()
        seg.close()


class _RefusingLibc:
    def __init__(self, err: int) -> None:
        self.err = err

    def mlock(self, address: int, size: int) -> int:
        ctypes.set_errno(self.err)
        return -1


@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOMEM])
def test_mlock_reports_false_when_the_kernel_refuses(
    run_id: str, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    seg = Segment.create(name_of(run_id), PAGE, prefault=False)
    monkeypatch.setattr(seg_mod, "_libc", lambda: _RefusingLibc(err))
    try:
        assert seg.mlock() is False
    finally:
        seg.unlink()
        seg.close()


def test_shm_dir_can_be_pointed_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = seg_mod.shm_dir() / ("pftest-" + secrets.token_hex(5))  # tmpfs, the session's
    folder.mkdir()
    try:
        monkeypatch.setenv(seg_mod.SHM_DIR_ENV, str(folder))
        seg = Segment.create(segment_name("r", "n", "o", "ab"), PAGE, prefault=False)
        assert seg.path.parent == folder
        seg.unlink()
        seg.close()
    finally:
        folder.rmdir()
