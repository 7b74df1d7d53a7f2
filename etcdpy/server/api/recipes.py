"""What the Election and Lock services share: clientv3's concurrency recipe, run in-process.

etcd implements v3election and v3lock by running its own client library against itself
(`clientv3/concurrency`): a session lease, a key `<name>/<lease id in hex>` created by a Txn
on create revision 0, and waiting for every key under `<name>/` with an older create revision
to be deleted. Here the same steps call the member's facade and watch hub directly, so the
keys, revisions and headers a client sees are the ones etcd's recipe produces.

Because etcd's servicers return the embedded client's errors as plain Go errors, every failure
reaches the client as gRPC UNKNOWN with the error's text (`etcdserver: requested lease not
found`, `election: not leader`...): `recipe_errors` does that mapping, in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.mvccpb import kv_pb2 as mvccpb
from etcdpy.server import errors
from etcdpy.server.api import validate
from etcdpy.server.api.interceptor import GRPC_OVERHEAD_BYTES
from etcdpy.server.api.kv import KVWrites
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.watch import SerializedEvents, WatchStream

# concurrency.NewSession grants a lease of this TTL when the request names none (lease 0).
DEFAULT_SESSION_TTL_S = 60
# Cleanups (deleting the key of a waiter whose client went away) still running; each is one
# proposal bounded by the request timeout, so the set drains; the cap bounds a burst.
MAX_CLEANUPS = 1024

Compare = pb.Compare
SortOrder = pb.RangeRequest.SortOrder
SortTarget = pb.RangeRequest.SortTarget
DELETE = mvccpb.Event.EventType.DELETE


class RecipeError(errors.EtcdError):
    """A failure of the recipe itself; etcd sends it as gRPC UNKNOWN with this text."""

    code = "UNKNOWN"


def lost_watcher() -> RecipeError:
    return RecipeError("lost watcher waiting for delete")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with `prefix` (clientv3's WithPrefix)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key: the prefix was empty or all 0xff


def waiter_key(prefix: bytes, lease: int) -> bytes:
    """`<prefix><lease id in lowercase hex>`, Go's `%x` (a negative id keeps its sign)."""
    return prefix + (f"{lease:x}").encode()


def first_created(prefix: bytes) -> pb.RangeRequest:
    """The key under `prefix` with the oldest create revision (clientv3's WithFirstCreate)."""
    return pb.RangeRequest(key=prefix, range_end=prefix_end(prefix), limit=1,
                           sort_order=SortOrder.ASCEND, sort_target=SortTarget.CREATE)


def created_is(key: bytes, revision: int) -> pb.Compare:
    return Compare(result=Compare.EQUAL, target=Compare.CREATE, key=key, create_revision=revision)


@contextlib.asynccontextmanager
async def recipe_errors(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    """Any EtcdError inside the block ends the RPC as etcd's servicers end it: UNKNOWN + text."""
    try:
        yield
    except errors.EtcdError as error:
        await context.abort(grpc.StatusCode.UNKNOWN, error.message)


class Recipes:
    """The steps of clientv3/concurrency, on one member."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server
        self._writes = KVWrites(server)
        self._cleanups: set[asyncio.Task[None]] = set()

    # --- one request each, headers filled as the embedded client would receive them ---

    async def range(self, request: pb.RangeRequest) -> pb.RangeResponse:
        validate.check_range(request)
        resp = await self.server.range(request)
        self.server.fill_header(resp.header)
        return resp

    async def txn(self, request: pb.TxnRequest) -> pb.TxnResponse:
        return await self._writes.txn(request)

    async def delete(self, key: bytes) -> pb.DeleteRangeResponse:
        return await self._writes.delete_range(pb.DeleteRangeRequest(key=key))

    async def session(self, lease: int) -> int:
        """The lease a request runs under: its own, or a fresh 60 s one when it names none.

        etcd's session would also start (and at once drop) keep-alives; the lease is left to
        the client to keep alive, so a granted one simply expires after its TTL.
        """
        if lease != 0:
            return lease
        resp = await self.server.lease_grant(pb.LeaseGrantRequest(TTL=DEFAULT_SESSION_TTL_S))
        return resp.ID

    # --- waiting ---

    @contextlib.asynccontextmanager
    async def watching(self, key: bytes, range_end: bytes, start_revision: int
                       ) -> AsyncIterator[AsyncIterator[pb.WatchResponse]]:
        """A watch on this member's hub, its created response already consumed."""
        hub = self.server.watch_hub
        stream = hub.new_stream(self.server.max_request_bytes + GRPC_OVERHEAD_BYTES)
        responses = self._responses(stream)
        try:
            stream.create(pb.WatchCreateRequest(key=key, range_end=range_end,
                                                start_revision=start_revision))
            created = await self._next(stream)
            if created.canceled:
                raise lost_watcher()
            yield responses
        finally:
            # Close the generator here, not whenever it is collected, then drop the watcher.
            await responses.aclose()
            stream.close()

    async def _next(self, stream: WatchStream) -> pb.WatchResponse:
        taken = await stream.queue.get()
        self.server.watch_hub.stream_drained()
        resp = taken.message() if isinstance(taken, SerializedEvents) else taken
        self.server.fill_header(resp.header, keep_revision=True)
        return resp

    async def _responses(self, stream: WatchStream) -> AsyncGenerator[pb.WatchResponse, None]:
        while True:
            resp = await self._next(stream)
            if resp.canceled:
                # Only a compaction cancels a running watcher; clientv3 reports it so.
                raise RecipeError(errors.Compacted().message if resp.compact_revision
                                  else lost_watcher().message)
            yield resp

    async def wait_delete(self, key: bytes, revision: int) -> None:
        """Return once `key` has a delete event at or after `revision`."""
        async with self.watching(key, b"", revision) as responses:
            async for resp in responses:
                if any(event.type == DELETE for event in resp.events):
                    return

    async def wait_deletes(self, prefix: bytes, max_create_revision: int) -> None:
        """Return once no key under `prefix` has a create revision <= `max_create_revision`.

        Watches only the youngest such key at a time: the older ones are that key's own
        predecessors, so each waiter wakes once, not once per release (no thundering herd).
        """
        while True:
            youngest = await self.range(pb.RangeRequest(
                key=prefix, range_end=prefix_end(prefix), limit=1,
                sort_order=SortOrder.DESCEND, sort_target=SortTarget.CREATE,
                max_create_revision=max_create_revision))
            if not youngest.kvs:
                return
            await self.wait_delete(youngest.kvs[0].key, youngest.header.revision)

    # --- cleaning up after a client that went away ---

    def cleanup(self, work: Awaitable[object]) -> None:
        """Run `work` to its end even though the RPC that needs it was cancelled."""

        async def run() -> None:
            with contextlib.suppress(errors.EtcdError):
                await work

        if len(self._cleanups) >= MAX_CLEANUPS:
            # Refusing to start it would leave the key until its lease expires, as it would
            # after a crash; the lease TTL bounds that either way.
            if asyncio.iscoroutine(work):
                work.close()
            return
        task = asyncio.create_task(run())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
