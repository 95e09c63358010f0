"""Messages between a launcher and the daemons of a multi-host run: the start request and its
answer, how each node ended, and the output lines a daemon relays.

The sender is always a pinflow launcher or daemon, so unknown fields are refused. A receiver
logs and drops what does not decode (``DescriptorError`` from the codecs below); nothing a
peer sends raises in a zenoh callback.
"""

from __future__ import annotations

import msgspec

from pinflow.protocol.strict import StrictCodec


class StartRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Launcher -> daemon: run your share of this dataflow (validated again there)."""

    run: str
    """The run id (the daemon's share runs as ``<run>-<machine>``)."""
    path: str
    """The YAML's path on the launcher's host; paths in it resolve the same on the daemon's."""
    yaml: str
    grace_s: float = 5.0
    startup_timeout_s: float = 60.0


class StartAnswer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                  omit_defaults=True):
    """Daemon -> launcher: whether its share started, and if not, why."""

    machine: str
    ok: bool
    error: str | None = None


class NodeResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How one node of a run ended; daemons send theirs to the launcher."""

    node_id: str
    returncode: int
    forced: str | None
    """``SIGTERM``/``SIGKILL`` when the launcher had to force it after STOP."""
    tail: list[str]
    """Its last output lines."""
    log_path: str
    restarts: int = 0
    stopped_why: str | None = None
    """Set when the launcher stopped it (``memory_limit``) or its host was lost."""
    machine: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.forced is None and self.stopped_why is None


START_REQUEST: StrictCodec[StartRequest] = StrictCodec(StartRequest, "start request")
START_ANSWER: StrictCodec[StartAnswer] = StrictCodec(StartAnswer, "start answer")
NODE_RESULT: StrictCodec[NodeResult] = StrictCodec(NodeResult, "node result")


def encode_line(text: str) -> bytes:
    """One output line of a node (or of a daemon), as it crosses the wire: UTF-8."""
    return text.encode("utf-8", errors="replace")


def decode_line(raw: bytes) -> str:
    """A relayed line; bytes that are not UTF-8 are shown as U+FFFD, never refused."""
    return raw.decode("utf-8", errors="replace")
