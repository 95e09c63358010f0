"""How a YAML field is declared, once: the vocabulary the spec dataclasses are written in.

A field of a spec dataclass that the YAML can set is declared with :func:`key`: the value
kind (which checks and converts the YAML value and names the type in the README), the
default, the README text for a computed default, and one doc line. The dataclass field *is*
the declaration; everything else is derived from it by :class:`Level`: the allowed keys
(and ``unknown key`` suggestions), the generic checks in :mod:`pinflow.spec.loader`, the
JSON form (:mod:`pinflow.spec.model`) and the README tables
(:mod:`pinflow.spec.reference`). Keys the YAML may carry without a dataclass field are
declared with :func:`ignored` (accepted, reported as a note), :func:`rejected` (an error
with a message of their own) or :func:`mapped` (read by the loader into another field, like
dora's ``deploy: {machine: ...}`` into ``machine``).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from yaml.nodes import Node

from pinflow.spec import yamlnode
from pinflow.spec.units import ID_PATTERN, ID_RULE, MAX_SLOTS, SIZE_EXAMPLE

INVALID: Any = object()
"""What :meth:`Kind.read` returns for a value of the wrong kind (None is a valid value)."""


class Choice(str, Enum):
    """A closed set of YAML words. Members are the words themselves (``Restart.NEVER ==
    "never"``, same hash, printed as the word), so JSON and comparisons need no conversion."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class QueuePolicy(Choice):
    """What a full input queue drops."""

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    BACKPRESSURE = "backpressure"
    """dora's: drop_oldest from a queue of ``max(10 * queue_size, 100)`` messages."""


class OnFull(Choice):
    """What ``send_output`` does when consumers hold every slot of the pool."""

    BLOCK = "block"
    DROP = "drop"


class Restart(Choice):
    """When the launcher starts a node again after it exits."""

    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class DeviceKind(Choice):
    """Where an input's payloads are delivered; ``cuda`` may carry an index (``cuda:1``)."""

    CPU = "cpu"
    CUDA = "cuda"


