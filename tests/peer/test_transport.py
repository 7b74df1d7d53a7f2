"""GrpcTransport on loopback: ordering, batching, failures, reconnects, drops, refusals."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from etcdpy._pb.peerpb import peer_pb2, peer_pb2_grpc
from etcdpy.peer.codec import fill_message
from etcdpy.peer.options import MD_CLUSTER_ID, MD_FROM, MD_TO, TransportOptions
from etcdpy.peer.sender import LinkState, grpc_target

from .conftest import (
    CLUSTER,
    RAW_STREAMS,
    RecordingSink,
    app,
    free_port,
    make_transport,
    url_of,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True, params=["raw", "grpc"])
def streams(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs with the senders' raw streams (the default) and with gRPC's."""
    RAW_STREAMS[0] = request.param == "raw"
    yield request.param
    RAW_STREAMS[0] = True


def test_three_members_exchange_messages_in_order_and_batched(tmp_path: Path, streams: str
                                                               ) -> None:
    async def main() -> None:
        sinks = {i: RecordingSink() for i in (1, 2, 3)}
        ts = {i: make_transport(i, sinks[i], str(tmp_path)) for i in (1, 2, 3)}
        try:
            for t in ts.values():
                await t.start()
            for i, t in ts.items():
                for j, other in ts.items():
                    if i != j:
                        t.add_peer(j, [url_of(other)])
            n = 3000
            for start in range(0, n, 100):  # as a Raft loop would: many sends of a few
                for i, t in ts.items():
                    t.send([app(i, j, k, b"x" * 100) for k in range(start, start + 100)
                            for j in ts if j != i])
            for j, sink in sinks.items():
                await wait_until(lambda s=sink: len(s.processed) == 2 * n, f"delivery to {j}")
                for i in ts:
                    if i == j:
                        continue
                    got = [m.index for m in sink.processed if m.from_ == i]
                    assert got == list(range(n)), f"{i}->{j} out of order"
                    assert all(m.to == j and m.entries[0].data == b"x" * 100
                               for m in sink.processed)
            for i, t in ts.items():
                for j in ts:
                    if j != i:
                        sender = t._peers[j]
                        # counted when the write returns, which may be after the delivery
                        await wait_until(lambda s=sender: s.sent_messages == n,
                                         f"{i}->{j} writes returning")
                        assert sender.sent_batches < n, "messages were not batched"
                        assert t.dropped(j) == 0
                        assert t.active_since(j) is not None
                        assert t.stream_kind(j) == streams
            assert not any(s.unreachable for s in sinks.values())
        finally:
            for t in ts.values():
                await t.stop()
    asyncio.run(main())


def test_dead_peer_does_not_block_the_others(tmp_path: Path) -> None:
    async def main() -> None:
        s1, s2 = RecordingSink(), RecordingSink()
        t1 = make_transport(1, s1, str(tmp_path))
        t2 = make_transport(2, s2, str(tmp_path))
        try:
            await t1.start()
            await t2.start()
            t1.add_peer(2, [url_of(t2)])
            t1.add_peer(9, [f"http://127.0.0.1:{free_port()}"])  # nothing listens there
            for k in range(200):
                t1.send([app(1, 9, k), app(1, 2, k)])
                await asyncio.sleep(0)
            await wait_until(lambda: len(s2.processed) == 200, "delivery to the live peer")
            assert [m.index for m in s2.processed] == list(range(200))
            await wait_until(lambda: 9 in s1.unreachable, "unreachable report for the dead peer")
            assert 2 not in s1.unreachable
            assert t1.active_since(9) is None
            # While the link is broken, messages to it are dropped and counted, not queued.
            await wait_until(lambda: t1.link_state(9) is LinkState.BROKEN, "broken link")
            before = t1.dropped(9)
            t1.send([app(1, 9, 1000)])
            assert t1.dropped(9) == before + 1
        finally:
            await t1.stop()
            await t2.stop()
    asyncio.run(main())


