"""The baselines ``pinflow bench`` compares against, as plain zenoh programs.

``python -m pinflow.tools.baselines producer|consumer --mode bytes|shm ...``

- ``bytes``: the frame travels inside the zenoh message, zenoh's own defaults otherwise
  (zenoh may move large payloads through its own shared memory on the way).
- ``shm``: the producer writes each frame into zenoh shared memory (``ShmProvider``); the
  consumer copies it into its own reused, pinned staging buffer and from there to the
  device: caller-side pinning, the workaround dora's maintainers asked to compare against.

zenoh-python cannot expose zenoh shared memory as a buffer, so both sides pay copies that
pinflow avoids; that is the point of the comparison. Sessions use only a unix socket.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import zenoh

from pinflow.nodes import framing
from pinflow.transport.session import loopback_config

KEY = "pinflow-bench/frames"


def _session(args: argparse.Namespace, *, listen: bool) -> zenoh.Session:
    endpoint = [f"unixsock-stream/{args.socket}"]
    config = loopback_config(listen=endpoint if listen else [],
                             connect=[] if listen else endpoint,
                             zenoh_shm=args.mode == "shm" or None)
    return zenoh.open(config)


def producer(args: argparse.Namespace) -> None:
    height, width = args.height, args.width
    nbytes = height * width * 4
    frame = np.empty((height, width, 4), dtype=np.uint8)
    background = framing.make_background(height, width)
    session = _session(args, listen=True)
    publisher = session.declare_publisher(KEY, congestion_control=zenoh.CongestionControl.BLOCK)
    provider = None
    if args.mode == "shm":
        from zenoh import shm

        provider = shm.ShmProvider.default_backend(nbytes * 4)
    time.sleep(args.warmup)  # let the consumer connect: zenoh drops puts nobody listens to
    period = 1.0 / args.fps if args.fps > 0 else 0.0
    start = time.monotonic()
    for index in range(args.frames):
        if period:
            time.sleep(max(0.0, start + index * period - time.monotonic()))
        capture_ns = time.time_ns()
        framing.render(index, frame, background)
        header = json.dumps({"frame": index, "capture_ns": capture_ns}).encode()
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
    """Receives frames and makes each usable on the device, like latency_probe does."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.shape = (args.height, args.width, 4)
        self.cuda = args.device.startswith("cuda")
        self.out = open(args.out, "w", encoding="utf-8")  # noqa: SIM115 (closed in run)
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
        h2d_ns = None
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
            device = "cpu"
        usable_ns = time.time_ns()
        self.out.write(json.dumps({
            "frame": header["frame"], "capture_ns": header["capture_ns"],
            "usable_ns": usable_ns, "h2d_ns": h2d_ns, "device": device,
            "pinned": self.staging is not None and self.cuda,
        }) + "\n")

    def run(self) -> None:
        session = _session(self.args, listen=False)
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
    parser.add_argument("--mode", choices=["bytes", "shm"], required=True)
    parser.add_argument("--socket", type=Path, required=True, help="unix socket path")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=30.0, help="0 = as fast as possible")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (consumer)")
    parser.add_argument("--out", type=Path, help="JSON-lines latency records (consumer)")
    parser.add_argument("--warmup", type=float, default=1.0, help="producer wait (s)")
    parser.add_argument("--timeout", type=float, default=120.0, help="consumer limit (s)")
    args = parser.parse_args(argv)
    if args.role == "producer":
        producer(args)
    else:
        _Consumer(args).run()


if __name__ == "__main__":
    main()
