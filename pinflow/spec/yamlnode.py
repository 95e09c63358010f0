"""Reading one composed PyYAML node: its line, its value by YAML tag, and how to name it in
a message.

The loader works on composed nodes rather than plain Python values because only nodes carry
line numbers, and because the tag tells what the user wrote: ``4`` is an int, ``'4'`` a
string, ``yes`` a bool. Every reader returns None for a value of the wrong kind, so callers
report it instead of raising.
"""

from __future__ import annotations

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pinflow.spec.units import parse_size

TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, MERGE = (
    TAG + t for t in ("str", "int", "float", "bool", "null", "merge"))
_TRUE_WORDS = frozenset({"true", "yes", "on"})


def line(node: Node | None) -> int:
    """1-based line of ``node``; line 1 for a missing node (an empty file)."""
    return 1 if node is None else node.start_mark.line + 1


def is_str(node: Node | None) -> bool:
    return isinstance(node, ScalarNode) and node.tag == STR


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == NULL


def scalar_text(node: Node) -> str | None:
    """A scalar as an env/argv string: the text as written, so ``1.10`` stays ``1.10``."""
    if not isinstance(node, ScalarNode):
        return None
    if node.tag == BOOL:
        return "true" if node.value.lower() in _TRUE_WORDS else "false"
    return "" if node.tag == NULL else node.value


def bool_value(node: Node) -> bool | None:
    if not isinstance(node, ScalarNode) or node.tag != BOOL:
        return None
    return node.value.lower() in _TRUE_WORDS


def int_value(node: Node) -> int | None:
    """An int-tagged scalar's value; bools, floats and strings are not ints."""
    if not isinstance(node, ScalarNode) or node.tag != INT:
        return None
    try:
        return SafeConstructor().construct_yaml_int(node)
    except (ValueError, yaml.YAMLError):
        return None


def number_value(node: Node) -> float | None:
    """An int or float scalar (not a bool or string)."""
    if not isinstance(node, ScalarNode) or node.tag not in (INT, FLOAT):
        return None
    try:
        return float(node.value)
    except ValueError:
        return None


def size_value(node: Node) -> int | None:
    """A byte count: an int >= 0, or a string like '8 MiB' / '4KiB' / '2MB'."""
    value: int | str | None = int_value(node) if not is_str(node) else node.value
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError:
        return None


def describe(node: Node | None) -> str:
    """Name a YAML value for a message: what the user wrote, not a Python repr."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node is None or node.tag == NULL:
        return "nothing (null)"
    kind = node.tag.removeprefix(TAG) if node.tag.startswith(TAG) else f"tag {node.tag}"
    return f"'{node.value}' ({kind})"
