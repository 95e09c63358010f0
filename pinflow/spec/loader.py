"""Load a dataflow file: :func:`load`/:func:`loads`, and the walker over the composed YAML
behind them.

The walker records ``(line, text)`` problems instead of raising, so the loader reports every
mistake at once as ``FILE:LINE: message``. What a single key may hold is checked generically
from its declaration (:mod:`pinflow.spec.model`): unknown keys with the allowed ones and a
did-you-mean, missing required keys, ranges, allowed words, ignored and rejected keys. What
spans keys or has structure of its own stays explicit code here: exactly one of
``path``/``module``, ids and reserved ids, args, env, the inputs and their sources (timers,
``node/output`` resolved against the declared outputs), the outputs list.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from pinflow.errors import SpecError
from pinflow.spec.model import (
    GATEWAY_ID,
    INPUT,
    NODE,
    OUTPUT,
    TIMER_PREFIX,
    TOP,
    DataflowSpec,
    InputSpec,
    NodeSpec,
    OutputSpec,
)
from pinflow.spec.schema import INVALID, Level, suggest
from pinflow.spec.units import ID_RULE, is_id
from pinflow.spec.yamlnode import (
    MERGE,
    describe,
    is_null,
    is_str,
    line,
    scalar_text,
)

_HZ_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_MILLIS_RE = re.compile(r"\d+")
_TIMER_FORMS = f"'{TIMER_PREFIX}hz/N' (N > 0, e.g. 30 or 0.5) or '{TIMER_PREFIX}millis/N' (N > 0)"

Items = list[tuple[str, Node, Node]]


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
        self.notes: list[tuple[int, str]] = []
        self.top: dict[str, Any] = {}

    def err(self, node: Node | None, text: str) -> None:
        self.problems.append((line(node), text))

    def wrong(self, node: Node | None, expected: str, hint: str = "") -> None:
        """Report a value of the wrong shape: what was expected, then what was written."""
        self.err(node, f"{expected}, got {describe(node)}{hint}")

    def items(self, node: MappingNode, where: str, merging: frozenset[int] = frozenset()
              ) -> Items:
        """(key, key node, value node) with ``<<`` merges applied; flags bad/duplicate keys."""
        own: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if key.tag == MERGE:
                sources = value.value if isinstance(value, SequenceNode) else [value]
                for src in sources:
                    if not isinstance(src, MappingNode) or id(src) in merging | {id(node)}:
                        self.err(key, f"{where}: '<<' must merge a mapping")
                        continue
                    for name, kn, vn in self.items(src, where, merging | {id(node)}):
                        merged.setdefault(name, (kn, vn))
            elif not is_str(key):
                self.wrong(key, f"{where}: keys must be strings")
            elif key.value in own:
                first = line(own[key.value][0])
                self.err(key, f"{where}: duplicate key '{key.value}' (first on line {first})")
            else:
                own[key.value] = (key, value)
        for name, pair in merged.items():
            own.setdefault(name, pair)
        return [(name, kn, vn) for name, (kn, vn) in own.items()]

    def fields(self, level: Level, items: Items, where: str, anchor: Node
               ) -> tuple[dict[str, Any], bool]:
        """The generic part of one mapping, from its level's declarations: the values of the
        keys that need no explicit code (by dataclass field name), and False if a key was
        unknown or rejected, since a misspelt key may hide a real one."""
        values: dict[str, Any] = {}
        clean = True
        for name, key_node, value in items:
            declared = level.keys.get(name)
            if declared is None or declared.rejected is not None:
                clean = False
                if declared is None:
                    listing = ", ".join(sorted(level.allowed))
                    hint = suggest(name, level.allowed)
                    self.err(key_node, f"{where}: unknown key '{name}' (allowed: {listing}){hint}")
                else:
                    self.err(key_node, f"{where}: {declared.rejected}")
            elif declared.ignored is not None:
                self.notes.append((line(key_node), f"{where}: '{name}' is ignored: "
                                   f"{declared.ignored}"))
            elif not declared.structured:
                parsed = declared.kind.read(value)
                if parsed is INVALID:
                    self.wrong(value, f"{where}: {name} must be {declared.must_be}",
                               declared.kind.hint(value))
                else:
                    values[declared.attr or name] = parsed
        present = {name for name, _, _ in items}
        for declared in level.keys.values():
            if declared.required and declared.name not in present:
                what = f" ({declared.expected})" if declared.expected else ""
                self.err(anchor, f"{where}: missing required key '{declared.name}'{what}")
        return values, clean

    def dataflow(self, root: Node | None) -> tuple[NodeSpec, ...]:
        if root is None:
            self.err(None, "the file is empty; expected a mapping with a 'nodes' list")
            return ()
        if not isinstance(root, MappingNode):
            self.wrong(root, "top level must be a mapping with 'nodes'")
            return ()
        items = self.items(root, "top level")
        self.top, _ = self.fields(TOP, items, "top level", root)
        listing = {name: value for name, _, value in items}.get("nodes")
        if listing is None:
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
        own_id = next((v for k, v in item.value if is_str(k) and k.value == "id"), None)
        items = self.items(item, f"node '{own_id.value}'" if is_str(own_id) else where)
        found = {name: (kn, vn) for name, kn, vn in items}
        node_id: str | None = None
        if "id" in found and not is_str(found["id"][1]):
            self.wrong(found["id"][1], f"{where}: 'id' must be a string")
        elif "id" in found:
            node_id = found["id"][1].value
            where = f"node '{node_id}'"
            if not is_id(node_id):
                self.err(found["id"][1], f"{where}: invalid id; {ID_RULE}")
            elif node_id == GATEWAY_ID:
                self.err(found["id"][1], f"{where}: the id '{GATEWAY_ID}' is reserved for "
                         "pinflow's cross-machine gateway")
        options, keys_clean = self.fields(NODE, items, where, item)
        options.setdefault("memory_limit", self.top.get("memory_limit"))
        path = self.program(item, found, where)
        args = self.args(found["args"][1], where) if "args" in found else ()
        env = self.env(found["env"][1], where) if "env" in found else {}
        inputs: list[tuple[InputSpec, Node]] = []
        if "inputs" in found:
            inputs = self.inputs(found["inputs"][1], where)
        outputs, outputs_known = [], True
        if "outputs" in found:
            outputs, outputs_known = self.outputs(found["outputs"][1], where)
        if node_id is None:
            return None
        spec = NodeSpec(
            id=node_id,
            path=path,
            args=args,
            env=env,
            inputs=tuple(inp for inp, _ in inputs),
            outputs=tuple(outputs),
            line=line(item),
            **options,
        )
        return _Draft(spec, outputs_known and keys_clean, [source for _, source in inputs])

    def program(self, item: MappingNode, found: dict[str, tuple[Node, Node]], where: str
                ) -> Path | None:
        """Check that exactly one of ``path``/``module`` says what to run, and that a path
        exists (the module name itself is checked from its declaration)."""
        if "path" in found and "module" in found:
            self.err(found["module"][0], f"{where}: has both 'path' and 'module'; give one")
        elif "path" not in found and "module" not in found:
            self.err(item, f"{where}: needs 'path' (a python file) or 'module' (a module name)")
        if "path" not in found:
            return None
        value = found["path"][1]
        if not is_str(value) or not value.value:
            self.wrong(value, f"{where}: 'path' must be a file name")
            return None
        path = (self.base_dir / value.value).resolve()
        if not path.is_file():
            self.err(value, f"{where}: path '{value.value}' does not exist (looked for {path})")
        return path

    def args(self, value: Node, where: str) -> tuple[str, ...]:
        if isinstance(value, SequenceNode):
            words = []
            for item in value.value:
                text = scalar_text(item)
                if text is None:
                    self.wrong(item, f"{where}: 'args' items must be scalars")
                else:
                    words.append(text)
            return tuple(words)
        text = scalar_text(value)
        if text is None:
            self.wrong(value, f"{where}: 'args' must be a string or a list")
            return ()
        try:
            return tuple(shlex.split(text))
        except ValueError as exc:
            self.err(value, f"{where}: cannot split 'args' ({exc}); check the quotes")
            return ()

    def env(self, value: Node, where: str) -> dict[str, str]:
        if is_null(value):
            return {}
        if not isinstance(value, MappingNode):
            self.wrong(value, f"{where}: 'env' must be a mapping of NAME: value")
            return {}
        env: dict[str, str] = {}
        for name, key_node, item in self.items(value, f"{where} env"):
            text = scalar_text(item)
            if not name or "=" in name or "\0" in name:
                self.err(key_node, f"{where}: env name '{name}' is not a valid variable name")
            elif text is None:
                self.wrong(item, f"{where}: env '{name}' must be a string, number or bool")
            else:
                env[name] = text
        return env

    def inputs(self, value: Node, where: str) -> list[tuple[InputSpec, Node]]:
        if is_null(value):
            return []
        if not isinstance(value, MappingNode):
            self.wrong(value, f"{where}: 'inputs' must be a mapping of input name to source")
            return []
        inputs = []
        for name, key_node, item in self.items(value, f"{where} inputs"):
            iw = f"{where} input '{name}'"
            if not is_id(name):
                self.err(key_node, f"{iw}: invalid input name; {ID_RULE}")
            parsed = self.input(name, key_node, item, iw)
            if parsed is not None:
                inputs.append(parsed)
        return inputs

    def input(self, name: str, key_node: Node, value: Node, iw: str
              ) -> tuple[InputSpec, Node] | None:
        """One input, short form (``name: source``) or long form (a mapping)."""
        source, options = value, {}
        if isinstance(value, MappingNode):
            items = self.items(value, iw)
            options, _ = self.fields(INPUT, items, iw, key_node)
            found = {key: item for key, _, item in items}
            if "source" not in found:
                return None
            source = found["source"]
        if not is_str(source):
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
            if len(parts) != 2 or not all(is_id(part) for part in parts):
                self.err(source, f"{iw}: invalid source '{text}'; "
                         f"expected 'node/output' or a timer: {_TIMER_FORMS}")
                return None
            node_id, output_id = parts
        spec = InputSpec(name=name, source=text, source_node=node_id, source_output=output_id,
                         timer_period_s=period, line=line(key_node), **options)
        return spec, source

    def outputs(self, value: Node, where: str) -> tuple[list[OutputSpec], bool]:
        """Declared outputs, and whether the list is trustworthy enough to check sources by."""
        if is_null(value):
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
                if is_str(id_node):
                    ow = f"{where} output '{id_node.value}'"
                options, _ = self.fields(OUTPUT, items, ow, item)
                if id_node is None:
                    known = False
                    continue
            if not is_str(id_node):
                self.wrong(id_node, f"{ow}: must be an output id or a mapping with 'id'")
                known = False
                continue
            output_id = id_node.value
            first = next((out for out in outputs if out.id == output_id), None)
            if not is_id(output_id):
                self.err(id_node, f"{where}: invalid output id '{output_id}'; {ID_RULE}")
                known = False
            elif first is not None:
                self.err(id_node,
                         f"{where}: duplicate output '{output_id}' (first on line {first.line})")
            else:
                outputs.append(OutputSpec(id=output_id, line=line(id_node), **options))
        return outputs, known

    def resolve(self, node_id: str, inp: InputSpec, source: Node, drafts: dict[str, _Draft]
                ) -> None:
        """Match a non-timer source against the other nodes' declared outputs."""
        if inp.is_timer or inp.source_node is None:
            return
        iw = f"node '{node_id}' input '{inp.name}'"
        producer = drafts.get(inp.source_node)
        if producer is None:
            hint = suggest(inp.source_node, drafts)
            self.err(source, f"{iw}: no node '{inp.source_node}' "
                     f"(nodes: {', '.join(drafts) or 'none'}){hint}")
            return
        ids = [out.id for out in producer.spec.outputs]
        if producer.outputs_known and inp.source_output not in ids:
            hint = suggest(inp.source_output or "", ids, f"{inp.source_node}/")
            self.err(source, f"{iw}: no output '{inp.source_output}' on node "
                     f"'{inp.source_node}' (outputs: {', '.join(ids) or 'none'}){hint}")


