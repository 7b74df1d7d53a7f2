"""gctuning: long-lived objects leave the collector's work, request garbage is still freed.

Each probe runs in a fresh interpreter: freezing objects in the test process would keep them
for the rest of the session.
"""

from __future__ import annotations

import subprocess
import sys

# A "startup" of 100,000 long-lived container objects, then 300,000 short-lived ones: each a
# small reference cycle (the kind a request leaves when a future and its callback point at
# each other) that stays alive while the next 5,000 are made, as requests in flight do, so
# that young collections promote it before it dies. Prints how many full collections the
# churn caused and how many objects the freeze exempted.
PROBE = """
import collections, gc, sys, weakref
from etcdpy import gctuning
tuned = sys.argv[1] == "tuned"
if tuned:
    gctuning.tune()
startup = [[i] for i in range(100_000)]
frozen = gctuning.freeze_after_startup() if tuned else 0
full_before = gc.get_stats()[2]["collections"]

class Node:
    pass

in_flight = collections.deque(maxlen=5_000)
for _ in range(300_000):
    a, b = Node(), Node()
    a.other, b.other = b, a
    in_flight.append(a)
in_flight.clear()
full = gc.get_stats()[2]["collections"] - full_before

# A cycle made after the freeze is still collected.
freed = []
x, y = Node(), Node()
x.other, y.other = y, x
weakref.finalize(x, freed.append, True)
del x, y
gc.collect()
print(full, frozen, bool(freed), gc.isenabled())
"""


def _probe(mode: str) -> tuple[int, int, bool, bool]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, timeout=120)
    full, frozen, freed, enabled = out.stdout.split()
    return int(full), int(frozen), freed == "True", enabled == "True"


def test_startup_objects_are_frozen_and_full_collections_become_rare() -> None:
    default_full, _, default_freed, _ = _probe("plain")
    tuned_full, frozen, tuned_freed, enabled = _probe("tuned")
    assert default_freed and tuned_freed, "a reference cycle must still be collected"
    assert enabled, "tuning must leave the collector on"
    assert frozen >= 100_000, f"only {frozen} objects frozen; the startup list alone has 100,000"
    # 600,000 allocations: CPython's thresholds (700, 10, 10) make several full collections
    # of them; the server's thresholds at most one.
    assert default_full >= 3, f"the probe should provoke full collections by default ({default_full})"
    assert tuned_full <= 1, f"{tuned_full} full collections with the server's thresholds"
