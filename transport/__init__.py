"""pinflow's data plane: zenoh sessions on loopback, key layout, payload codec and channels.

Nothing here imports the node API or the CLI; data flows spec -> launcher -> node -> transport.
"""
