"""v3electionpb.Election: etcd's server-side leader election, built on a lease.

A candidate's entry is the key `<name>/<lease hex>` holding its value, attached to its lease;
the leader is the entry with the oldest create revision. Campaign returns once every older
entry is gone, with a LeaderKey (name, key, create revision, lease) that Proclaim and Resign
present back: they act only while the key still has that create revision.

Like v3lock, leadership is a lease plus a key, not a guarantee that no one else acts as
leader: a leader paused or partitioned past its lease TTL loses its key to expiry while it
still believes it leads, and the next candidate is elected. The LeaderKey's `rev` is the
fencing token (it rises with every new leader): guard the leader's writes with a Txn that
compares the key's create revision to it, as Proclaim itself does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb
from etcdpy._pb.mvccpb import kv_pb2 as mvccpb
from etcdpy._pb.v3electionpb import v3election_pb2 as electionpb
from etcdpy._pb.v3electionpb import v3election_pb2_grpc as election_grpc
from etcdpy.server import errors
from etcdpy.server.api.recipes import (
    RecipeError,
    Recipes,
    created_is,
    first_created,
    prefix_end,
    recipe_errors,
    waiter_key,
)
from etcdpy.server.etcdserver import EtcdServer

PUT = mvccpb.Event.EventType.PUT
DELETE = mvccpb.Event.EventType.DELETE


def not_leader() -> RecipeError:
    return RecipeError("election: not leader")


def no_leader() -> RecipeError:
    return RecipeError("election: no leader")


def missing_leader_key() -> RecipeError:
    return RecipeError('"leader" field must be provided')


class ElectionServicer(election_grpc.ElectionServicer):
    def __init__(self, server: EtcdServer) -> None:
        self._recipes = Recipes(server)

    # --- Campaign ---

    async def Campaign(  # noqa: N802
        self, request: electionpb.CampaignRequest, context: grpc.aio.ServicerContext
    ) -> electionpb.CampaignResponse:
        async with recipe_errors(context):
            return await self._campaign(request)

    async def _campaign(self, request: electionpb.CampaignRequest) -> electionpb.CampaignResponse:
        recipes = self._recipes
        prefix = request.name + b"/"
        lease = await recipes.session(request.lease)
        key = waiter_key(prefix, lease)
        resp = await recipes.txn(pb.TxnRequest(
            compare=[created_is(key, 0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(
                key=key, value=request.value, lease=lease))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
        ))
        leader = electionpb.LeaderKey(name=request.name, key=key, rev=resp.header.revision,
                                      lease=lease)
        if not resp.succeeded:
            # Campaigning again on the same lease resumes the earlier entry.
            kv = resp.responses[0].response_range.kvs[0]
            leader.rev = kv.create_revision
            if kv.value != request.value:
                try:
                    await self._proclaim(leader, request.value)
                except errors.EtcdError:
                    with contextlib.suppress(errors.EtcdError):
                        await self._resign(leader)
                    raise
        try:
            await recipes.wait_deletes(prefix, leader.rev - 1)
        except asyncio.CancelledError:
            # The client gave up: withdraw the candidacy rather than win later unseen.
            recipes.cleanup(self._resign(leader))
            raise
        # etcd answers with the header of the Txn that entered the election.
        return electionpb.CampaignResponse(header=resp.header, leader=leader)

    # --- Proclaim and Resign: only while the key has the campaign's create revision ---

    async def Proclaim(  # noqa: N802
        self, request: electionpb.ProclaimRequest, context: grpc.aio.ServicerContext
    ) -> electionpb.ProclaimResponse:
        async with recipe_errors(context):
            if not request.HasField("leader"):
                raise missing_leader_key()
            leader = electionpb.LeaderKey()
            leader.CopyFrom(request.leader)
            # etcd opens a session here too: lease 0 is granted a fresh lease, put on the key.
            leader.lease = await self._recipes.session(leader.lease)
            header = await self._proclaim(leader, request.value)
            return electionpb.ProclaimResponse(header=header)

    async def _proclaim(self, leader: electionpb.LeaderKey, value: bytes) -> pb.ResponseHeader:
        resp = await self._recipes.txn(pb.TxnRequest(
            compare=[created_is(leader.key, leader.rev)],
            success=[pb.RequestOp(request_put=pb.PutRequest(
                key=leader.key, value=value, lease=leader.lease))],
        ))
        if not resp.succeeded:
            raise not_leader()
        return resp.header

    async def Resign(  # noqa: N802
        self, request: electionpb.ResignRequest, context: grpc.aio.ServicerContext
    ) -> electionpb.ResignResponse:
        async with recipe_errors(context):
            if not request.HasField("leader"):
                raise missing_leader_key()
            await self._recipes.session(request.leader.lease)  # etcd's session: see Proclaim
            header = await self._resign(request.leader)
            return electionpb.ResignResponse(header=header)

    async def _resign(self, leader: electionpb.LeaderKey) -> pb.ResponseHeader:
        """Delete the key if it is still this campaign's; not being leader is no error."""
        resp = await self._recipes.txn(pb.TxnRequest(
            compare=[created_is(leader.key, leader.rev)],
            success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=leader.key))],
        ))
        return resp.header

    # --- Leader and Observe ---

    async def Leader(  # noqa: N802
        self, request: electionpb.LeaderRequest, context: grpc.aio.ServicerContext
    ) -> electionpb.LeaderResponse:
        async with recipe_errors(context):
            resp = await self._recipes.range(first_created(request.name + b"/"))
            if not resp.kvs:
                raise no_leader()
            return electionpb.LeaderResponse(header=resp.header, kv=resp.kvs[0])

    async def Observe(  # noqa: N802
        self, request: electionpb.LeaderRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[electionpb.LeaderResponse]:
        # etcd's observer ends the stream quietly (status OK) when its reads or watches fail.
        with contextlib.suppress(errors.EtcdError):
            async for resp in self._observe(request.name + b"/"):
                yield resp

    async def _observe(self, prefix: bytes) -> AsyncIterator[electionpb.LeaderResponse]:
        """The leader's kv now, then each new value it proclaims, then the next leader's..."""
        recipes = self._recipes
        while True:
            resp = await recipes.range(first_created(prefix))
            if resp.kvs:
                header, kv = resp.header, resp.kvs[0]
            else:
                header, kv = await self._first_put(prefix, resp.header.revision)
            yield electionpb.LeaderResponse(header=header, kv=kv)
            async with recipes.watching(kv.key, b"", header.revision + 1) as responses:
                async for watched in responses:
                    deleted = False
                    for event in watched.events:
                        if event.type == DELETE:
                            deleted = True
                            break
                        yield electionpb.LeaderResponse(header=watched.header, kv=event.kv)
                    if deleted:
                        break

    async def _first_put(self, prefix: bytes, revision: int
                         ) -> tuple[pb.ResponseHeader, mvccpb.KeyValue]:
        """With no candidate yet, the first one to enter (deletes would only spin the loop)."""
        async with self._recipes.watching(prefix, prefix_end(prefix), revision) as responses:
            async for watched in responses:
                for event in watched.events:
                    if event.type == PUT:
                        header = pb.ResponseHeader()
                        header.CopyFrom(watched.header)
                        header.revision = event.kv.mod_revision
                        return header, event.kv
        raise RecipeError("lost watcher waiting for delete")  # pragma: no cover - never ends

