"""The baselines ``pinflow bench`` compares against: a plain copy, and plain zenoh programs.

``python -m pinflow.tools.baselines producer|consumer --mode memcpy|bytes|shm|tcp|iox2|bare``

- ``memcpy`` (producer only): one copy of the frame into a buffer of the same process, then
  one byte read per page: the floor every transport is measured against.
- ``bytes``: the frame travels inside the zenoh message, zenoh's own defaults otherwise
  (zenoh may move large payloads through its own shared memory on the way).
- ``shm``: the producer writes each frame into zenoh shared memory (``ShmProvider``); the
  consumer copies it into its own reused, pinned staging buffer and from there to the
  device: caller-side pinning, the workaround dora's maintainers asked to compare against.
- ``tcp``: ``bytes`` over a TCP endpoint with the config of pinflow's wire between hosts
  (:func:`pinflow.transport.wire.wire_config`): the consumer listens, the producer connects.
  The bench runs it between the cross-host arm's network namespaces: the reference for what
  pinflow's gateways add to a frame that crosses hosts.
- ``iox2``: iceoryx2's publish-subscribe, a loaned slice with one copy in
  (:mod:`pinflow.tools.bench.iox2`; needs ``pip install 'pinflow[bench]'``).
- ``bare``: two Python processes, a shared-memory ring and a unix socket, no checks
  (:mod:`pinflow.tools.bench.bare`): a minimal Python pair, for what pinflow adds.

zenoh-python cannot expose zenoh shared memory as a buffer, so both sides pay copies that
pinflow avoids; that is the point of the comparison. ``bytes`` and ``shm`` use only a unix
socket. Every mode times what :mod:`pinflow.tools.bench.frames` says: from just before a
ready frame is handed over until the consumer read one byte per page of it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import zenoh

from pinflow.nodes.frame_log import FrameLog
from pinflow.tools.bench import frames
from pinflow.transport.session import loopback_config
from pinflow.transport.wire import wire_config

KEY = "pinflow-bench/frames"
MODES = ("memcpy", "bytes", "shm", "tcp", "iox2", "bare")


def _session(args: argparse.Namespace, *, listen: bool) -> zenoh.Session:
    if args.mode == "tcp":
        endpoint = [args.endpoint]
        return zenoh.open(wire_config(listen=endpoint if listen else [],
                                      connect=[] if listen else endpoint))
    endpoint = [f"unixsock-stream/{args.socket}"]
    config = loopback_config(listen=endpoint if listen else [],
                             connect=[] if listen else endpoint,
                             zenoh_shm=args.mode == "shm" or None)
    return zenoh.open(config)


class _Pace:
    """Frame ``k`` is due at ``start + k / fps``; fps 0 means as fast as it goes."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.start = time.monotonic()

    def wait(self, index: int) -> None:
        if self.period:
            time.sleep(max(0.0, self.start + index * self.period - time.monotonic()))


def memcpy(args: argparse.Namespace) -> None:
    """The floor: one copy into this process's own (already touched) buffer, then the read
    every consumer makes."""
    sources = frames.prepared(frames.shape_for(args.frame_bytes))
    target = np.zeros_like(sources[0])
    pace = _Pace(args.fps)
    with FrameLog(args.out) as out:
        for index in range(args.frames):
            pace.wait(index)
            sent_ns = time.time_ns()
            np.copyto(target, sources[index % len(sources)])
            _, _, read_ns = frames.make_usable(target, "cpu")
            out.log(index, sent_ns, read_ns=read_ns)


def producer(args: argparse.Namespace) -> None:
    sources = frames.prepared(frames.shape_for(args.frame_bytes))
    nbytes = sources[0].nbytes
    session = _session(args, listen=args.mode != "tcp")
    publisher = session.declare_publisher(KEY, congestion_control=zenoh.CongestionControl.BLOCK)
    provider = None
    if args.mode == "shm":
        from zenoh import shm

        provider = shm.ShmProvider.default_backend(nbytes * 4)
    # zenoh drops puts that no subscriber matches: wait until the consumer's is known.
    deadline = time.monotonic() + args.warmup
    while not publisher.matching_status.matching and time.monotonic() < deadline:
        time.sleep(0.01)
    pace = _Pace(args.fps)
    for index in range(args.frames):
        pace.wait(index)
        sent_ns = time.time_ns()
        frame = sources[index % len(sources)]
        header = json.dumps({"frame": index, "sent_ns": sent_ns}).encode()
        if provider is not None:
            from zenoh import shm

            buffer = provider.alloc(nbytes, shm.BlockOn(shm.GarbageCollect()))
            buffer[0:nbytes] = frame.tobytes()  # no buffer protocol: bytes, then a copy
            publisher.put(buffer, attachment=header)
        else:
            publisher.put(frame.tobytes(), attachment=header)
    publisher.put(b"", attachment=b'{"end": true}')
    time.sleep(0.5)
    session.close()


