"""Load a dataflow file: :func:`load`/:func:`loads`, and the walker over the composed YAML
behind them.

The walker records ``(line, text)`` problems instead of raising, so the loader reports every
mistake at once as ``FILE:LINE: message``. What a single key may hold is checked generically
from its declaration (:mod:`pinflow.spec.model`): unknown keys with the allowed ones and a
did-you-mean, missing required keys, ranges, allowed words, ignored and rejected keys. What
spans keys or has structure of its own stays explicit code here: exactly one of
``path``/``module`` and what ``path`` names (a file, a program on PATH, ``dynamic``), ids and
reserved ids, args, env (the top level's under the node's), ``build``, dora's ``deploy``, the
inputs and their sources (timers, ``node/output`` resolved against the declared outputs), the
outputs list.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from pinflow.errors import SpecError
from pinflow.spec.model import (
    BUILTIN_SOURCES,
    DYNAMIC_PATH,
    GATEWAY_ID,
    INPUT,
    NODE,
    OUTPUT,
    TIMER_PREFIXES,
    TOP,
    DataflowSpec,
    InputSpec,
    NodeSpec,
    OutputSpec,
)
from pinflow.spec.schema import INVALID, HostName, Level, QueuePolicy, suggest
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
_WHOLE_RE = re.compile(r"\d+")
_TIMER_UNITS = {"secs": 1.0, "millis": 1e-3, "micros": 1e-6, "nanos": 1e-9}
_TIMER_FORMS = ("'pinflow/timer/UNIT/N' or 'dora/timer/UNIT/N' with UNIT 'hz' (N > 0, e.g. 30 "
                "or 0.5) or 'secs', 'millis', 'micros', 'nanos' (N a whole number > 0)")
_BACKPRESSURE_MIN = 100

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
        self.unbuilt: list[tuple[int, str]] = []
        self.top: dict[str, Any] = {}
        self.top_machine: str | None = None

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
                    listing = ", ".join(sorted(level.listed))
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
        found = {name: (kn, vn) for name, kn, vn in items}
        if "env" in found:
            self.top["env"] = self.env(found["env"][1], "top level")
        self.top_machine = self.deploy(found, "top level")
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
        build = self.build(found["build"][1], where) if "build" in found else None
        path, executable, dynamic = self.program(item, found, where, build is not None)
        self.placement(options, found, where, dynamic)
        args = self.args(found["args"][1], where) if "args" in found else ()
        env = {**self.top.get("env", {}),
               **(self.env(found["env"][1], where) if "env" in found else {})}
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
            build=build,
            dynamic=dynamic,
            executable=executable,
            args=args,
            env=env,
            inputs=tuple(inp for inp, _ in inputs),
            outputs=tuple(outputs),
            line=line(item),
            **options,
        )
        return _Draft(spec, outputs_known and keys_clean, [source for _, source in inputs])

    def program(self, item: MappingNode, found: dict[str, tuple[Node, Node]], where: str,
                has_build: bool) -> tuple[Path | None, bool, bool]:
        """Check that exactly one of ``path``/``module`` says what to run (the module name
        itself is checked from its declaration), and find what ``path`` names: (the file or
        program, whether it is run itself rather than by the interpreter, whether the node is
        dynamic). A path that does not exist is an error, unless the node has a ``build:``
        that may make it: then it is noted as unbuilt."""
        if "path" in found and "module" in found:
            self.err(found["module"][0], f"{where}: has both 'path' and 'module'; give one")
        elif "path" not in found and "module" not in found:
            self.err(item, f"{where}: needs 'path' (a python file) or 'module' (a module name)")
        if "path" not in found:
            return None, False, False
        value = found["path"][1]
        if not is_str(value) or not value.value:
            self.wrong(value, f"{where}: 'path' must be a file name")
            return None, False, False
        text = value.value
        if text == DYNAMIC_PATH:
            return None, False, True
        if text == "shell":
            self.err(value, f"{where}: dora's `path: shell` is not supported by pinflow: put "
                     "the command in a script and name it in `path:`")
            return None, False, False
        if text.startswith(("http://", "https://")):
            self.err(value, f"{where}: pinflow does not download nodes: fetch '{text}' in a "
                     "`build:` step (or yourself) and name the file in `path:`")
            return None, False, False
        path = (self.base_dir / text).resolve()
        if path.is_file():
            runs_itself = path.suffix != ".py" and os.access(path, os.X_OK)
            return path, runs_itself, False
        program = _find_program(text)
        if program is not None:
            return Path(program), True, False
        looked = f"looked for {path}"
        if os.sep not in text:
            looked += f" and for a program '{text}' on PATH and in {_interpreter_bin()}"
        if has_build:
            self.unbuilt.append((line(value), (
                f"{where}: path '{text}' does not exist yet ({looked}); its `build:` step "
                "should make it")))
        else:
            self.err(value, f"{where}: path '{text}' does not exist ({looked})")
        return None, False, False

    def build(self, value: Node, where: str) -> str | None:
        """A node's ``build:``: a string of commands, one per line, each split like a shell
        would split it (checked here, so a quote error shows before anything runs)."""
        if is_null(value):
            return None
        if not is_str(value):
            self.wrong(value, f"{where}: 'build' must be a string of commands, one per line")
            return None
        for number, command in enumerate(value.value.splitlines(), 1):
            try:
                shlex.split(command)
            except ValueError as exc:
                self.err(value, f"{where}: cannot split line {number} of 'build' ({exc}); "
                         "check the quotes")
        return value.value

    def deploy(self, found: dict[str, tuple[Node, Node]], where: str) -> str | None:
        """dora's placement (``deploy``, or 0.3's ``_unstable_deploy``): its machine."""
        present = [name for name in ("deploy", "_unstable_deploy") if name in found]
        if len(present) > 1:
            self.err(found[present[1]][0], f"{where}: has both 'deploy' and "
                     "'_unstable_deploy'; give one")
        if not present:
            return None
        value = found[present[0]][1]
        if is_null(value):
            return None
        if not isinstance(value, MappingNode):
            self.wrong(value, f"{where}: '{present[0]}' must be a mapping like "
                       "{machine: NAME}")
            return None
        machine = None
        for name, key_node, item in self.items(value, f"{where} {present[0]}"):
            if name == "machine":
                machine = HostName().read(item)
                if machine is INVALID:
                    self.wrong(item, f"{where}: {present[0]} machine must be "
                               f"{HostName.expected}")
                    machine = None
            elif name == "distribute":
                self.notes.append((line(key_node), f"{where}: '{present[0]}: distribute' is "
                                   "ignored: pinflow runs nodes from files each machine has"))
            elif name == "working_dir":
                self.err(key_node, f"{where}: '{present[0]}: working_dir' is not supported by "
                         "pinflow: nodes run in the YAML's folder")
            elif name == "labels":
                self.err(key_node, f"{where}: '{present[0]}: labels' is not supported by "
                         "pinflow: name the host with `machine`")
            else:
                self.err(key_node, f"{where}: unknown key '{name}' in '{present[0]}' "
                         "(pinflow reads: machine, distribute)")
        return machine

    def placement(self, options: dict[str, Any], found: dict[str, tuple[Node, Node]],
                  where: str, dynamic: bool) -> None:
        """The node's ``machine``: its own, else its dora ``deploy``'s, else the top level's
        ``deploy``; a dynamic node runs on the launcher's host."""
        deployed = self.deploy(found, where)
        own = options.get("machine")
        if own is not None and deployed is not None and own != deployed:
            self.err(found["machine"][1], f"{where}: 'machine' ({own}) and deploy's machine "
                     f"({deployed}) differ; give one")
        machine = own or deployed or (None if dynamic else self.top_machine)
        if machine is not None:
            options["machine"] = machine
        if dynamic and machine is not None:
            self.err(found["path"][1], f"{where}: a dynamic node joins on the launcher's host; "
                     f"remove its machine ({machine})")

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
        if options.get("queue_policy") == QueuePolicy.BACKPRESSURE:
            options["queue_size"] = max(10 * options.get("queue_size", InputSpec.queue_size),
                                        _BACKPRESSURE_MIN)
        if text.startswith("dora/") and not text.startswith("dora/timer/"):
            self.err(source, f"{iw}: dora's built-in source '{text}' is not supported by "
                     f"pinflow (logs are in the run's output and log files); timers are "
                     f"{_TIMER_FORMS}")
            return None
        if text.startswith(BUILTIN_SOURCES):
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
    prefix = next((p for p in TIMER_PREFIXES if source.startswith(p)), None)
    if prefix is None:
        return None
    unit, _, number = source[len(prefix):].partition("/")
    if unit == "hz" and _HZ_RE.fullmatch(number):
        hz = float(number)
        return 1.0 / hz if hz > 0 and math.isfinite(hz) else None
    if unit in _TIMER_UNITS and _WHOLE_RE.fullmatch(number) and int(number) > 0:
        return int(number) * _TIMER_UNITS[unit]
    return None


def _interpreter_bin() -> str:
    """The folder of the interpreter pinflow runs on: a virtual environment's console
    scripts are there even when it is not on PATH (``.venv/bin/pinflow run ...``)."""
    return os.path.dirname(sys.executable)


def _find_program(name: str) -> str | None:
    """``name`` looked up like a shell would, in the interpreter's folder first, then PATH
    (only bare names: a path with a folder names a file relative to the YAML)."""
    if os.sep in name:
        return None
    search = os.pathsep.join([_interpreter_bin(), os.environ.get("PATH", os.defpath)])
    return shutil.which(name, path=search)


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
                        unbuilt=tuple(_by_line(label, checker.unbuilt)), **checker.top)


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
