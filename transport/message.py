"""The header every pinflow data message carries as its zenoh attachment.

JSON, small, versioned. ``kind`` says where the payload is: ``inline`` (the zenoh payload
itself), ``shm`` (a slot descriptor: the bytes are in a shared-memory segment) or ``eos``
(the producer closed the output; no payload). Parsing checks every field's type before any
of it is used, so a malformed or hostile message is refused with a ``DescriptorError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pinflow.errors import DescriptorError, PayloadError

VERSION = 1
KINDS = ("inline", "shm", "eos")


@dataclass(frozen=True)
class Header:
    kind: str
    seq: int
    sent_ns: int
    layout: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    slot: dict[str, Any] | None = None
    """For ``shm``: {"seg": name, "idx": segment index, "off": int, "len": int, "gen": int}."""

    def encode(self) -> bytes:
        body: dict[str, Any] = {"v": VERSION, "k": self.kind, "s": self.seq, "t": self.sent_ns}
        if self.layout is not None:
            body["l"] = self.layout
        if self.metadata:
            body["m"] = self.metadata
        if self.slot is not None:
            body["d"] = self.slot
        try:
            return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise PayloadError(
                f"metadata must be JSON-serialisable (str, int, float, bool, None, lists and "
                f"dicts of them): {exc}"
            ) from None


def check_metadata(metadata: dict[str, Any] | None) -> None:
    """Raise ``PayloadError`` unless ``metadata`` can travel in a header."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise PayloadError(f"metadata must be a dict, got {type(metadata).__name__}")
    Header("eos", 0, 0, metadata=metadata).encode()


def _field(body: dict[str, Any], key: str, typ: type | tuple[type, ...], name: str) -> Any:
    value = body.get(key)
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is int):
        raise DescriptorError(f"message header field {name!r} is missing or has the wrong type")
    return value


def decode(raw: bytes) -> Header:
    """Parse and type-check a header; raise ``DescriptorError`` on anything unexpected."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DescriptorError(f"message header is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise DescriptorError("message header is not a JSON object")
    if body.get("v") != VERSION:
        raise DescriptorError(f"unsupported message version {body.get('v')!r}")
    kind = _field(body, "k", str, "kind")
    if kind not in KINDS:
        raise DescriptorError(f"unknown message kind {kind!r}")
    header = Header(
        kind=kind,
        seq=_field(body, "s", int, "seq"),
        sent_ns=_field(body, "t", int, "sent_ns"),
        layout=body.get("l"),
        metadata=body.get("m") or {},
        slot=body.get("d"),
    )
    if not isinstance(header.metadata, dict):
        raise DescriptorError("message header field 'metadata' must be an object")
    if kind != "eos" and not isinstance(header.layout, dict):
        raise DescriptorError("message header field 'layout' is missing")
    if kind == "shm" and not isinstance(header.slot, dict):
        raise DescriptorError("shm message without a slot descriptor")
    return header