def test_restarted_peer_is_reconnected(tmp_path: Path) -> None:
    async def main() -> None:
        s1, s2 = RecordingSink(), RecordingSink()
        port = free_port()
        t1 = make_transport(1, s1, str(tmp_path))
        t2 = make_transport(2, s2, str(tmp_path), port=port)
        try:
            await t1.start()
            await t2.start()
            t1.add_peer(2, [f"http://127.0.0.1:{port}"])
            t1.send([app(1, 2, 1)])
            await wait_until(lambda: len(s2.processed) == 1, "first delivery")
            first_active = t1.active_since(2)
            assert first_active is not None
            await t2.stop()
            await wait_until(lambda: 2 in s1.unreachable, "unreachable after the peer stopped")
            s2b = RecordingSink()
            t2 = make_transport(2, s2b, str(tmp_path), port=port)
            await t2.start()
            await wait_until(lambda: t1.link_state(2) is LinkState.ACTIVE, "reconnection")
            t1.send([app(1, 2, 2), app(1, 2, 3)])
            await wait_until(lambda: len(s2b.processed) == 2, "delivery after reconnect")
            assert [m.index for m in s2b.processed] == [2, 3]
            active = t1.active_since(2)
            assert active is not None and active >= first_active
        finally:
            await t1.stop()
            await t2.stop()
    asyncio.run(main())


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    async def main() -> None:
        # A peer that accepts TCP connections but never answers: the stream stays CONNECTING
        # (long connect timeout), so everything sent piles up in the bounded queue.
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        s1 = RecordingSink()
        opts = TransportOptions(queue_messages=10, connect_timeout_s=60.0)
        t1 = make_transport(1, s1, str(tmp_path), options=opts)
        try:
            await t1.start()
            t1.add_peer(5, [f"http://127.0.0.1:{mute.getsockname()[1]}"])
            t1.send([app(1, 5, k) for k in range(100)])  # returns at once: never blocks
            assert t1._peers[5].queued() == 10
            assert t1.dropped(5) == 90
            assert t1.link_state(5) is LinkState.CONNECTING
        finally:
            await t1.stop()
            mute.close()
    asyncio.run(main())


def test_byte_bound_on_the_queue(tmp_path: Path) -> None:
    async def main() -> None:
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        s1 = RecordingSink()
        opts = TransportOptions(queue_bytes=10_000, connect_timeout_s=60.0)
        t1 = make_transport(1, s1, str(tmp_path), options=opts)
        try:
            await t1.start()
            t1.add_peer(5, [f"http://127.0.0.1:{mute.getsockname()[1]}"])
            t1.send([app(1, 5, k, b"y" * 1000) for k in range(50)])
            queued = t1._peers[5].queued()
            assert 0 < queued < 10 and t1.dropped(5) == 50 - queued
        finally:
            await t1.stop()
            mute.close()
    asyncio.run(main())


def test_peer_of_another_cluster_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                            streams: str) -> None:
    async def main() -> None:
        s1, s2 = RecordingSink(), RecordingSink()
        t1 = make_transport(1, s1, str(tmp_path), cluster_id=0xAAAA)
        t2 = make_transport(2, s2, str(tmp_path), cluster_id=0xBBBB)
        try:
            await t1.start()
            await t2.start()
            t1.add_peer(2, [url_of(t2)])
            t1.send([app(1, 2, 1)])
            await wait_until(lambda: 2 in s1.unreachable, "refusal seen by the sender")
            assert s2.processed == []
            assert t1.link_state(2) is not LinkState.ACTIVE
        finally:
            await t1.stop()
            await t2.stop()
    with caplog.at_level("WARNING", logger="etcdpy.peer"):
        asyncio.run(main())
    refusals = [r for r in caplog.records if r.getMessage() == "request cluster ID mismatch"]
    assert refusals, "the receiver must say why it refused"
    fields = refusals[0].fields  # type: ignore[attr-defined]
    assert fields["local-member-cluster-id"] == "bbbb"
    assert fields["remote-peer-cluster-id"] == "aaaa"
    # The sender says what the receiver answered: gRPC's status, or the HTTP one.
    refused = "FAILED_PRECONDITION" if streams == "grpc" else "412: cluster ID mismatch"
    assert any(refused in str(getattr(r, "fields", {}).get("error", ""))
               for r in caplog.records)