def _timer_period(source: str) -> float | None:
    """Period in seconds of a timer source, or None when the syntax is not a valid timer."""
    if not source.startswith(TIMER_PREFIX):
        return None
    unit, _, number = source[len(TIMER_PREFIX):].partition("/")
    if unit == "hz" and _HZ_RE.fullmatch(number):
        hz = float(number)
        return 1.0 / hz if hz > 0 and math.isfinite(hz) else None
    if unit == "millis" and _MILLIS_RE.fullmatch(number) and int(number) > 0:
        return int(number) / 1000
    return None


def load(path: str | Path) -> DataflowSpec:
    """Read and validate; raise SpecError with ALL problems found (one message per problem)."""
    label = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        at = exc.object[: exc.start].count(b"\n") + 1
        raise SpecError([f"{label}:{at}: not valid UTF-8 (byte {exc.start})"]) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SpecError([f"{label}: cannot read dataflow file: {reason}"]) from None
    return loads(text, path)


def loads(text: str, path: str | Path) -> DataflowSpec:
    """Like :func:`load` on ``text``; ``path`` labels messages and anchors relative paths."""
    label = str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        message = f"{label}:{_error_line(exc)}: invalid YAML: {_yaml_problem(exc)}"
        raise SpecError([message]) from None
    except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
        at = text.count("\n", 0, getattr(exc, "position", 0)) + 1
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError([f"{label}:{at}: invalid YAML: {first}"]) from None
    absolute = Path(path).resolve()
    checker = _Checker(absolute.parent)
    nodes = checker.dataflow(root)
    if checker.problems:
        raise SpecError(_by_line(label, checker.problems))
    return DataflowSpec(path=absolute, nodes=nodes, notes=tuple(_by_line(label, checker.notes)),
                        **checker.top)


def _by_line(label: str, found: list[tuple[int, str]]) -> list[str]:
    """``FILE:LINE: text``, sorted by line, each once."""
    ordered = sorted(dict.fromkeys(found), key=lambda item: item[0])
    return [f"{label}:{at}: {text}" for at, text in ordered]


def _error_line(exc: yaml.MarkedYAMLError) -> int:
    mark = exc.problem_mark or exc.context_mark
    return 1 if mark is None else mark.line + 1


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "syntax error"
    if exc.context and exc.context_mark is not None:
        return f"{problem} ({exc.context} on line {exc.context_mark.line + 1})"
    return problem
