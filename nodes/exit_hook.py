"""Closing a node when its process ends without closing it (``main()`` simply returns).

zenoh runs callbacks on threads that are not daemon threads and end only when their session
closes, and the interpreter joins every non-daemon thread *before* it runs ``atexit``
handlers: a node that left its session open would hang there forever. The one hook that
runs before that join is CPython's ``threading._register_atexit`` (what
``concurrent.futures`` uses for the same reason); it is private, so it is used here only,
behind one function.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


def before_threads_join(callback: Callable[[], None]) -> None:
    """Run ``callback`` when the interpreter starts to exit, before it joins non-daemon
    threads (callbacks run in reverse order of registration, like ``atexit``)."""
    register: Callable[[Callable[[], None]], None] = threading._register_atexit  # type: ignore[attr-defined]
    register(callback)
