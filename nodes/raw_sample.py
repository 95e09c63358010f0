"""dora's ``send_output_raw``: a loaned slot as a writable byte buffer, sent once.

``node.send_output_raw(output, n)`` returns a :class:`SampleHandler` over pinflow's loan
(``node.output_buffer(output, n, np.uint8)``): use it as a context manager (the buffer is
sent when the block exits without an exception, returned unsent otherwise) or call
:meth:`SampleHandler.send` yourself. The buffer is a writable ``uint8`` numpy array, so the
buffer protocol works (``memoryview(buf)``, ``np.frombuffer(buf, ...)``). Do not keep it
after sending: consumers read that memory.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from pinflow.errors import ClosedError


class SampleHandler:
    """One loan: ``__enter__`` gives the buffer, ``send()`` publishes it (once)."""

    def __init__(self, loan: AbstractContextManager[np.ndarray | None]) -> None:
        self._loan = loan
        buffer = loan.__enter__()
        self._dropped = buffer is None
        # on_full: drop with every slot held: the message is dropped (and counted); the
        # caller still gets somewhere to write.
        self._buffer: np.ndarray | None = (
            np.zeros(0, dtype=np.uint8) if buffer is None else buffer)
        self._done = False

    def as_buffer(self) -> np.ndarray:
        """The writable bytes (a ``uint8`` numpy array over the slot)."""
        if self._done or self._buffer is None:
            raise ClosedError("the sample was already sent (or discarded)")
        return self._buffer

    def as_memoryview(self) -> memoryview:
        return memoryview(self.as_buffer())

    def send(self) -> bool:
        """Publish the sample; ``False`` when the output's full pool dropped it. A second
        call raises ``ClosedError`` (dora: "Sample has already been sent")."""
        if self._done:
            raise ClosedError("the sample has already been sent")
        self._done, self._buffer = True, None
        self._loan.__exit__(None, None, None)
        return not self._dropped

    def discard(self) -> None:
        """Give the slot back unsent."""
        if not self._done:
            self._done, self._buffer = True, None
            error = RuntimeError("sample discarded")
            try:
                self._loan.__exit__(RuntimeError, error, None)
            except RuntimeError as raised:
                if raised is not error:
                    raise

    def __enter__(self) -> np.ndarray:
        return self.as_buffer()

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        if kind is None:
            if not self._done:
                self.send()
        else:
            self.discard()
