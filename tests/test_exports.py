"""The front door: what `import pinflow` offers is deliberate."""

import pinflow


def test_public_names_are_pinned():
    assert pinflow.__all__ == [
        "ERROR", "INPUT", "INPUT_CLOSED", "STOP", "ClosedError", "CudaError",
        "CudaUnavailable", "DescriptorError", "Event", "LaunchError", "Node",
        "NodeEnvironmentError", "PayloadError", "PinflowError", "PinnedBudgetExceeded",
        "PoolExhausted", "SpecError", "TransportError", "UnknownOutputError", "__version__",
    ]
    for name in pinflow.__all__:
        assert hasattr(pinflow, name), name