def test_messages_from_a_removed_member_are_refused(tmp_path: Path) -> None:
    async def main() -> None:
        s1, s2, s3 = RecordingSink(), RecordingSink(removed={1}), RecordingSink()
        t1 = make_transport(1, s1, str(tmp_path))
        t2 = make_transport(2, s2, str(tmp_path))
        t3 = make_transport(3, s3, str(tmp_path))
        try:
            for t in (t1, t2, t3):
                await t.start()
            t1.add_peer(2, [url_of(t2)])
            t3.add_peer(2, [url_of(t2)])
            t1.send([app(1, 2, 1)])
            t3.send([app(3, 2, 1)])
            await wait_until(lambda: len(s2.processed) == 1, "the member still in the cluster")
            assert s2.processed[0].from_ == 3
            await wait_until(lambda: 2 in s1.unreachable, "refusal of the removed member")
            # The refused sender tells its node that the peer says it was removed; the member
            # still in the cluster hears no such thing.
            await wait_until(lambda: 2 in s1.removed_by, "removal reported to the sender's node")
            assert s3.removed_by == []
        finally:
            for t in (t1, t2, t3):
                await t.stop()
    asyncio.run(main())


def test_messages_meant_for_another_member_are_refused(tmp_path: Path) -> None:
    async def main() -> None:
        s1, s2 = RecordingSink(), RecordingSink()
        t1 = make_transport(1, s1, str(tmp_path))
        t2 = make_transport(2, s2, str(tmp_path))
        try:
            await t1.start()
            await t2.start()
            t1.add_peer(7, [url_of(t2)])  # wrong id for that address
            t1.send([app(1, 7, 1)])
            await wait_until(lambda: 7 in s1.unreachable, "refusal of a misaddressed stream")
            assert s2.processed == []
        finally:
            await t1.stop()
            await t2.stop()
    asyncio.run(main())


def test_update_and_remove_peer(tmp_path: Path) -> None:
    async def main() -> None:
        s1, s2, s2b = RecordingSink(), RecordingSink(), RecordingSink()
        t1 = make_transport(1, s1, str(tmp_path))
        t2 = make_transport(2, s2, str(tmp_path))
        t2b = make_transport(2, s2b, str(tmp_path))
        try:
            for t in (t1, t2, t2b):
                await t.start()
            t1.add_peer(2, [url_of(t2)])
            t1.send([app(1, 2, 1)])
            await wait_until(lambda: len(s2.processed) == 1, "delivery at the first address")
            t1.update_peer(2, [url_of(t2b)])  # member 2 moved
            assert t1.peers() == {2: (url_of(t2b),)}
            await wait_until(lambda: t1.link_state(2) is LinkState.ACTIVE, "reconnect")
            t1.send([app(1, 2, 2)])
            await wait_until(lambda: len(s2b.processed) == 1, "delivery at the new address")
            assert len(s2.processed) == 1
            await t1.remove_peer(2)
            assert t1.peers() == {}
            t1.send([app(1, 2, 3)])
            assert t1.unknown_target_drops == 1
        finally:
            for t in (t1, t2, t2b):
                await t.stop()
    asyncio.run(main())


