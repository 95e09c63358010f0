"""``pinflow bench``: the 1080p RGBA @ 30 Hz flow over several transports, side by side.

Latency is frame captured (producer clock, before rendering) -> usable on the target device
(device tensor whose copy completed; host array on CPU). Without CUDA, the report's first
line says so and the CPU path is measured. The arms are listed in :mod:`.arms`.

One module per job: :mod:`.arms` (the arms, one table), :mod:`.flows` (the dataflow each
pinflow arm runs), :mod:`.runner` (start an arm's processes, wait, collect), :mod:`.sampler`
(their CPU, memory and shared memory), :mod:`.measure` (one arm's figures), :mod:`.report`
(the whole run as the ``--json`` report), :mod:`.table` (that report as text), :mod:`.soak`
(``--duration``), :mod:`.plot` (``--plot``).

This file imports nothing: the CLI reads :mod:`.arms` for its ``--arms`` choices on every
command, ``pinflow validate`` included.
"""
