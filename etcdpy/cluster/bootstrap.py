"""Who this member is: a new member of a new cluster from `--initial-cluster`, or the member
its data dir already belongs to.

A member restarted with its data dir ignores the `--initial-*` flags, as etcd does; but a data
dir that belongs to a member of another name is refused rather than silently taken over.
The identity is written to the data dir before the member first serves, Raft side last, so a
crash half-way through bootstrap leaves a data dir that bootstraps again from scratch.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from etcdpy.cluster import srv
from etcdpy.cluster.membership import (
    Member,
    compute_cluster_id,
    format_id,
    members_from_initial_cluster,
    parse_initial_cluster,
    voter_ids,
)
from etcdpy.storage.env import MemberEnvs
from etcdpy.storage.members import MemberRecord, Members
from etcdpy.storage.raft_log import LmdbRaftStorage


class BootstrapError(Exception):
    """The flags and the data dir do not describe a member we can start."""


@dataclass(frozen=True)
class Identity:
    member_id: int
    cluster_id: int
    members: tuple[Member, ...]
    is_new: bool  # bootstrapped just now (rather than restarted from the data dir)

    @property
    def voters(self) -> tuple[int, ...]:
        return voter_ids(self.members)


def _to_member(rec: MemberRecord) -> Member:
    return Member(rec.id, rec.name, rec.peer_urls, rec.client_urls, rec.is_learner)


def _to_record(m: Member) -> MemberRecord:
    return MemberRecord(m.id, m.name, m.peer_urls, m.client_urls, m.is_learner)


def load_members(envs_or_env: object) -> list[Member]:
    """The member records of a data dir (`MemberEnvs`) or of an open state env."""
    env = getattr(envs_or_env, "state", envs_or_env)
    with env.begin() as txn:  # type: ignore[attr-defined]
        return [_to_member(r) for r in Members(txn, env.dbs).list()]  # type: ignore[attr-defined]


def load_removed(envs_or_env: object) -> list[int]:
    env = getattr(envs_or_env, "state", envs_or_env)
    with env.begin() as txn:  # type: ignore[attr-defined]
        return Members(txn, env.dbs).removed_ids()  # type: ignore[attr-defined]


def new_cluster(
    name: str,
    initial_cluster: str,
    token: str,
    advertise_peer_urls: Sequence[str],
) -> tuple[Member, list[Member]]:
    """This member and all members of a cluster bootstrapped from `--initial-cluster`,
    refused with etcd's messages when the flags do not describe one."""
    parsed = parse_initial_cluster(initial_cluster)
    urls = [u for member_urls in parsed.values() for u in member_urls]
    if len(urls) != len(set(urls)):
        raise BootstrapError(f"initial cluster {initial_cluster} has duplicate url")
    members = members_from_initial_cluster(initial_cluster, token)
    mine = [m for m in members if m.name == name]
    if not mine:
        raise BootstrapError(
            f'couldn\'t find local name "{name}" in the initial cluster configuration'
        )
    me = mine[0]
    advertised = sorted(advertise_peer_urls)
    if advertised != list(me.peer_urls) and not _same_endpoints(advertised, me.peer_urls):
        a, b = ",".join(advertised), ",".join(me.peer_urls)
        raise BootstrapError(
            f"--initial-cluster has {name}={b} but missing from "
            f"--initial-advertise-peer-urls={a} "
            f'("{a}"(resolved from "{a}") != "{b}"(resolved from "{b}"))'
        )
    # Client URLs are not part of the bootstrap: every member publishes its own through Raft
    # once the cluster runs, so all members' records stay identical.
    return me, members


