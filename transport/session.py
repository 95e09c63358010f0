"""The one place a ``zenoh.Config`` is built (:func:`peer_config`), so that every session
pinflow opens is a peer with multicast scouting off on endpoints someone chose.

A run's sessions listen and connect only on unix-domain sockets inside the run's private
socket folder (:func:`loopback_config`); the wire between hosts (``transport/wire.py``)
builds its config here too, on the endpoints given on the command line. Peers learn
each other through gossip over those links and then talk directly, node to node; the
launcher's session is only a rendezvous point and never relays payloads.

``PINFLOW_LEASE_MS`` (milliseconds, default zenoh's 10000) is the one knob for how long a
silent peer keeps its links: after that, its liveliness tokens vanish for everyone else.
Every process of a run reads it (the environment is inherited), so they agree on it; tests
lower it to make a pause outlast the lease quickly.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path

import zenoh

from pinflow.errors import LaunchError

LAUNCHER_SOCKET = "launcher.sock"
LEASE_ENV = "PINFLOW_LEASE_MS"


def lease_ms() -> int | None:
    """The zenoh lease in force, or None for zenoh's default (10 s)."""
    raw = os.environ.get(LEASE_ENV)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(
            f"{LEASE_ENV} must be a whole number of milliseconds, got {raw!r}") from None
    if value < 100:
        raise ValueError(f"{LEASE_ENV} must be at least 100 ms, got {value}")
    return value


def runs_dir() -> Path:
    """Where runs keep their sockets: ``<tmp>/pinflow-<uid>/<run id>/``, private to the
    user, so ``pinflow top`` can find the runs of this machine and nobody else can join."""
    return Path(tempfile.gettempdir()) / f"pinflow-{os.getuid()}"


def make_run_dir(run_id: str) -> Path:
    """Create the run's socket folder (0700 all the way).

    ``LaunchError`` with the fix when ``<tmp>/pinflow-<uid>`` cannot be ours: not a folder,
    a symlink, or another user's (anyone may create it first in a shared /tmp).
    """
    parent = runs_dir()
    check_endpoint_path(parent)
    fix = "remove it, or point TMPDIR at a private folder"
    try:
        with contextlib.suppress(FileExistsError):  # judged below, whatever it is
            parent.mkdir(mode=0o700)
        st = parent.lstat()
    except OSError as exc:
        raise LaunchError(f"cannot create the runs' socket folder {parent}: {exc.strerror}; "
                          f"{fix}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise LaunchError(f"{parent} is not a folder (the runs' sockets go there); {fix}")
    if st.st_uid != os.getuid():
        raise LaunchError(f"{parent} belongs to uid {st.st_uid}, not to you (uid "
                          f"{os.getuid()}); refusing to put the run's sockets there; {fix}")
    if stat.S_IMODE(st.st_mode) & 0o077:
        parent.chmod(0o700)
    path = parent / run_id
    try:
        path.mkdir(mode=0o700)
    except OSError as exc:
        raise LaunchError(f"cannot create the run's socket folder {path}: {exc.strerror}"
                          ) from None
    return path


ENDPOINT_SEPARATORS = "?#"
"""zenoh reads an endpoint as ``proto/address?metadata#config``: a socket path holding one
of these is cut there, and the session fails with an unrelated-looking lock error."""


def check_endpoint_path(path: Path | str) -> None:
    """``LaunchError`` naming the fix when zenoh could not use a socket under ``path``."""
    bad = sorted({c for c in str(path) if c in ENDPOINT_SEPARATORS})
    if bad:
        shown = " and ".join(repr(c) for c in bad)
        raise LaunchError(
            f"the runs' socket folder {path} holds {shown}, which zenoh reads as an endpoint "
            f"separator; point TMPDIR at a folder whose path has no '?' or '#'")


def unix_endpoint(path: Path | str) -> str:
    """zenoh endpoint string for a unix stream socket at ``path``."""
    check_endpoint_path(path)
    return f"unixsock-stream/{path}"


def peer_config(*, listen: list[str], connect: list[str], zenoh_shm: bool | None,
                lease: int | None) -> zenoh.Config:
    """A zenoh peer that uses exactly the given endpoints and nothing else.

    Multicast scouting is off (it would announce the process on 224.0.0.224), so it meets
    only the peers it connects to or that connect to it. ``zenoh_shm``: zenoh's own shared
    memory on or off (``None`` keeps zenoh's default); ``lease``: the link lease in ms
    (``None``: zenoh's default). Callers check the endpoints first.
    """
    config = zenoh.Config()
    config.insert_json5("mode", '"peer"')
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("listen/endpoints", json.dumps(listen))
    config.insert_json5("connect/endpoints", json.dumps(connect))
    if zenoh_shm is not None:
        config.insert_json5("transport/shared_memory/enabled", json.dumps(zenoh_shm))
    if lease is not None:
        config.insert_json5("transport/link/tx/lease", str(lease))
    return config


def loopback_config(*, listen: list[str], connect: list[str],
                    zenoh_shm: bool | None = False) -> zenoh.Config:
    """A peer config that only uses the given local endpoints, with the run's lease.

    zenoh's own shared memory is off by default because pinflow's slot pools carry large
    payloads; small control messages do not need it and it leaves files of its own in
    /dev/shm. ``zenoh_shm=None`` keeps zenoh's default for it, ``True`` forces it on (the
    benchmark's baselines).
    """
    for endpoint in [*listen, *connect]:
        if not endpoint.startswith(("unixsock-stream/", "tcp/127.0.0.1:", "tcp/[::1]:")):
            raise ValueError(f"refusing non-loopback zenoh endpoint {endpoint!r}")
    return peer_config(listen=listen, connect=connect, zenoh_shm=zenoh_shm, lease=lease_ms())


def open_session(*, listen: list[str], connect: list[str]) -> zenoh.Session:
    """Open a loopback-only peer session (see :func:`loopback_config`)."""
    return zenoh.open(loopback_config(listen=listen, connect=connect))
