"""One codec per message type: msgspec JSON in, the message's typed definition out.

Every message between pinflow processes is a msgspec ``Struct`` and travels as JSON through
a :class:`StrictCodec` of its type. Decoding checks the bytes against the definition in one
pass (types, ranges, unknown fields where the sender is ours) and turns every way it can fail
(too large, not JSON, nested too deep for the decoder, the wrong shape) into one
``DescriptorError`` that names the message. What a caller does with it depends on the plane:
the data plane counts and drops the message; control messages (stats reports, results, start
answers) are logged and dropped. Nothing a peer sends raises anything else.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from pinflow.errors import DescriptorError

T = TypeVar("T")

_ENCODER = msgspec.json.Encoder()


def encode(message: Any) -> bytes:
    """JSON of a message (a Struct, or builtins made of Structs)."""
    return _ENCODER.encode(message)


class StrictCodec(Generic[T]):
    """Encodes and decodes one message type; ``what`` names it in errors."""

    def __init__(self, message_type: Any, what: str, *, max_bytes: int | None = None) -> None:
        self.what = what
        self.max_bytes = max_bytes
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(message_type)

    def encode(self, message: T) -> bytes:
        return _ENCODER.encode(message)

    def decode(self, raw: bytes | bytearray | memoryview) -> T:
        """The message in ``raw``; ``DescriptorError`` for anything that is not one."""
        if self.max_bytes is not None and len(raw) > self.max_bytes:
            raise DescriptorError(f"{self.what} of {len(raw)} bytes is larger than the "
                                  f"{self.max_bytes}-byte limit")
        try:
            return self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise DescriptorError(f"{self.what} is invalid: {exc}") from None
        except msgspec.DecodeError as exc:
            raise DescriptorError(f"{self.what} is not JSON: {exc}") from None
        except RecursionError:
            raise DescriptorError(f"{self.what} is nested too deep to decode") from None
