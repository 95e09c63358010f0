"""Running dataflows (layer 5): the launcher, node supervision, the daemon and cluster of a
multi-host run, the wire gateway, and the bottleneck diagnosis."""
