"""v3lockpb.Lock: etcd's server-side distributed lock, built on a lease.

A lock here is *a lease plus a key*, not a mutual-exclusion guarantee. Lock(name, lease)
creates `<name>/<lease hex>` attached to the lease and returns once no key under `<name>/` is
older (by create revision); the holder keeps the lock only while the lease lives. A holder
that pauses (GC, SIGSTOP, swap) or is partitioned past the lease TTL loses the key to expiry
while still believing it holds the lock, and the next waiter proceeds: two processes can act
"under the lock" at once. The defence is a *fencing token*: the key's create revision (a Range
of the returned key gives it) rises with every new holder, so a resource that remembers the
highest token it has seen can refuse the stale holder (for etcd keys, guard each write with a
Txn comparing the lock key's create revision: it fails once the lock has been lost).

Unlock(key) just deletes the key. A client that cancels a waiting Lock has its key deleted,
so it does not later hold a lock nobody waits on.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.v3lockpb import v3lock_pb2 as lockpb
from etcdpy._pb.v3lockpb import v3lock_pb2_grpc as lock_grpc
from etcdpy.server import errors
from etcdpy.server.api.recipes import (
    RecipeError,
    Recipes,
    created_is,
    first_created,
    recipe_errors,
    waiter_key,
)
from etcdpy.server.etcdserver import EtcdServer


def session_expired() -> RecipeError:
    return RecipeError("mutex: session is expired")


class LockServicer(lock_grpc.LockServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._recipes = Recipes(server)

    async def Lock(  # noqa: N802
        self, request: lockpb.LockRequest, context: grpc.aio.ServicerContext
    ) -> lockpb.LockResponse:
        async with recipe_errors(context):
            return await self._lock(request)

    async def _lock(self, request: lockpb.LockRequest) -> lockpb.LockResponse:
        recipes = self._recipes
        prefix = request.name + b"/"
        lease = await recipes.session(request.lease)
        key = waiter_key(prefix, lease)
        # Join the queue (or find our key from an earlier Lock on the same lease) and read the
        # current holder in the same revision, so an uncontended lock costs one request.
        owner = pb.RequestOp(request_range=first_created(prefix))
        resp = await recipes.txn(pb.TxnRequest(
            compare=[created_is(key, 0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, lease=lease)), owner],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key)), owner],
        ))
        my_rev = resp.header.revision
        if not resp.succeeded:
            my_rev = resp.responses[0].response_range.kvs[0].create_revision
        holder = resp.responses[1].response_range.kvs
        if not holder or holder[0].create_revision == my_rev:
            return lockpb.LockResponse(header=resp.header, key=key)
        try:
            await recipes.wait_deletes(prefix, my_rev - 1)
            mine = await recipes.range(pb.RangeRequest(key=key))
        except asyncio.CancelledError:
            recipes.cleanup(recipes.delete(key))
            raise
        except Exception:
            # The wait's own error is the answer; a failed delete leaves the key to the lease.
            with contextlib.suppress(errors.EtcdError):
                await recipes.delete(key)
            raise
        if not mine.kvs:
            # The lease expired (or someone deleted the key) while we waited.
            raise session_expired()
        return lockpb.LockResponse(header=mine.header, key=key)

    async def Unlock(  # noqa: N802
        self, request: lockpb.UnlockRequest, context: grpc.aio.ServicerContext
    ) -> lockpb.UnlockResponse:
        async with recipe_errors(context):
            resp = await self._recipes.delete(request.key)
            return lockpb.UnlockResponse(header=resp.header)
