"""pinflow's data plane: zenoh sessions, payload codec, slot pools, channels, device copies.

Nothing here imports the node API or the CLI; data flows spec -> launcher -> node -> transport.
"""
