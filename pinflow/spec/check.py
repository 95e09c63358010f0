"""Load a dataflow file: :func:`load`/:func:`loads`, and the YAML-node walking checker
behind them.

It turns a composed PyYAML node tree into specs while recording ``(line, text)`` problems instead
of raising, so the loader can report every mistake at once with its ``file:line``. It walks nodes
rather than plain dicts because only nodes carry line numbers. Kept apart from ``spec`` so that
module stays the small public surface: constants, dataclasses, ``load``/``loads``.
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pinflow.errors import SpecError
from pinflow.spec.model import (
    DEFAULT_QUEUE_POLICY,
    DEFAULT_QUEUE_SIZE,
    GATEWAY_ID,
    INPUT_KEYS,
    NODE_KEYS,
    ON_FULL_POLICIES,
    OUTPUT_KEYS,
    QUEUE_POLICIES,
    RESTART_POLICIES,
    TIMER_PREFIX,
    TOP_LEVEL_KEYS,
    DataflowSpec,
    InputSpec,
    NodeSpec,
    OutputSpec,
)
from pinflow.spec.units import ID_PATTERN as _ID_RE
from pinflow.spec.units import ID_RULE as _ID_RULE
from pinflow.spec.units import MAX_SLOTS, parse_size

_DEVICE_RE = re.compile(r"(cpu|cuda(:\d+)?)")
_HZ_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_MILLIS_RE = re.compile(r"\d+")
_TIMER_FORMS = f"'{TIMER_PREFIX}hz/N' (N > 0, e.g. 30 or 0.5) or '{TIMER_PREFIX}millis/N' (N > 0)"
_TAG = "tag:yaml.org,2002:"
_STR, _INT, _BOOL, _NULL, _MERGE = (_TAG + t for t in ("str", "int", "bool", "null", "merge"))
_TRUE_WORDS = frozenset({"true", "yes", "on"})


@dataclass
class _Draft:
    """A node after its own checks, before sources are matched against the other nodes."""

    spec: NodeSpec
    outputs_known: bool
    source_nodes: list[Node]


class _Checker:
    """Walks the composed YAML tree, recording (line, text) problems instead of raising."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[tuple[int, str]] = []
        self.pinned_budget: int | None = None
        self.memory_limit: int | None = None

    def err(self, node: Node | None, text: str) -> None:
        self.problems.append((_line(node), text))

    def wrong(self, node: Node | None, expected: str, hint: str = "") -> None:
        """Report a value of the wrong shape: what was expected, then what was written."""
        self.err(node, f"{expected}, got {_describe(node)}{hint}")

    def items(
        self, node: MappingNode, where: str, merging: frozenset[int] = frozenset()
    ) -> list[tuple[str, Node, Node]]:
        """(key, key node, value node) with ``<<`` merges applied; flags bad/duplicate keys."""
        own: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if key.tag == _MERGE:
                sources = value.value if isinstance(value, SequenceNode) else [value]
                for src in sources:
                    if not isinstance(src, MappingNode) or id(src) in merging | {id(node)}:
                        self.err(key, f"{where}: '<<' must merge a mapping")
                        continue
                    for name, kn, vn in self.items(src, where, merging | {id(node)}):
                        merged.setdefault(name, (kn, vn))
            elif not _is_str(key):
                self.wrong(key, f"{where}: keys must be strings")
            elif key.value in own:
                first = _line(own[key.value][0])
                self.err(key, f"{where}: duplicate key '{key.value}' (first on line {first})")
            else:
                own[key.value] = (key, value)
        for name, pair in merged.items():
            own.setdefault(name, pair)
        return [(name, kn, vn) for name, (kn, vn) in own.items()]

    def check_keys(
        self, items: Iterable[tuple[str, Node, Node]], allowed: frozenset[str], where: str
    ) -> bool:
        """Flag keys outside ``allowed``; False if any, since a typo may hide a real key."""
        clean = True
        for name, key_node, _ in items:
            if name not in allowed:
                clean = False
                listing = ", ".join(sorted(allowed))
                hint = _suggest(name, allowed)
                self.err(key_node, f"{where}: unknown key '{name}' (allowed: {listing}){hint}")
        return clean

    def dataflow(self, root: Node | None) -> tuple[NodeSpec, ...]:
        if root is None:
            self.err(None, "the file is empty; expected a mapping with a 'nodes' list")
            return ()
        if not isinstance(root, MappingNode):
            self.wrong(root, "top level must be a mapping with 'nodes'")
            return ()
        items = self.items(root, "top level")
        self.check_keys(items, TOP_LEVEL_KEYS, "top level")
        limit = {name: value for name, _, value in items}.get("memory_limit")
        if limit is not None:
            self.memory_limit = _size_value(limit)
            if self.memory_limit is None:
                self.wrong(limit, "memory_limit must be a byte count like '2 GiB'")
        budget = {name: value for name, _, value in items}.get("pinned_budget")
        if budget is not None:
            self.pinned_budget = _size_value(budget)
            if self.pinned_budget is None:
                self.wrong(budget, "pinned_budget must be a byte count like 4294967296 or '4 GiB'")
        listing = {name: value for name, _, value in items}.get("nodes")
        if listing is None:
            self.err(root, "top level: missing required key 'nodes' (a list of nodes)")
            return ()
        if not isinstance(listing, SequenceNode):
            self.wrong(listing, "'nodes' must be a list of nodes")
            return ()
        if not listing.value:
            self.err(listing, "'nodes' is empty; declare at least one node")
        drafts: dict[str, _Draft] = {}
        for index, item in enumerate(listing.value, 1):
            draft = self.node(item, index)
            if draft is None:
                continue
            first = drafts.get(draft.spec.id)
            if first is not None:
                where = f"duplicate node id '{draft.spec.id}'"
                self.err(item, f"{where} (first defined on line {first.spec.line})")
                continue
            drafts[draft.spec.id] = draft
        for draft in drafts.values():
            for inp, source_node in zip(draft.spec.inputs, draft.source_nodes, strict=True):
                self.resolve(draft.spec.id, inp, source_node, drafts)
        return tuple(draft.spec for draft in drafts.values())

    def node(self, item: Node, index: int) -> _Draft | None:
        where = f"node #{index}"
        if not isinstance(item, MappingNode):
            self.wrong(item, f"{where}: must be a mapping with 'id' and 'path' or 'module'")
            return None
        own_id = next((v for k, v in item.value if _is_str(k) and k.value == "id"), None)
        items = self.items(item, f"node '{own_id.value}'" if _is_str(own_id) else where)
        found = {name: (kn, vn) for name, kn, vn in items}
        node_id: str | None = None
        if "id" not in found:
            self.err(item, f"{where}: missing required key 'id'")
        elif not _is_str(found["id"][1]):
            self.wrong(found["id"][1], f"{where}: 'id' must be a string")
        else:
            node_id = found["id"][1].value
            where = f"node '{node_id}'"
            if not _ID_RE.fullmatch(node_id):
                self.err(found["id"][1], f"{where}: invalid id; {_ID_RULE}")
            elif node_id == GATEWAY_ID:
                self.err(found["id"][1], f"{where}: the id '{GATEWAY_ID}' is reserved for "
                         "pinflow's cross-machine gateway")
        keys_clean = self.check_keys(items, NODE_KEYS, where)
        path, module = self.program(item, found, where)
        args = self.args(found["args"][1], where) if "args" in found else ()
        env = self.env(found["env"][1], where) if "env" in found else {}
        inputs: list[tuple[InputSpec, Node]] = []
        if "inputs" in found:
            inputs = self.inputs(found["inputs"][1], where)
        outputs, outputs_known = [], True
        if "outputs" in found:
            outputs, outputs_known = self.outputs(found["outputs"][1], where)
        supervision = self.supervision({k: v for k, (_, v) in found.items()}, where)
        machine = self.machine(found["machine"][1], where) if "machine" in found else None
        if node_id is None:
            return None
        spec = NodeSpec(
            id=node_id,
            path=path,
            module=module,
            args=args,
            env=env,
            inputs=tuple(inp for inp, _ in inputs),
            outputs=tuple(outputs),
            line=_line(item),
            machine=machine,
            **supervision,
        )
        return _Draft(spec, outputs_known and keys_clean, [source for _, source in inputs])

    def machine(self, value: Node, where: str) -> str | None:
        """Name of the host the node runs on (a ``pinflow daemon --machine`` name)."""
        if not _is_str(value) or not _ID_RE.fullmatch(value.value) or value.value[0] == "_":
            self.wrong(value, f"{where}: machine must be a host name given to `pinflow daemon "
                       f"--machine`; {_ID_RULE}, not starting with '_'")
            return None
        return value.value

    def supervision(self, found: dict[str, Node], where: str) -> dict[str, Any]:
        """memory_limit and restart policy of one node (the dataflow's memory_limit is
        the default)."""
        options: dict[str, Any] = {"memory_limit": self.memory_limit}
        if "memory_limit" in found:
            limit = _size_value(found["memory_limit"])
            if limit is None or limit < 1:
                self.wrong(found["memory_limit"],
                           f"{where}: memory_limit must be a byte count like '512 MiB'")
            else:
                options["memory_limit"] = limit
        if "restart" in found:
            raw = found["restart"]
            if _is_str(raw) and raw.value in RESTART_POLICIES:
                options["restart"] = raw.value
            else:
                hint = _suggest(raw.value, RESTART_POLICIES) if _is_str(raw) else ""
                self.wrong(raw, f"{where}: restart must be one of "
                           f"{', '.join(RESTART_POLICIES)}", hint)
        if "max_restarts" in found:
            count = _int_value(found["max_restarts"])
            if count is None or count < 0:
                self.wrong(found["max_restarts"], f"{where}: max_restarts must be an int >= 0")
            else:
                options["max_restarts"] = count
        if "restart_backoff" in found:
            seconds = _number_value(found["restart_backoff"])
            if seconds is None or seconds < 0:
                self.wrong(found["restart_backoff"],
                           f"{where}: restart_backoff must be seconds >= 0")
            else:
                options["restart_backoff"] = seconds
        return options

    def program(
        self, item: MappingNode, found: dict[str, tuple[Node, Node]], where: str
    ) -> tuple[Path | None, str | None]:
        """Check that exactly one of ``path``/``module`` says what to run, and that it can."""
        if "path" in found and "module" in found:
            self.err(found["module"][0], f"{where}: has both 'path' and 'module'; give one")
        elif "path" not in found and "module" not in found:
            self.err(item, f"{where}: needs 'path' (a python file) or 'module' (a module name)")
        path = module = None
        if "path" in found:
            value = found["path"][1]
            if not _is_str(value) or not value.value:
                self.wrong(value, f"{where}: 'path' must be a file name")
            else:
                path = (self.base_dir / value.value).resolve()
                if not path.is_file():
                    self.err(
                        value, f"{where}: path '{value.value}' does not exist (looked for {path})"
                    )
        if "module" in found:
            value = found["module"][1]
            if _is_str(value) and all(part.isidentifier() for part in value.value.split(".")):
                module = value.value
            else:
                self.wrong(
                    value, f"{where}: module must be a dotted python module name like 'pkg.node'"
                )
        return path, module

    def args(self, value: Node, where: str) -> tuple[str, ...]:
        if isinstance(value, SequenceNode):
            words = []
            for item in value.value:
                text = _scalar_text(item)
                if text is None:
                    self.wrong(item, f"{where}: 'args' items must be scalars")
                else:
                    words.append(text)
            return tuple(words)
        text = _scalar_text(value)
        if text is None:
            self.wrong(value, f"{where}: 'args' must be a string or a list")
            return ()
        try:
            return tuple(shlex.split(text))
        except ValueError as exc:
            self.err(value, f"{where}: cannot split 'args' ({exc}); check the quotes")
            return ()

    def env(self, value: Node, where: str) -> dict[str, str]:
        if _is_null(value):
            return {}
        if not isinstance(value, MappingNode):
            self.wrong(value, f"{where}: 'env' must be a mapping of NAME: value")
            return {}
        env: dict[str, str] = {}
        for name, key_node, item in self.items(value, f"{where} env"):
            text = _scalar_text(item)
            if not name or "=" in name or "\0" in name:
                self.err(key_node, f"{where}: env name '{name}' is not a valid variable name")
            elif text is None:
                self.wrong(item, f"{where}: env '{name}' must be a string, number or bool")
            else:
                env[name] = text
        return env

    def inputs(self, value: Node, where: str) -> list[tuple[InputSpec, Node]]:
        if _is_null(value):
            return []
        if not isinstance(value, MappingNode):
            self.wrong(value, f"{where}: 'inputs' must be a mapping of input name to source")
            return []
        inputs = []
        for name, key_node, item in self.items(value, f"{where} inputs"):
            iw = f"{where} input '{name}'"
            if not _ID_RE.fullmatch(name):
                self.err(key_node, f"{iw}: invalid input name; {_ID_RULE}")
            parsed = self.input(name, key_node, item, iw)
            if parsed is not None:
                inputs.append(parsed)
        return inputs

    def input(
        self, name: str, key_node: Node, value: Node, iw: str
    ) -> tuple[InputSpec, Node] | None:
        queue_size, policy, source = DEFAULT_QUEUE_SIZE, DEFAULT_QUEUE_POLICY, value
        device, device_required = None, False
        if isinstance(value, MappingNode):
            items = self.items(value, iw)
            self.check_keys(items, INPUT_KEYS, iw)
            found = {key: item for key, _, item in items}
            if "device" in found:
                raw = found["device"]
                if _is_str(raw) and _DEVICE_RE.fullmatch(raw.value):
                    device = None if raw.value == "cpu" else raw.value
                else:
                    self.wrong(raw, f"{iw}: device must be 'cpu', 'cuda' or 'cuda:N'")
            if "device_required" in found:
                flag = _bool_value(found["device_required"])
                if flag is None:
                    self.wrong(found["device_required"], f"{iw}: device_required must be a bool")
                else:
                    device_required = flag
            if "queue_size" in found:
                size = _int_value(found["queue_size"])
                if size is None or size < 1:
                    self.wrong(found["queue_size"], f"{iw}: queue_size must be an integer >= 1")
                else:
                    queue_size = size
            if "queue_policy" in found:
                raw = found["queue_policy"]
                if _is_str(raw) and raw.value in QUEUE_POLICIES:
                    policy = raw.value
                else:
                    choices = ", ".join(f"'{p}'" for p in QUEUE_POLICIES)
                    hint = _suggest(raw.value, QUEUE_POLICIES) if _is_str(raw) else ""
                    self.wrong(raw, f"{iw}: queue_policy must be one of {choices}", hint)
            if "source" not in found:
                self.err(key_node, f"{iw}: missing required key 'source'")
                return None
            source = found["source"]
        if not _is_str(source):
            self.wrong(source, f"{iw}: source must be a string 'node/output' or a timer")
            return None
        text = source.value
        node_id = output_id = period = None
        if text.startswith("pinflow/"):
            period = _timer_period(text)
            if period is None:
                self.err(source, f"{iw}: invalid timer source '{text}'; use {_TIMER_FORMS}")
                return None
        else:
            parts = text.split("/")
            if len(parts) != 2 or not all(_ID_RE.fullmatch(part) for part in parts):
                self.err(
                    source,
                    f"{iw}: invalid source '{text}'; "
                    f"expected 'node/output' or a timer: {_TIMER_FORMS}",
                )
                return None
            node_id, output_id = parts
        spec = InputSpec(
            name=name,
            source=text,
            queue_size=queue_size,
            queue_policy=policy,
            source_node=node_id,
            source_output=output_id,
            timer_period_s=period,
            line=_line(key_node),
            device=device,
            device_required=device_required,
        )
        return spec, source

    def outputs(self, value: Node, where: str) -> tuple[list[OutputSpec], bool]:
        """Declared outputs, and whether the list is trustworthy enough to check sources by."""
        if _is_null(value):
            return [], True
        if not isinstance(value, SequenceNode):
            self.wrong(value, f"{where}: 'outputs' must be a list of output ids")
            return [], False
        outputs: list[OutputSpec] = []
        known = True
        for index, item in enumerate(value.value, 1):
            ow, id_node = f"{where} output #{index}", item
            options: dict[str, Any] = {}
            if isinstance(item, MappingNode):
                items = self.items(item, ow)
                id_node = {name: vn for name, _, vn in items}.get("id")
                if _is_str(id_node):
                    ow = f"{where} output '{id_node.value}'"
                self.check_keys(items, OUTPUT_KEYS, ow)
                options = self.output_options({k: v for k, _, v in items}, ow)
                if id_node is None:
                    self.err(item, f"{ow}: missing required key 'id'")
                    known = False
                    continue
            if not _is_str(id_node):
                self.wrong(id_node, f"{ow}: must be an output id or a mapping with 'id'")
                known = False
                continue
            output_id = id_node.value
            first = next((out for out in outputs if out.id == output_id), None)
            if not _ID_RE.fullmatch(output_id):
                self.err(id_node, f"{where}: invalid output id '{output_id}'; {_ID_RULE}")
                known = False
            elif first is not None:
                self.err(
                    id_node, f"{where}: duplicate output '{output_id}' (first on line {first.line})"
                )
            else:
                outputs.append(OutputSpec(id=output_id, line=_line(id_node), **options))
        return outputs, known

    def output_options(self, found: dict[str, Node], ow: str) -> dict[str, Any]:
        """Pool options of one output mapping; bad values are reported and left at default."""
        options: dict[str, Any] = {}
        if "pinned" in found:
            flag = _bool_value(found["pinned"])
            if flag is None:
                self.wrong(found["pinned"], f"{ow}: pinned must be true or false")
            else:
                options["pinned"] = flag
        if "slots" in found:
            slots = _int_value(found["slots"])
            if slots is None or not 1 <= slots <= MAX_SLOTS:
                self.wrong(found["slots"], f"{ow}: slots must be an integer from 1 to {MAX_SLOTS}")
            else:
                options["slots"] = slots
        for key in ("slot_bytes", "shm_threshold"):
            if key in found:
                size = _size_value(found[key])
                if size is None or (key == "slot_bytes" and size < 1):
                    self.wrong(found[key], f"{ow}: {key} must be a byte count like 8388608 "
                               "or '8 MiB'")
                else:
                    options[key] = size
        if "on_full" in found:
            raw = found["on_full"]
            if _is_str(raw) and raw.value in ON_FULL_POLICIES:
                options["on_full"] = raw.value
            else:
                self.wrong(raw, f"{ow}: on_full must be 'block' or 'drop'")
        if "block_timeout" in found:
            raw = found["block_timeout"]
            seconds = _number_value(raw)
            if seconds is None or seconds < 0:
                self.wrong(raw, f"{ow}: block_timeout must be a number of seconds >= 0")
            else:
                options["block_timeout"] = seconds
        return options

    def resolve(
        self, node_id: str, inp: InputSpec, source: Node, drafts: dict[str, _Draft]
    ) -> None:
        """Match a non-timer source against the other nodes' declared outputs."""
        if inp.is_timer or inp.source_node is None:
            return
        iw = f"node '{node_id}' input '{inp.name}'"
        producer = drafts.get(inp.source_node)
        if producer is None:
            hint = _suggest(inp.source_node, drafts)
            self.err(
                source,
                f"{iw}: no node '{inp.source_node}' (nodes: {', '.join(drafts) or 'none'}){hint}",
            )
            return
        ids = [out.id for out in producer.spec.outputs]
        if producer.outputs_known and inp.source_output not in ids:
            hint = _suggest(inp.source_output or "", ids, f"{inp.source_node}/")
            self.err(
                source,
                f"{iw}: no output '{inp.source_output}' on node '{inp.source_node}' "
                f"(outputs: {', '.join(ids) or 'none'}){hint}",
            )


