"""The node API (``Node``, events) and pinflow's built-in nodes."""
