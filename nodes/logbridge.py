"""Python ``logging`` in a node: INFO and above shown, in the node's own line format.

Python's default (no handler on the root logger) prints only WARNING and above, bare; dora
shows INFO. So the first ``Node()`` of a process gives an unconfigured root logger one
handler that writes ``LEVEL node: message`` to stderr (the format of ``node.log``; the
launcher prefixes the node id and keeps the line in the node's log file) at INFO, or at
DEBUG when ``PINFLOW_LOG_LEVEL=debug``. A process that configured logging itself before
``Node()`` (a handler on the root logger) is left alone.
"""

from __future__ import annotations

import logging
import os
import sys

LEVEL_ENV = "PINFLOW_LOG_LEVEL"
_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "warning": logging.WARNING,
           "info": logging.INFO, "debug": logging.DEBUG, "trace": logging.DEBUG}


class NodeLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the stderr of the moment (tests and nodes may replace ``sys.stderr``)."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(f"%(levelname)s {node_id}: %(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def threshold() -> int:
    """The lowest level shown: ``PINFLOW_LOG_LEVEL`` (error, warning, info, debug), else
    INFO; a value it does not know is INFO too."""
    return _LEVELS.get(os.environ.get(LEVEL_ENV, "").strip().lower(), logging.INFO)


def install(node_id: str) -> bool:
    """Give the root logger the node's handler if nobody configured logging; True if it
    did (once per process: a second ``Node()`` finds the handler there)."""
    root = logging.getLogger()
    if root.handlers:
        return False
    level = threshold()
    handler = NodeLogHandler(node_id)
    handler.setLevel(level)
    root.addHandler(handler)
    root.setLevel(level)
    return True