def _line(node: Node | None) -> int:
    return 1 if node is None else node.start_mark.line + 1


def _is_str(node: Node | None) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _STR


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def _scalar_text(node: Node) -> str | None:
    """A scalar as an env/argv string: the text as written, so ``1.10`` stays ``1.10``."""
    if not isinstance(node, ScalarNode):
        return None
    if node.tag == _BOOL:
        return "true" if node.value.lower() in _TRUE_WORDS else "false"
    return "" if node.tag == _NULL else node.value


def _bool_value(node: Node) -> bool | None:
    if not isinstance(node, ScalarNode) or node.tag != _BOOL:
        return None
    return node.value.lower() in _TRUE_WORDS


def _number_value(node: Node) -> float | None:
    """An int or float scalar (not a bool or string)."""
    if not isinstance(node, ScalarNode) or node.tag not in (_INT, _TAG + "float"):
        return None
    try:
        return float(node.value)
    except ValueError:
        return None


def _size_value(node: Node) -> int | None:
    """A byte count: an int, or a string like '8 MiB' / '4KiB' / '2MB'."""
    value = _int_value(node)
    if value is not None:
        return value if value >= 0 else None
    if _is_str(node):
        try:
            return parse_size(node.value)
        except ValueError:
            return None
    return None


def _int_value(node: Node) -> int | None:
    """An int-tagged scalar's value; bools, floats and strings are not ints."""
    if not isinstance(node, ScalarNode) or node.tag != _INT:
        return None
    try:
        return SafeConstructor().construct_yaml_int(node)
    except (ValueError, yaml.YAMLError):
        return None


