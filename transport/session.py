"""The one place a ``zenoh.Config`` is built, so no session can ever leave the machine.

Every pinflow session is a zenoh *peer* with multicast scouting off that listens and
connects only on unix-domain sockets inside the run's private socket folder. Peers learn
each other through gossip over those links and then talk directly, node to node; the
launcher's session is only a rendezvous point and never relays payloads.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import zenoh

LAUNCHER_SOCKET = "launcher.sock"


def runs_dir() -> Path:
    """Where runs keep their sockets: ``<tmp>/pinflow-<uid>/<run id>/``, private to the
    user, so ``pinflow top`` can find the runs of this machine and nobody else can join."""
    return Path(tempfile.gettempdir()) / f"pinflow-{os.getuid()}"


def make_run_dir(run_id: str) -> Path:
    """Create the run's socket folder (0700 all the way)."""
    parent = runs_dir()
    parent.mkdir(mode=0o700, exist_ok=True)
    if parent.stat().st_uid != os.getuid():
        raise PermissionError(f"{parent} belongs to another user; refusing to use it")
    path = parent / run_id
    path.mkdir(mode=0o700)
    return path


def unix_endpoint(path: Path | str) -> str:
    """zenoh endpoint string for a unix stream socket at ``path``."""
    return f"unixsock-stream/{path}"


def loopback_config(*, listen: list[str], connect: list[str],
                    zenoh_shm: bool | None = False) -> zenoh.Config:
    """A peer config that only uses the given local endpoints.

    Multicast scouting is off (it would send to 224.0.0.224). zenoh's own shared memory is
    off by default because pinflow's slot pools carry large payloads; small control
    messages do not need it and it leaves files of its own in /dev/shm. ``zenoh_shm=None``
    keeps zenoh's default for it, ``True`` forces it on (the benchmark's baselines).
    """
    for endpoint in [*listen, *connect]:
        if not endpoint.startswith(("unixsock-stream/", "tcp/127.0.0.1:", "tcp/[::1]:")):
            raise ValueError(f"refusing non-loopback zenoh endpoint {endpoint!r}")
    config = zenoh.Config()
    config.insert_json5("mode", '"peer"')
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("listen/endpoints", json.dumps(listen))
    config.insert_json5("connect/endpoints", json.dumps(connect))
    if zenoh_shm is not None:
        config.insert_json5("transport/shared_memory/enabled", json.dumps(zenoh_shm))
    return config


def open_session(*, listen: list[str], connect: list[str]) -> zenoh.Session:
    """Open a loopback-only peer session (see :func:`loopback_config`)."""
    return zenoh.open(loopback_config(listen=listen, connect=connect))