def _same_endpoints(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two URL lists name the same scheme+IP:port endpoints once host names are
    resolved (etcd's netutil.URLStringsEqual): SRV bootstrap names members by the SRV
    targets, which a member may advertise by address or by another name."""

    def resolved(urls: Sequence[str]) -> list[str] | None:
        out = []
        for url in urls:
            parts = urlsplit(url)
            try:
                out.append(f"{parts.scheme}://" + srv.resolve_tcp(
                    parts.hostname or "", parts.port or 80))
            except (LookupError, ValueError):
                return None
        return sorted(out)

    if len(a) != len(b):
        return False
    ra, rb = resolved(a), resolved(b)
    return ra is not None and ra == rb


def bootstrap_or_restart(
    envs: MemberEnvs,
    raft_storage: LmdbRaftStorage,
    name: str,
    initial_cluster: str,
    token: str,
    advertise_peer_urls: Sequence[str],
    existing: bool = False,
) -> Identity:
    member_id = raft_storage.member_id()
    if member_id:
        members = load_members(envs)
        cluster_id = raft_storage.cluster_id()
        me = next((m for m in members if m.id == member_id), None)
        if me is not None and me.name and me.name != name:
            raise BootstrapError(
                f"data dir belongs to member {me.name!r} ({format_id(member_id)}) of cluster "
                f"{format_id(cluster_id)}, not to {name!r}: start it with --name {me.name} "
                "or give this member a data dir of its own"
            )
        return Identity(member_id, cluster_id, tuple(members), is_new=False)

    if existing:
        return _join_existing(envs, raft_storage, name, initial_cluster, advertise_peer_urls)
    me, members = new_cluster(name, initial_cluster, token, advertise_peer_urls)
    cluster_id = compute_cluster_id(m.id for m in members)
    with envs.state.begin(write=True) as txn:
        store = Members(txn, envs.state.dbs)
        for m in members:
            store.put(_to_record(m))
        store.set_cluster_id(cluster_id)
    envs.state.sync()
    raft_storage.bootstrap(voter_ids(members))
    raft_storage.set_cluster_id(cluster_id)
    raft_storage.set_member_id(me.id)  # last: its presence marks a finished bootstrap
    return Identity(me.id, cluster_id, tuple(members), is_new=True)


REMOTE_TIMEOUT_S = 2.0


def fetch_remote_members(peer_urls: Sequence[str]) -> tuple[int, list[Member]]:
    """Ask running members (their peer URLs' `GET /members`, as etcd does) for the cluster ID
    and the member list; the first that answers wins."""
    errors: list[str] = []
    for url in peer_urls:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/members",
                                        timeout=REMOTE_TIMEOUT_S) as resp:
                cluster_id = int(resp.headers.get("X-Etcd-Cluster-ID", "0"), 16)
                body = json.loads(resp.read())
        except (OSError, ValueError) as error:
            errors.append(f"{url}: {error}")
            continue
        members = [
            Member(int(m["id"]), m.get("name", ""), tuple(sorted(m.get("peerURLs") or ())),
                   tuple(m.get("clientURLs") or ()), bool(m.get("isLearner", False)))
            for m in body
        ]
        return cluster_id, members
    raise BootstrapError(
        "cannot fetch cluster info from peer urls: could not retrieve cluster information "
        "from the given URLs (" + "; ".join(errors) + ")"
    )


def _join_existing(
    envs: MemberEnvs,
    raft_storage: LmdbRaftStorage,
    name: str,
    initial_cluster: str,
    advertise_peer_urls: Sequence[str],
) -> Identity:
    """`--initial-cluster-state existing`: this member was added with `member add`; learn
    the cluster from its other members and start with an empty log (the leader sends it the
    log or a snapshot)."""
    mine = sorted(advertise_peer_urls)
    others = [
        url for member_name, urls in parse_initial_cluster(initial_cluster).items()
        for url in urls if member_name != name
    ]
    cluster_id, members = fetch_remote_members(others)
    me = next((m for m in members if list(m.peer_urls) == mine), None)
    if me is None:
        raise BootstrapError(
            f"error validating peerURLs: member with peer URLs {','.join(mine)} is not in the "
            "existing cluster (add it with `etcdctl member add` first)"
        )
    with envs.state.begin(write=True) as txn:
        store = Members(txn, envs.state.dbs)
        for m in members:
            store.put(_to_record(m))
        store.set_cluster_id(cluster_id)
    envs.state.sync()
    raft_storage.set_cluster_id(cluster_id)
    raft_storage.set_member_id(me.id)
    return Identity(me.id, cluster_id, tuple(members), is_new=True)
