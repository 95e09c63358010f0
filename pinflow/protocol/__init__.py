"""What processes say to each other (layer 2): the key expressions of a run and of the wire,
and one typed definition, with one codec, of every message that crosses a process boundary."""
