"""The iceoryx2 baseline: a plain iceoryx2 0.10 publish-subscribe program, the reference for
pinflow's one-copy arms (issue 16: "max fps with one copy >= iceoryx2's in the same run").

The producer loans a u8 slice of the frame's size (``loan_slice_uninit``), copies the frame
in (one copy, as pinflow's ``copy`` arm does), puts the frame index and ``sent_ns`` in the
sample's user header, sends it and notifies an iceoryx2 event service. The consumer blocks
on that event's listener (no spinning), then takes every waiting sample, holds a view of its
payload and reads one byte per page, records, and releases the sample. Nothing is dropped:
safe overflow is off and the publisher retries until the subscriber's buffer takes a sample.

iceoryx2 keeps its files under a root folder and in /dev/shm under a name prefix: the bench
gives each run its own of both (``--iox2-root``, ``--iox2-prefix``), and :func:`remove_files`
removes what a run left (iceoryx2 keeps a per-prefix management file after a clean exit).
iceoryx2 is optional (``pip install 'pinflow[bench]'``); only this module imports it.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from pinflow.nodes import framing
from pinflow.nodes.frame_log import FrameLog
from pinflow.tools.bench import frames

SERVICE = "pinflow-bench/frames"
INSTALL = "iceoryx2 is not installed: pip install 'pinflow[bench]'"
SHM_DIR = Path("/dev/shm")
ROOT_MAX = 56
"""The longest root folder path :func:`run_root` uses."""
BUFFER = 4
"""Samples the subscriber's queue holds before the publisher waits."""
END = -1
"""The frame index of the closing sample."""


class Header(ctypes.Structure):
    """The sample's user header: what the other arms carry as metadata."""

    _fields_ = [("frame", ctypes.c_int64), ("sent_ns", ctypes.c_int64)]


def unavailable() -> str | None:
    """Why the arm cannot run here (iceoryx2 not importable), or None."""
    return None if importlib.util.find_spec("iceoryx2") is not None else INSTALL


def run_root(work: Path, prefix: str) -> Path:
    """A root folder for one run: in ``work`` if its path is short enough, else in /tmp. The
    event service's unix socket lies in it under a ~45-character name, and a socket's path
    must fit 107 bytes."""
    root = work / prefix
    return root if len(str(root)) <= ROOT_MAX else Path("/tmp") / prefix


def remove_files(root: Path, prefix: str) -> list[Path]:
    """Remove a run's iceoryx2 files: its root folder and the /dev/shm files of its unique
    prefix (nobody else's). Returns what was removed from /dev/shm."""
    shutil.rmtree(root, ignore_errors=True)
    removed = sorted(SHM_DIR.glob(f"{prefix}*"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _open(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """(iceoryx2, node, frame service, event service), in this run's root and prefix."""
    import iceoryx2 as iox2

    iox2.set_log_level(iox2.LogLevel.Warn)
    config = iox2.config.default()
    config.global_cfg.root_path = iox2.Path.new(f"{args.iox2_root}/")
    config.global_cfg.prefix = iox2.FileName.new(args.iox2_prefix)
    node = (iox2.NodeBuilder.new().config(config)
            .signal_handling_mode(iox2.SignalHandlingMode.Disabled)  # SIGTERM still ends us
            .create(iox2.ServiceType.Ipc))
    name = iox2.ServiceName.new(SERVICE)
    service = (node.service_builder(name).publish_subscribe(iox2.Slice[ctypes.c_uint8])
               .user_header(Header).subscriber_max_buffer_size(BUFFER).history_size(0)
               .enable_safe_overflow(False).open_or_create())
    event = node.service_builder(name).event().open_or_create()
    return iox2, node, service, event


def _view(ptr: int, nbytes: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))


def producer(args: argparse.Namespace, pace: Any) -> None:
    """``pace``: the baselines' pacer (``wait(index)``)."""
    sources = frames.prepared(frames.shape_for(args.frame_bytes))
    nbytes = sources[0].nbytes
    iox2, _node, service, event = _open(args)
    publisher = (service.publisher_builder().initial_max_slice_len(nbytes)
                 .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
                 .create())
    notifier = event.notifier_builder().create()
    # a sample sent before the subscriber is connected reaches nobody: wait for it
    deadline = time.monotonic() + args.warmup
    while service.dynamic_config.number_of_subscribers < 1:
        if time.monotonic() > deadline:
            raise SystemExit(f"no iceoryx2 subscriber within {args.warmup} s")
        time.sleep(0.01)
    publisher.update_connections()
    pace = pace(args.fps)
    for index in range(args.frames):
        pace.wait(index)
        sent_ns = time.time_ns()
        sample = publisher.loan_slice_uninit(nbytes)
        np.copyto(_view(sample.payload_ptr, nbytes).reshape(sources[0].shape),
                  sources[index % len(sources)])
        _send(sample, notifier, index, sent_ns)
    _send(publisher.loan_slice_uninit(1), notifier, END, 0)
    # the consumer takes the closing sample before this publisher goes
    deadline = time.monotonic() + 10
    while service.dynamic_config.number_of_subscribers and time.monotonic() < deadline:
        time.sleep(0.01)


def _send(sample: Any, notifier: Any, index: int, sent_ns: int) -> None:
    header = sample.user_header().contents
    header.frame, header.sent_ns = index, sent_ns
    sample.assume_init().send()
    notifier.notify()


def consumer(args: argparse.Namespace) -> None:
    """Takes every frame, makes it usable and logs when (``FrameLog``, as the probe)."""
    iox2, _node, service, event = _open(args)
    listener = event.listener_builder().create()  # before the subscriber: no wake-up missed
    subscriber = service.subscriber_builder().buffer_size(BUFFER).create()
    shape = frames.shape_for(args.frame_bytes)
    failures, received, done = 0, 0, False
    deadline = time.monotonic() + args.timeout
    with FrameLog(args.out) as out:
        while not done and time.monotonic() < deadline:
            listener.timed_wait(iox2.Duration.from_millis(200))
            while (sample := subscriber.receive()) is not None:
                header = sample.user_header().contents
                if header.frame == END:
                    sample.delete()
                    done = True
                    break
                host = _view(sample.payload_ptr, sample.header.number_of_elements).reshape(shape)
                h2d_ns, device, read_ns = frames.make_usable(host, args.device)
                out.log(header.frame, header.sent_ns, h2d_ns, device, read_ns=read_ns)
                if received % frames.VERIFY_EVERY == 0:
                    failures += not framing.verify(host)[1]
                received += 1
                sample.delete()
    subscriber.delete()
    if not done:
        raise SystemExit(f"no closing sample within {args.timeout} s ({received} frames)")
    if failures:
        raise SystemExit(f"{failures} frame(s) failed the integrity check")
