"""The event loop every etcdpy process runs on: uvloop's, unless the operator asks for asyncio's.

A member's event loop carries every client call (grpc.aio wakes it for each), the shared
port's relay (a read and a write per chunk each way) and the peer streams. uvloop runs the
same asyncio programs on libuv, with the loop's scheduling and socket transports in C.
Measured on the 2-core development machine (`scripts/bench/run --rounds 1 --duration 5`,
two runs each way, alternating with `ETCDPY_EVENT_LOOP=asyncio`): one member's range
6,789 / 6,748 -> 7,643 / 8,192/s, serializable range 6,714 / 7,348 -> 7,974 / 8,159/s, put
4,687 / 4,737 -> 4,945 / 5,475/s, sequential put p50 1.40 / 1.68 -> 1.22 / 1.32 ms; three
members, watch fan-out and lease keep-alives within the runs' noise either way.

`ETCDPY_EVENT_LOOP=asyncio` keeps the standard library's loop (for comparing); so does a
platform without uvloop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

CHOICE_VAR: Final = "ETCDPY_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's default loop."""
    if os.environ.get(CHOICE_VAR, "uvloop") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # a platform uvloop has no wheel for (it is a dependency elsewhere)
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
