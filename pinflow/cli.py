"""The ``pinflow`` command: each subcommand parses its arguments and calls one function.

User errors print ``pinflow: error: ...`` and exit 2 (spec) or 1 (anything else), never a
traceback; ``--debug`` shows the traceback for bug reports.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pinflow import spec as spec_module
from pinflow.errors import PinflowError, SpecError
from pinflow.tools.bench import arms as bench_arms


def _load(path: str, *, notes: bool = True) -> spec_module.DataflowSpec:
    """The dataflow at ``path``; keys it accepts but ignores are noted on stderr."""
    dataflow = spec_module.load(path)
    for note in dataflow.notes if notes else ():
        print(f"pinflow: note: {note}", file=sys.stderr)
    return dataflow


def _build_hint(path: str) -> str:
    return f": run `pinflow build {path}` first, or `pinflow run --build {path}`"


def _cmd_validate(args: argparse.Namespace) -> int:
    dataflow = _load(args.file)
    for text in dataflow.unbuilt:
        print(f"pinflow: note: {text}{_build_hint(args.file)}", file=sys.stderr)
    print(f"{args.file}: ok ({len(dataflow.nodes)} node(s))")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from pinflow.tools import build

    build.build(_load(args.file))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pinflow.runtime import launcher

    dataflow = _load(args.file)
    if args.build:
        from pinflow.tools import build

        build.build(dataflow)
        dataflow = _load(args.file, notes=False)  # what the build made is there now
        if dataflow.unbuilt:
            raise SpecError([f"{text}, but `pinflow build` did not make it"
                             for text in dataflow.unbuilt])
    elif dataflow.unbuilt:
        raise SpecError([f"{text}{_build_hint(args.file)}" for text in dataflow.unbuilt])
    result = launcher.run(dataflow, stop_after=args.stop_after, grace_s=args.grace,
                          log_dir=args.log_dir, wire_listen=args.listen,
                          wire_connect=args.connect, daemon_timeout_s=args.daemon_timeout)
    summary = result.summary()
    print(f"pinflow | {summary}" if result.ok else f"pinflow: error: {summary}",
          file=sys.stdout if result.ok else sys.stderr, flush=True)
    return 0 if result.ok else 1


def _cmd_daemon(args: argparse.Namespace) -> int:
    from pinflow.runtime import daemon

    return daemon.serve(args.machine, listen=args.listen, connect=args.connect,
                        log_dir=args.log_dir)


def _cmd_clean(args: argparse.Namespace) -> int:
    from pinflow.transport.cleanup import sweep_dead_runs

    sweep = sweep_dead_runs()
    for path in sweep.removed:
        print(f"removed {path}")
    for why in sweep.kept:
        print(f"left alone {why}")
    print(f"{len(sweep.removed)} leftover(s) of dead runs removed; live runs untouched"
          + (f"; {len(sweep.kept)} still in use left alone" if sweep.kept else ""))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    import json

    from pinflow.tools import doctor

    if args.standin and not args.gpu_check:
        raise PinflowError("--standin goes with --gpu-check")
    if args.gpu_check:
        return doctor.gpu_check(standin=args.standin)
    report = doctor.examine()
    print(json.dumps(doctor.as_dict(report), indent=2) if args.json else doctor.render(report))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from pinflow.tools.bench import plot, report, soak, table

    if args.plot:
        plot.require()
    if args.duration:
        if args.fps is not None:
            raise PinflowError("--fps sets the rate of the arms' runs; the soak (--duration) "
                               "runs the 1080p30 flow at 30 Hz")
        result = soak.soak(args.duration)
        print(soak.render_soak(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0 if soak.passed(result) else 1
    frames = args.frames or (90 if args.quick else 300)
    max_frames = 0 if args.no_max_fps else (60 if args.quick else 150)
    arms, skipped = (args.arms, {}) if args.arms else bench_arms.default_arms()
    bench_arms.require_packages(arms)
    measured = report.run(frames, max_frames, arms, skipped, progress=_progress,
                          sizes=args.sizes, fps=args.fps or report.FPS)
    print(table.render(measured))
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2))
    if args.plot:
        plot.plot(measured, args.plot)
    return 1 if report.failed(measured) else 0


def _progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def _cmd_top(args: argparse.Namespace) -> int:
    from pinflow.tools import top

    return top.top(once=args.once)


def _cmd_stats(args: argparse.Namespace) -> int:

    from pinflow.tools import top

    if args.wait <= 0:
        raise PinflowError("--wait must be more than 0 seconds (nodes report once a second)")
    runs = top.live_runs()
    if not runs:
        raise PinflowError(top.NO_RUNS)
    if args.run is not None:
        if args.run not in runs:
            raise PinflowError(f"run {args.run!r} is not running on this machine; running: "
                               f"{', '.join(runs)}")
        runs = [args.run]
    snapshot = top.collect(runs, args.wait)
    if not any(run.nodes for run in snapshot.runs.values()):
        raise PinflowError(f"no statistics arrived from run(s) {', '.join(runs)} within "
                           f"{args.wait:g} s; nodes report once a second once the run started")
    print(top.to_json(snapshot) if args.json else top.render(snapshot))
    return 0


def _wire_options(parser: argparse.ArgumentParser, peer: str) -> None:
    parser.add_argument("--listen", action="append", default=[], metavar="ENDPOINT",
                        help=f"wire endpoint to accept {peer} on, e.g. tcp/192.168.1.10:7447 "
                             "(repeatable)")
    parser.add_argument("--connect", action="append", default=[], metavar="ENDPOINT",
                        help=f"wire endpoint of {peer} to connect to (repeatable)")


def _frame_sizes(text: str) -> list[int]:
    """An argparse type: ``pinflow bench --sizes``."""
    from pinflow.tools.bench.frames import parse_sizes

    try:
        return parse_sizes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _at_least(low: float, kind: type) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` no smaller than ``low``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {text}")
        return value

    return parse


def _between(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number from ``low`` to ``high``."""
    at_least = _at_least(low, float)

    def parse(text: str) -> float:
        value: float = at_least(text)
        if not value <= high:  # (also refuses nan)
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pinflow", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a dataflow YAML and report every problem")
    p.add_argument("file", type=Path)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("build", help="run the `build:` steps of a dataflow's nodes (like "
                                     "`dora build`)")
    p.add_argument("file", type=Path)
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("run", help="run a dataflow until its nodes exit or it is stopped")
    p.add_argument("file", type=Path)
    p.add_argument("--build", action="store_true",
                   help="run the nodes' `build:` steps first (as `pinflow build FILE`)")
    p.add_argument("--stop-after", type=float, metavar="SECONDS",
                   help="send STOP to every node after this many seconds")
    p.add_argument("--grace", type=float, default=5.0, metavar="SECONDS",
                   help="time nodes get to exit after STOP before SIGTERM (default 5)")
    p.add_argument("--log-dir", type=Path, metavar="DIR",
                   help="where per-node logs go, in a folder per run (default ./out)")
    _wire_options(p, "daemons")
    p.add_argument("--daemon-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the daemons of the dataflow's machines "
                        "(default 10)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("daemon", help="run, on this host, the nodes that name it with "
                                      "`machine:` (for `pinflow run` on another host)")
    p.add_argument("--machine", required=True, metavar="NAME",
                   help="this host's name, as nodes write it in `machine:`")
    p.add_argument("--log-dir", type=Path, metavar="DIR",
                   help="where per-node logs go, in a folder per run (default ./out)")
    _wire_options(p, "the launcher")
    p.set_defaults(func=_cmd_daemon)

    p = sub.add_parser("bench", help="1080p RGBA @ 30 Hz over pinflow and zenoh baselines")
    p.add_argument("--quick", action="store_true", help="90 frames per arm (under 2 minutes)")
    p.add_argument("--frames", type=_at_least(1, int), metavar="N",
                   help="frames per arm at 30 Hz (default 300)")
    p.add_argument("--fps", type=_between(1.0, 10_000.0), metavar="HZ",
                   help="the rate of each arm's paced run (default 30): e.g. 90 to see "
                        "whether a path sustains it with nothing dropped, which the "
                        "unthrottled max-fps run cannot tell when the producer outruns it")
    p.add_argument("--arms", nargs="+", choices=bench_arms.NAMES, metavar="ARM",
                   help=f"which transports, of {' '.join(bench_arms.NAMES)} (default: all; "
                        f"cross only where network namespaces can be created, i.e. as root "
                        f"with iproute2; iox2 only with pip install 'pinflow[bench]')")
    p.add_argument("--sizes", type=_frame_sizes, metavar="SIZES",
                   help="then measure the floor, copy and inplace arms at each of these frame "
                        "sizes, e.g. 4KiB,64KiB,1MiB,8MiB,32MiB (multiples of 4 KiB): p50 and "
                        "max fps per size")
    p.add_argument("--no-max-fps", action="store_true",
                   help="skip the unthrottled run that measures the max sustainable fps")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON")
    p.add_argument("--plot", type=Path, metavar="PATH", help="latency CDF as PNG "
                   "(pip install 'pinflow[plot]')")
    p.add_argument("--duration", type=_at_least(1.0, float), metavar="SECONDS",
                   help="soak mode: run the pinned flow this long (at least 1); RSS and "
                        "pinned bytes must stay flat and every frame be delivered or counted "
                        "as dropped")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("top", help="live table of every running dataflow's nodes: queues, "
                                   "rates, latency, pools, memory, CPU")
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.set_defaults(func=_cmd_top)

    p = sub.add_parser("stats", help="one snapshot of the running dataflows' node statistics")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--wait", type=float, default=2.5, metavar="SECONDS",
                   help="how long to collect reports (default 2.5; nodes report once a second)")
    p.add_argument("--run", metavar="RUN_ID", help="only this run (default: every live run)")
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser("doctor", help="what CUDA, memory limits and /dev/shm offer the "
                                      "pinned path here, and which path it takes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--gpu-check", action="store_true",
                   help="run the GPU self-test (registration, device contents under load, no "
                        "reuse hazard, bandwidth, latency, leaks); exit 0 only if all hold")
    p.add_argument("--standin", action="store_true",
                   help="with --gpu-check: run the same checks on the CPU stand-in of CUDA")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("clean", help="remove shared memory left by runs that are no longer alive")
    p.set_defaults(func=_cmd_clean)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SpecError as exc:
        for line in exc.messages:
            print(f"pinflow: error: {line}", file=sys.stderr)
        return 2
    except PinflowError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"pinflow: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
