"""The commands around a run (layer 6): ``top``/``stats``, ``doctor`` and its GPU self-test,
and the benchmark with its baselines and network namespaces."""