def test_stalled_peer_fills_its_window_then_drops_while_others_flow(tmp_path: Path) -> None:
    """Member 2's whole event loop stalls (as under a long GC pause or a stuck disk): member 1
    stops getting acks, its in-flight window and queue fill, and it drops, while member 3
    keeps receiving everything. When 2 recovers it gets an in-order subsequence."""
    import threading

    s2 = RecordingSink()
    loop2 = asyncio.new_event_loop()
    t2_holder: list[object] = []
    ready = threading.Event()
    release = threading.Event()

    def run_member_2() -> None:
        asyncio.set_event_loop(loop2)
        t2 = make_transport(2, s2, str(tmp_path))
        t2_holder.append(t2)
        loop2.run_until_complete(t2.start())
        ready.set()
        loop2.run_forever()
        loop2.run_until_complete(t2.stop())
        loop2.close()

    thread = threading.Thread(target=run_member_2, daemon=True)
    thread.start()
    assert ready.wait(30)
    t2 = t2_holder[0]

    async def main() -> None:
        s1, s3 = RecordingSink(), RecordingSink()
        # Keepalive would (rightly) cut the stalled peer off after ~15 s; this test is about
        # the window and the queue, so it is pushed out of the way.
        opts = TransportOptions(queue_messages=200, max_inflight_batches=2, keepalive_time_s=300)
        t1 = make_transport(1, s1, str(tmp_path), options=opts)
        t3 = make_transport(3, s3, str(tmp_path))
        try:
            await t1.start()
            await t3.start()
            t1.add_peer(2, [url_of(t2)])  # type: ignore[arg-type]
            t1.add_peer(3, [url_of(t3)])
            t1.send([app(1, 2, 0)])
            await wait_until(lambda: len(s2.processed) == 1, "member 2 up")
            loop2.call_soon_threadsafe(release.wait, 60)  # stall member 2's loop
            k = 1
            while t1.dropped(2) == 0:
                assert k < 200_000, "the stalled peer never caused a drop"
                t1.send([app(1, 2, k, b"p" * 1024), app(1, 3, k)])
                k += 1
                if k % 50 == 0:
                    # Like Raft, never outrun a healthy peer: let member 3's stream drain.
                    await wait_until(lambda: t1._peers[3].queued() < 100, "member 3 draining")
            await wait_until(lambda: len(s3.processed) == k - 1, "member 3 kept receiving")
            assert [m.index for m in s3.processed] == list(range(1, k))
            assert t1._peers[2].queued() <= 200
            release.set()
            # A batch taken from the queue may still be inside a write that the stall blocked:
            # the queue can be empty before it lands. So wait for every message to be either
            # delivered or counted as dropped; one that is neither fails here.
            await wait_until(lambda: len(s2.processed) + t1.dropped(2) == k,
                             "every message to member 2 delivered or counted as dropped")
            assert t1._peers[2].queued() == 0
            assert len(s2.processed) == t1._peers[2].sent_messages
            got = [m.index for m in s2.processed]
            assert got == sorted(set(got)), "delivery stays in order, without duplicates"
            assert len(got) > 1, "member 2 caught up after the stall"
        finally:
            release.set()
            await t1.stop()
            await t3.stop()
            loop2.call_soon_threadsafe(loop2.stop)
            await asyncio.to_thread(thread.join, 30)

    asyncio.run(main())


def test_unknown_sender_is_answered_at_the_urls_it_advertises(tmp_path: Path) -> None:
    """etcd's AddRemote: member 2 knows member 1, member 1 does not know member 2 (it fell
    behind the membership). 2's stream tells 1 where 2 is, so 1 can answer, until the
    membership adds 2 as a peer (or says it was removed)."""
    async def main() -> None:
        s1, s2 = RecordingSink(), RecordingSink()
        port2 = free_port()
        url2 = f"http://127.0.0.1:{port2}"
        t1 = make_transport(1, s1, str(tmp_path))
        t2 = make_transport(2, s2, str(tmp_path), port=port2, advertise_urls=[url2])
        try:
            await t1.start()
            await t2.start()
            t1.send([app(1, 2, 1)])  # to an unknown member: dropped and counted
            assert t1.unknown_target_drops == 1
            t2.add_peer(1, [url_of(t1)])
            t2.send([app(2, 1, 1)])
            await wait_until(lambda: len(s1.processed) == 1, "delivery to member 1")
            assert t1.remotes() == {2: (url2,)}
            assert t1.peers() == {}, "a remote is not a member's peer"
            t1.send([app(1, 2, 2)])
            await wait_until(lambda: [m.index for m in s2.processed] == [2], "the answer")
            t1.add_peer(2, [url2])  # the membership caught up: the remote becomes a peer
            assert t1.remotes() == {} and t1.peers() == {2: (url2,)}
            await t1.remove_peer(2)
            assert t1.peers() == {} and t1.remotes() == {}
        finally:
            await t1.stop()
            await t2.stop()
    asyncio.run(main())


def test_advertised_urls_keep_only_http_urls_with_a_port() -> None:
    from etcdpy.peer.service import MAX_ADVERTISED_URLS, advertised_urls

    assert advertised_urls("http://10.0.0.1:2380,https://h:2381") == [
        "http://10.0.0.1:2380", "https://h:2381"]
    assert advertised_urls(b"http://a:1, ftp://b:2,http://nohost,http://c:x,,garbage") == [
        "http://a:1"]
    assert advertised_urls(None) == [] and advertised_urls("") == []
    many = ",".join(f"http://h{i}:1" for i in range(50))
    assert len(advertised_urls(many)) == MAX_ADVERTISED_URLS


