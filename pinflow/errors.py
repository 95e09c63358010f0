"""Exceptions raised by pinflow, split by whose fault a failure is.

    PinflowError
    ├── SpecError           the dataflow YAML is wrong (carries file:line messages)
    ├── SettingError        a PINFLOW_* environment variable has a value pinflow cannot use
    ├── NodeEnvironmentError a node script was started outside a dataflow
    ├── StreamEnded         node.drain() after the event stream ended (also a RuntimeError)
    ├── BuildError          a node's build: command failed
    ├── LaunchError         a node could not be started
    ├── UnknownOutputError  send_output named an output the node does not declare
    ├── WireError           a wire endpoint is malformed or a peer host cannot be reached
    ├── NetnsError          a network-namespace pair could not be made (tests, bench)
    └── TransportError      the data plane failed
        ├── PayloadError    data that cannot be sent (type, size)
        ├── DescriptorError a received message is malformed or hostile
        ├── PoolExhausted   no free slot within the output's timeout
        ├── PinnedBudgetExceeded  pinned pools would pass the machine-wide budget
        ├── CudaError       a CUDA runtime call failed (call, error name, code)
        └── ClosedError     you used something after closing it
    CudaUnavailable         CUDA was explicitly asked for but cannot be used here (reason)
"""

from __future__ import annotations


class PinflowError(Exception):
    """Base of every error pinflow raises on purpose."""


class SpecError(PinflowError):
    """The dataflow file is invalid; ``messages`` has one ``file:line: text`` per problem."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


class SettingError(PinflowError, ValueError):
    """A ``PINFLOW_*`` environment variable holds a value pinflow cannot use; the message
    names the variable and the form it wants."""


class NodeEnvironmentError(PinflowError):
    """``Node()`` was created in a process that the launcher did not start."""


class StreamEnded(PinflowError, RuntimeError):
    """``node.drain()`` after the event stream ended (a RuntimeError, as dora raises)."""


class BuildError(PinflowError):
    """A node's ``build:`` command failed (``pinflow build``, ``pinflow run --build``)."""


class LaunchError(PinflowError):
    """A node process could not be started (missing interpreter, file, permissions)."""


class UnknownOutputError(PinflowError, ValueError):
    """``send_output`` named an output that the node does not declare in the YAML."""


class WireError(PinflowError):
    """A wire endpoint is malformed or a peer host cannot be reached."""


class NetnsError(PinflowError):
    """A namespace pair could not be created (or removed)."""


class TransportError(PinflowError):
    """Something in the data plane failed; subclasses say what."""


class PayloadError(TransportError, TypeError):
    """The data given to ``send_output`` cannot be sent (unsupported type or layout)."""


class DescriptorError(TransportError):
    """A received message is malformed, stale or points outside what it may touch."""


class PoolExhausted(TransportError):
    """Every slot of an output's pool is still held by consumers after the output's timeout."""


class ClosedError(TransportError):
    """The node or channel was closed by this process and cannot be used any more."""


class PinnedBudgetExceeded(TransportError):
    """Creating a pinned pool would pass the machine-wide pinned-memory budget."""


class CudaError(TransportError):
    """A CUDA runtime call returned an error; ``call``, ``name`` and ``code`` say which."""

    def __init__(self, call: str, name: str, code: int, detail: str = "") -> None:
        self.call, self.name, self.code = call, name, code
        super().__init__(f"{call} failed: {name} ({code}){': ' + detail if detail else ''}")


class CudaUnavailable(PinflowError):
    """CUDA was explicitly requested (device delivery, ``to_torch('cuda')``) but cannot be
    used on this machine; the message says why (no driver, no device, no cuda-python)."""


class SlotNotLent(DescriptorError):
    """A slot descriptor reached a consumer the producer did not lend the slot to (it took
    that consumer for unreachable, after a lost link): the slot must not be read, as the
    producer writes it again as soon as those it lent it to are done."""