class _Consumer:
    """Receives frames and makes each usable on the device, like the bench's probe does."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.shape = frames.shape_for(args.frame_bytes)
        self.cuda = args.device.startswith("cuda")
        self.out = FrameLog(args.out)  # closed in run
        self.done = False
        self.staging: Any = None
        if self.cuda:
            import torch

            self.torch = torch
            self.device = torch.device(args.device)
            if args.mode == "shm":  # allocated and pinned once, reused for every frame
                self.staging = torch.empty(self.shape, dtype=torch.uint8, pin_memory=True)
        elif args.mode == "shm":
            self.staging = np.empty(self.shape, dtype=np.uint8)

    def on_sample(self, sample: zenoh.Sample) -> None:
        header = json.loads(sample.attachment.to_bytes())
        if header.get("end"):
            self.done = True
            return
        host = np.frombuffer(sample.payload.to_bytes(), dtype=np.uint8).reshape(self.shape)
        h2d_ns = read_ns = None
        if self.cuda:
            start = time.perf_counter_ns()
            if self.staging is not None:
                self.staging.numpy()[...] = host
                source = self.staging
            else:
                source = self.torch.from_numpy(host)
            tensor = source.to(self.device, non_blocking=True)
            self.torch.cuda.current_stream(self.device).synchronize()
            h2d_ns = time.perf_counter_ns() - start
            device = str(tensor.device)
        else:
            if self.staging is not None:
                np.copyto(self.staging, host)
                host = self.staging
            _, device, read_ns = frames.make_usable(host, "cpu")
        self.out.log(header["frame"], header["sent_ns"], h2d_ns, device,
                     self.staging is not None and self.cuda, read_ns=read_ns)

    def run(self) -> None:
        session = _session(self.args, listen=self.args.mode == "tcp")
        subscriber = session.declare_subscriber(KEY, self.on_sample)
        deadline = time.monotonic() + self.args.timeout
        while not self.done and time.monotonic() < deadline:
            time.sleep(0.02)
        subscriber.undeclare()
        session.close()
        self.out.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["producer", "consumer"])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--socket", type=Path, help="unix socket path (bytes, shm, bare)")
    parser.add_argument("--endpoint", help="tcp/ADDR:PORT the consumer listens on (tcp)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=30.0, help="0 = as fast as possible")
    parser.add_argument("--frame-bytes", type=int, default=frames.FRAME_BYTES,
                        help="frame size: 1080p RGBA by default, else a multiple of 4 KiB")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (consumer)")
    parser.add_argument("--out", type=Path, help="JSON-lines latency records (consumer, memcpy)")
    parser.add_argument("--iox2-root", type=Path, help="iceoryx2's root folder for this run (iox2)")
    parser.add_argument("--iox2-prefix", help="iceoryx2's /dev/shm name prefix for this run (iox2)")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="most the producer waits for the consumer's subscriber (s)")
    parser.add_argument("--timeout", type=float, default=120.0, help="consumer limit (s)")
    args = parser.parse_args(argv)
    if args.mode == "tcp" and not args.endpoint:
        parser.error("--mode tcp needs --endpoint tcp/ADDR:PORT")
    if args.mode in ("bytes", "shm", "bare") and args.socket is None:
        parser.error(f"--mode {args.mode} needs --socket PATH")
    if args.role == "consumer":
        frames.prepare_device(args.device)  # before it subscribes: the producer waits for it
    if args.mode == "iox2":
        if args.iox2_root is None or not args.iox2_prefix:
            parser.error("--mode iox2 needs --iox2-root DIR and --iox2-prefix NAME")
        if args.role == "consumer" and args.out is None:
            parser.error("the consumer needs --out")
        from pinflow.tools.bench import iox2

        if args.role == "producer":
            iox2.producer(args, _Pace)
        else:
            iox2.consumer(args)
    elif args.mode == "bare":
        from pinflow.tools.bench import bare

        if args.role == "producer":
            bare.producer(args, _Pace)
        elif args.out is None:
            parser.error("the consumer needs --out")
        else:
            bare.consumer(args)
    elif args.mode == "memcpy":
        if args.role != "producer" or args.out is None:
            parser.error("--mode memcpy runs as the producer alone and needs --out")
        memcpy(args)
    elif args.role == "producer":
        producer(args)
    else:
        if args.out is None:
            parser.error("the consumer needs --out")
        _Consumer(args).run()


if __name__ == "__main__":
    main()