def test_membership_promotes_a_remote_and_drops_a_removed_one(tmp_path: Path) -> None:
    """app._follow_membership: a remote the membership then adds becomes a peer; a remote the
    membership records as removed is dropped; the member itself is never a peer."""
    from etcdpy.app import _follow_membership
    from etcdpy.cluster.membership import Member
    from etcdpy.server.membership import MembershipView

    async def main() -> None:
        t1 = make_transport(1, RecordingSink(), str(tmp_path))
        url = f"http://127.0.0.1:{free_port()}"
        try:
            await t1.start()
            view = MembershipView([Member(1, "m1", ("http://127.0.0.1:1",))])
            _follow_membership(view, t1, 1)
            t1.add_remote(5, [url])
            t1.add_remote(6, [url])
            assert set(t1.remotes()) == {5, 6} and t1.peers() == {}
            view.replace([Member(1, "m1", ("http://127.0.0.1:1",)), Member(5, "m5", (url,))],
                         removed=[6])
            await wait_until(lambda: 6 not in t1.remotes(), "the removed remote dropped")
            assert t1.remotes() == {} and t1.peers() == {5: (url,)}
        finally:
            await t1.stop()
    asyncio.run(main())


@pytest.mark.parametrize("window", [1, 2, 3, 8])
def test_the_sender_never_waits_for_an_ack_that_is_not_coming(tmp_path: Path,
                                                              window: int) -> None:
    """The receiver acknowledges every half window (sender.ack_interval), not every batch: a
    sender with any window must still get its acks in time. One message per batch, many times
    the window, each waited for, as a quiet Raft leader sends."""
    async def main() -> None:
        s1, s2 = RecordingSink(), RecordingSink()
        opts = TransportOptions(max_inflight_batches=window)
        t1 = make_transport(1, s1, str(tmp_path), options=opts)
        t2 = make_transport(2, s2, str(tmp_path))
        try:
            await t1.start()
            await t2.start()
            t1.add_peer(2, [url_of(t2)])
            for k in range(10 * window):
                t1.send([app(1, 2, k)])
                await wait_until(lambda k=k: len(s2.processed) == k + 1, f"message {k}")
            # counted when the write returns, which may be after the delivery
            await wait_until(lambda: t1._peers[2].sent_batches == 10 * window,
                             "the last write returning")
            assert [m.index for m in s2.processed] == list(range(10 * window))
        finally:
            await t1.stop()
            await t2.stop()
    asyncio.run(main())


def test_the_receiver_acknowledges_as_often_as_the_first_batch_asks(tmp_path: Path) -> None:
    """On the wire: a stream whose first batch asks for `ack_every` 4 gets acks 4 and 8 for 8
    batches; one that does not ask (a sender from before the field) gets an ack per batch."""
    async def main() -> None:
        s2 = RecordingSink()
        t2 = make_transport(2, s2, str(tmp_path))
        metadata = ((MD_CLUSTER_ID, f"{CLUSTER:x}"), (MD_FROM, "1"), (MD_TO, "2"))

        def batch(k: int, ack_every: int) -> peer_pb2.MessageBatch:
            out = peer_pb2.MessageBatch()
            if k == 0:
                out.cluster_id, out.from_id, out.to_id = CLUSTER, 1, 2
                out.ack_every = ack_every
            fill_message(out.messages.add(), app(1, 2, k))
            return out

        try:
            await t2.start()
            async with grpc.aio.insecure_channel(grpc_target(url_of(t2))) as channel:
                stub = peer_pb2_grpc.RaftPeerStub(channel)
                asking = stub.Stream(metadata=metadata)
                for k in range(8):
                    await asking.write(batch(k, ack_every=4))
                acks = [(await asking.read()).batches for _ in range(2)]
                assert acks == [4, 8]
                asking.cancel()
                silent = stub.Stream(metadata=metadata)
                for k in range(3):
                    await silent.write(batch(k, ack_every=0))
                    assert (await silent.read()).batches == k + 1
                silent.cancel()
            await wait_until(lambda: len(s2.processed) == 11, "every message processed")
        finally:
            await t2.stop()
    asyncio.run(main())