def suggest(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """``; did you mean 'x'?`` for the closest of ``choices``, or nothing."""
    match = difflib.get_close_matches(word, sorted(choices), n=1)
    return f"; did you mean '{prefix}{match[0]}'?" if match else ""


def _quoted(words: Iterable[str], last: str = ", ") -> str:
    items = [f"'{word}'" for word in words]
    return ", ".join(items[:-1]) + last + items[-1] if len(items) > 1 else "".join(items)


class Kind:
    """What a YAML value must be. ``expected`` completes "``KEY`` must be ...", ``type_text``
    is the README's Type column; :meth:`read` converts a YAML node or returns INVALID."""

    expected = ""
    type_text = ""

    def read(self, node: Node) -> Any:
        raise NotImplementedError

    def hint(self, node: Node) -> str:
        """Extra text after a wrong value (a did-you-mean), if the kind can offer one."""
        return ""

    def default_text(self, value: Any) -> str:
        """The README's Default column for a literal default."""
        if value is None or value in ((), {}):
            return "none"
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        return f"`{value}`"


class Structured(Kind):
    """Read by explicit code in the loader: values with structure of their own (lists of
    nodes, inputs, args) or rules that span fields (exactly one of path/module)."""

    def __init__(self, type_text: str) -> None:
        self.type_text = type_text

    def read(self, node: Node) -> Any:
        raise TypeError("structured keys are read by the loader, not by the generic walker")


class Flag(Kind):
    expected = "true or false"
    type_text = "bool"

    def read(self, node: Node) -> Any:
        value = yamlnode.bool_value(node)
        return INVALID if value is None else value


class Count(Kind):
    """A whole number in ``[low, high]``; bools, floats and strings are not counts."""

    def __init__(self, low: int, high: int | None = None) -> None:
        self.low, self.high = low, high
        if high is None:
            self.expected, self.type_text = f"an integer >= {low}", f"int ≥ {low}"
        else:
            self.expected = f"an integer from {low} to {high}"
            self.type_text = f"int {low} to {high}"

    def read(self, node: Node) -> Any:
        value = yamlnode.int_value(node)
        if value is None or value < self.low or (self.high is not None and value > self.high):
            return INVALID
        return value


class Seconds(Kind):
    expected = "a number of seconds >= 0"
    type_text = "seconds ≥ 0"

    def read(self, node: Node) -> Any:
        value = yamlnode.number_value(node)
        return INVALID if value is None or value < 0 else value


class Bytes(Kind):
    """A byte count (see :func:`pinflow.spec.units.parse_size`) of at least ``low``."""

    def __init__(self, low: int = 0, example: str = SIZE_EXAMPLE) -> None:
        self.low = low
        self.expected = f"a byte count like {example}"
        self.type_text = "bytes" if low == 0 else f"bytes ≥ {low}"

    def read(self, node: Node) -> Any:
        value = yamlnode.size_value(node)
        return INVALID if value is None or value < self.low else value


class OneOf(Kind):
    """One word of a :class:`Choice`; a near miss gets a did-you-mean."""

    def __init__(self, choice: type[Choice]) -> None:
        self.choice = choice
        self.expected = f"one of {_quoted(choice)}"
        self.type_text = " / ".join(f"`{member}`" for member in choice)

    def read(self, node: Node) -> Any:
        if yamlnode.is_str(node) and node.value in self.choice._value2member_map_:
            return self.choice(node.value)
        return INVALID

    def hint(self, node: Node) -> str:
        return suggest(node.value, self.choice) if yamlnode.is_str(node) else ""


class Device(Kind):
    """``cpu`` or ``cuda``/``cuda:N``; read as None (the host) or the device string."""

    expected = _quoted([*DeviceKind, f"{DeviceKind.CUDA}:N"], last=" or ")
    type_text = " / ".join(f"`{word}`" for word in [*DeviceKind, f"{DeviceKind.CUDA}:N"])

    def read(self, node: Node) -> Any:
        if not yamlnode.is_str(node):
            return INVALID
        kind, colon, index = node.value.partition(":")
        if kind == DeviceKind.CPU and not colon:
            return None
        if kind == DeviceKind.CUDA and (not colon or (index.isascii() and index.isdigit())):
            return node.value
        return INVALID

    def default_text(self, value: Any) -> str:
        return f"`{DeviceKind.CPU}`" if value is None else super().default_text(value)


class HostName(Kind):
    """A machine name as given to ``pinflow daemon --machine``: an id not starting with
    ``_`` (names starting with ``_`` are pinflow's own, like the gateway's)."""

    expected = (f"a host name given to `pinflow daemon --machine`; {ID_RULE}, "
                "not starting with '_'")
    type_text = f"name `{ID_PATTERN.pattern}`, not starting with `_`"

    def read(self, node: Node) -> Any:
        if yamlnode.is_str(node) and ID_PATTERN.fullmatch(node.value) and node.value[0] != "_":
            return node.value
        return INVALID


class ModuleName(Kind):
    expected = "a dotted python module name like 'pkg.node'"
    type_text = "dotted name"

    def read(self, node: Node) -> Any:
        if (yamlnode.is_str(node) and not _looks_like_file(node.value)
                and all(part.isidentifier() for part in node.value.split("."))):
            return node.value
        return INVALID

    def hint(self, node: Node) -> str:
        if yamlnode.is_str(node) and _looks_like_file(node.value):
            return ("; dora's `module:` (a module definition file) is not supported by "
                    "pinflow, whose `module:` is a Python module name; a Python file goes "
                    "in `path:`")
        return ""


def _looks_like_file(text: str) -> bool:
    return "/" in text or text.endswith((".yml", ".yaml", ".py"))


class Text(Kind):
    expected = "a string"
    type_text = "string"

    def read(self, node: Node) -> Any:
        return node.value if yamlnode.is_str(node) else INVALID


SLOTS = Count(1, MAX_SLOTS)


@dataclass(frozen=True)
class Key:
    """One YAML key of one level, as declared."""

    name: str
    kind: Kind
    doc: str
    attr: str | None = None
    """The dataclass field the value goes to; None for ignored and rejected keys."""
    default: Any = None
    required: bool = False
    default_text: str | None = None
    """README Default text where the default is computed or depends on other keys."""
    expected: str | None = None
    """Replaces the kind's "must be ..." phrase where this key says it better."""
    ignored: str | None = None
    """Accepted and ignored: the note the loader reports (why, and what to do instead)."""
    rejected: str | None = None
    """Refused with this message instead of ``unknown key`` (a known key pinflow does not
    support, e.g. another framework's)."""

    @property
    def must_be(self) -> str:
        return self.expected or self.kind.expected

    @property
    def structured(self) -> bool:
        return isinstance(self.kind, Structured)

    @property
    def default_column(self) -> str:
        if self.required:
            return "required"
        if self.default_text is not None:
            return self.default_text
        return self.kind.default_text(self.default)


_META = "pinflow.yaml"


def key(kind: Kind, doc: str, *, default: Any = dataclasses.MISSING,
        default_factory: Any = dataclasses.MISSING, default_text: str | None = None,
        expected: str | None = None, yaml_name: str | None = None, hash: bool | None = None
        ) -> Any:
    """A dataclass field the YAML sets: its kind, default and doc, declared in one place.
    Without a default the key is required. ``yaml_name`` is for YAML keys that are not
    Python names (``output-types``); by default the key is the field's name."""
    declared = Key(yaml_name or "", kind, doc, default_text=default_text, expected=expected)
    return dataclasses.field(default=default, default_factory=default_factory, hash=hash,
                             metadata={_META: declared})


def ignored(name: str, note: str, type_text: str = "any") -> Key:
    """A key accepted for compatibility but not used; ``note`` says so when it is met."""
    return Key(name, Structured(type_text), doc=f"Ignored: {note}", ignored=note,
               default_text="—")


def rejected(name: str, message: str) -> Key:
    """A key refused with ``message`` (what to write instead), not with ``unknown key``."""
    return Key(name, Structured("—"), doc=message, rejected=message)


def mapped(name: str, type_text: str, doc: str) -> Key:
    """A key without a field of its own: the loader reads it into another field (``doc``
    says which)."""
    return Key(name, Structured(type_text), doc=doc, default_text="none")


class Level:
    """The keys of one YAML mapping (top level, node, input, output): the declared fields of
    ``spec`` in their order, then ``extra`` keys without a field."""

    def __init__(self, title: str, spec: type, *extra: Key) -> None:
        self.title, self.spec = title, spec
        self.keys: dict[str, Key] = {}
        for f in dataclasses.fields(spec):
            declared: Key | None = f.metadata.get(_META)
            if declared is None:
                continue
            required = (f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING)
            default = (None if required else f.default if f.default is not dataclasses.MISSING
                       else f.default_factory())
            name = declared.name or f.name
            self.keys[name] = dataclasses.replace(declared, name=name, attr=f.name,
                                                  default=default, required=required)
        for extra_key in extra:
            if extra_key.name in self.keys:
                raise ValueError(f"{title}: key '{extra_key.name}' is declared twice")
            self.keys[extra_key.name] = extra_key

    @property
    def allowed(self) -> frozenset[str]:
        """Keys a file may carry at this level (ignored ones included, rejected ones not)."""
        return frozenset(name for name, k in self.keys.items() if k.rejected is None)

    @property
    def listed(self) -> frozenset[str]:
        """The keys an ``unknown key`` message lists: pinflow's own (those with a field);
        other frameworks' keys accepted for compatibility only feed its did-you-mean."""
        return frozenset(name for name, k in self.keys.items() if k.attr is not None)
