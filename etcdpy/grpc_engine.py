"""Choosing gRPC's I/O engine before gRPC starts: the poller that reads sockets itself.

Since grpcio 1.80, gRPC in Python does its socket I/O on EventEngine's own threads: a read
lands on an EventEngine thread, which hands the completion to the thread grpc.aio polls from,
which wakes the asyncio loop. Before 1.80 the polling thread read the socket itself. Every
call thus pays extra thread hand-offs, and on a machine with fewer cores than busy threads
(three members on two cores) each is a context switch. Measured on the 2-core development
machine (`scripts/bench/run --rounds 1 --duration 5`, two runs each way, alternating):
three members' sequential put p50 4.09 / 4.18 -> 3.56 / 3.49 ms, put 3,435 / 3,254 ->
3,641 / 3,523/s, range 5,706 / 5,292 -> 6,525 / 5,996/s, serializable range 5,675 / 6,293 ->
7,027 / 6,835/s, watch fan-out 30,807 / 32,357 -> 39,606 / 36,352 events/s; one member within
the runs' noise either way (put 4,529-5,705 against 4,843-5,572/s over five runs each).

gRPC reads its experiments once, when `grpc` is first imported, so this runs first thing in
the `etcdpy` command, before anything imports it; the processes a member starts (read
workers, the port front) inherit the choice through the environment. An operator's own
`GRPC_EXPERIMENTS` is left as it is: setting it (even to an empty string) keeps gRPC's
default engine.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import MutableMapping
from typing import Final

EXPERIMENTS_VAR: Final = "GRPC_EXPERIMENTS"
# The two experiments that move the client and the listener's connections onto EventEngine.
# Only names gRPC knows: an unknown one costs an error line on stderr at every start.
POLLER_EXPERIMENTS: Final = "-event_engine_listener,-event_engine_client"
# EventEngine became Python's default here; before, the poller was the default anyway.
FIRST_EVENT_ENGINE_RELEASE: Final = (1, 80)


def _grpcio_release() -> tuple[int, int] | None:
    try:
        major, minor = importlib.metadata.version("grpcio").split(".")[:2]
        return int(major), int(minor)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def choose_poller(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Ask gRPC for its polling engine through `environ`; False if left to gRPC's default.

    It is left alone when the operator set `GRPC_EXPERIMENTS`, when gRPC was imported already
    (too late to matter), or when the installed grpcio predates EventEngine's default.
    """
    if EXPERIMENTS_VAR in environ:
        return False
    if "grpc" in sys.modules and environ is os.environ:
        return False
    release = _grpcio_release()
    if release is None or release < FIRST_EVENT_ENGINE_RELEASE:
        return False
    environ[EXPERIMENTS_VAR] = POLLER_EXPERIMENTS
    return True
