"""Takes 0.2 s per message, so its queue of 2 overflows; reports what it counted."""

import time

from results import save

from pinflow import Node

node = Node()
handled = 0
for event in node:
    if event["type"] == "INPUT":
        handled += 1
        time.sleep(0.2)
node.close()  # the last drop line is written when the node closes
save("slow", {"handled": handled, "dropped": node.stats()["inputs"]["burst"]["dropped"]})
