"""The commands around a run (layer 6): ``top``/``stats``, ``doctor`` and its GPU self-test,
and the benchmark (``bench/``) with its baselines, network namespaces and the daemon it starts
as a child process. Nothing below the CLI imports them, the tests aside."""