def _timer_period(source: str) -> float | None:
    """Period in seconds of a timer source, or None when the syntax is not a valid timer."""
    if not source.startswith(TIMER_PREFIX):
        return None
    unit, _, number = source[len(TIMER_PREFIX) :].partition("/")
    if unit == "hz" and _HZ_RE.fullmatch(number):
        hz = float(number)
        return 1.0 / hz if hz > 0 and math.isfinite(hz) else None
    if unit == "millis" and _MILLIS_RE.fullmatch(number) and int(number) > 0:
        return int(number) / 1000
    return None


def _describe(node: Node | None) -> str:
    """Name a YAML value for a message: what the user wrote, not a Python repr."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node is None or node.tag == _NULL:
        return "nothing (null)"
    kind = node.tag.removeprefix(_TAG) if node.tag.startswith(_TAG) else f"tag {node.tag}"
    return f"'{node.value}' ({kind})"


def _suggest(word: str, choices: Iterable[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(word, sorted(choices), n=1)
    return f"; did you mean '{prefix}{match[0]}'?" if match else ""


def load(path: str | Path) -> DataflowSpec:
    """Read and validate; raise SpecError with ALL problems found (one message per problem)."""
    label = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise SpecError([f"{label}:{line}: not valid UTF-8 (byte {exc.start})"]) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SpecError([f"{label}: cannot read dataflow file: {reason}"]) from None
    return loads(text, path)


def loads(text: str, path: str | Path) -> DataflowSpec:
    """Like :func:`load` on ``text``; ``path`` labels messages and anchors relative paths."""
    from pinflow.spec.check import _Checker  # imported here: spec_check imports this module

    label = str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        message = f"{label}:{_error_line(exc)}: invalid YAML: {_yaml_problem(exc)}"
        raise SpecError([message]) from None
    except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
        line = text.count("\n", 0, getattr(exc, "position", 0)) + 1
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError([f"{label}:{line}: invalid YAML: {first}"]) from None
    absolute = Path(path).resolve()
    checker = _Checker(absolute.parent)
    nodes = checker.dataflow(root)
    if checker.problems:
        ordered = sorted(dict.fromkeys(checker.problems), key=lambda problem: problem[0])
        raise SpecError([f"{label}:{line}: {text}" for line, text in ordered])
    return DataflowSpec(path=absolute, nodes=nodes, pinned_budget=checker.pinned_budget)


def _error_line(exc: yaml.MarkedYAMLError) -> int:
    mark = exc.problem_mark or exc.context_mark
    return 1 if mark is None else mark.line + 1


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "syntax error"
    if exc.context and exc.context_mark is not None:
        return f"{problem} ({exc.context} on line {exc.context_mark.line + 1})"
    return problem
