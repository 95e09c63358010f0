"""Rules the dataflow YAML and the data plane share, each written once: what an id may
contain, what a byte count looks like and how one prints, how many slots a pool may have.

Standard library only and above ``errors`` only, so the transport and the tools use the same
rule as the YAML checker: an id the loader accepts is one a segment name, a key expression or
a lock file accepts, and ``'4 GB'`` means the same in a dataflow and in an environment
variable.
"""

from __future__ import annotations

import os
import re

from pinflow.errors import SettingError

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
"""Node, output, input, run and machine ids. No ``.``: segment and lock file names join ids
with dots and split them back; no ``/``: key expressions join them with slashes."""
ID_RULE = "use only letters, digits, '_' and '-'"


def is_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_id(kind: str, value: object) -> str:
    """``value`` if it is a valid id, else ValueError naming ``kind`` and the rule."""
    if not is_id(value):
        raise ValueError(f"invalid {kind} {value!r}: {ID_RULE}")
    return value  # type: ignore[return-value]  # is_id proved it is a str


SIZE_UNITS = {
    "B": 1,
    "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
}
"""Units a byte count may carry: powers of 1024 (``KiB``...) or of 1000 (``KB``...)."""
_SIZE = re.compile(r"\s*(\d+)\s*(" + "|".join(SIZE_UNITS) + r")?\s*")
SIZE_EXAMPLE = "4294967296 or '4 GiB'"


def parse_size(value: int | str) -> int:
    """Bytes from an int >= 0 or a string ``'N'`` / ``'N UNIT'`` (e.g. ``'512 MiB'``,
    ``'4GB'``); ValueError otherwise. A bool is not a byte count, though Python says it is
    an int."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 0:
            return value
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match:
            return int(match.group(1)) * SIZE_UNITS[match.group(2) or "B"]
    raise ValueError(f"not a byte count: {value!r} (use e.g. {SIZE_EXAMPLE})")


def size_from_env(name: str) -> int | None:
    """The byte count in environment variable ``name``, None if it is unset or empty; a value
    that is not a byte count raises SettingError naming the variable."""
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return parse_size(raw)
    except ValueError:
        units = ", ".join(SIZE_UNITS)
        raise SettingError(f"{name}={raw!r} is not a byte count: write a whole number of bytes "
                           f"with an optional unit ({units}), e.g. {name}='4 GiB'") from None


MIB = 1 << 20


def mib(nbytes: float) -> str:
    """Bytes as MiB with one decimal, the way every message and report prints memory."""
    return f"{nbytes / MIB:,.1f} MiB"


MAX_SLOTS = 250
"""Most slots one output's pool may have: the pool header (16 bytes per slot after a
24-byte preamble) must fit its first page; ``transport/pool.py`` asserts it."""
