"""Fault injectors: each turns a schedule `Step` into an action on the cluster and its heal.

`inject` returns a `Fault`: what was done (for the log) and a `heal` that undoes it (restart,
SIGCONT, flush the firewall, clear the proxies). The runner heals every fault before the next
and once more, unconditionally, at the end, so a failure in between still leaves a clean lab.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from tests.faults.cluster import FaultCluster, FaultMember
from tests.faults.schedule import FaultKind, Step

RESTART_WAIT_S = 20.0
RESTART_BACKOFF_S = 0.5


@dataclass(frozen=True, slots=True)
class Fault:
    description: str
    heal: Callable[[], None]
    held: bool = False  # the injector already spent the step's hold time (a repeated action)


def _nothing() -> None:
    return None


def _restart(cluster: FaultCluster, victims: list[FaultMember]) -> None:
    """Start the victims again and give them a bounded time to come up, so the next fault
    hits a member that runs rather than one still starting (no error if it is slow).

    A member that exits while starting is started again, as a supervisor (systemd's
    Restart=on-failure) would: a joining member asks the others for the member list and,
    as in etcd, gives up if they are down or still replaying their log. One that keeps
    exiting is left down when the time is up, and the final settle reports it."""
    deadline = time.monotonic() + RESTART_WAIT_S
    waiting = list(victims)
    while waiting and time.monotonic() < deadline:
        for m in waiting:
            if not m.running:
                m.restart()
        time.sleep(0.1)
        waiting = [m for m in waiting if not _answers(cluster, m)]
        if any(not m.running for m in waiting):
            time.sleep(RESTART_BACKOFF_S)


def _answers(cluster: FaultCluster, m: FaultMember) -> bool:
    try:
        return m.running and cluster.grpc_status(m, timeout_s=1.0) is not None
    except grpc.RpcError:
        return False


def choose(cluster: FaultCluster, role: str, rng: random.Random) -> list[FaultMember]:
    """The member(s) a step's role names now: the leader, a follower, anyone, or all."""
    members = [m for m in cluster.fmembers if m.running]
    if role == "all" or not members:
        return list(cluster.fmembers)
    leader = cluster.leader()
    if role == "leader" and leader is not None:
        return [leader]
    if role == "follower":
        followers = [m for m in members if m is not leader]
        if followers:
            return [rng.choice(followers)]
    return [rng.choice(members)]


def split(cluster: FaultCluster, step: Step, rng: random.Random,
          ) -> tuple[list[FaultMember], list[FaultMember]]:
    """(cut-off side, rest): a minority (or one member) and the others."""
    members = list(cluster.fmembers)
    leader = cluster.leader()
    with_leader = "leader" in step.variant and leader is not None
    size = 1 if "blackhole" in step.variant else rng.randint(1, (len(members) - 1) // 2)
    others = [m for m in members if m is not leader] if with_leader else members
    rng.shuffle(others)
    minority = ([leader] if with_leader else []) + others
    minority = minority[:size]
    return minority, [m for m in members if m not in minority]


def inject(cluster: FaultCluster, step: Step) -> Fault:
    rng = random.Random(step.pick)
    if step.kind == FaultKind.KILL and step.variant == "double-vote":
        return _double_vote_bait(cluster, step, rng)
    if step.kind == FaultKind.KILL:
        victims = choose(cluster, step.role, rng)
        for m in victims:
            m.kill()

        return Fault(f"kill {_names(victims)}", lambda: _restart(cluster, victims))

    if step.kind == FaultKind.POWER:
        assert cluster.lazy, "power loss needs the data dirs on the lazy file system"
        victims = choose(cluster, step.role, rng)
        dropped = []
        for m in victims:
            m.kill()
            dropped.append(f"{m.name}: {cluster.power_loss(m)}")
        return Fault(f"power loss {'; '.join(dropped)}", lambda: _restart(cluster, victims))

    if step.kind == FaultKind.PAUSE:
        victims = choose(cluster, step.role, rng)
        for m in victims:
            m.pause()

        def resume() -> None:
            for m in victims:
                m.resume()
        return Fault(f"pause {_names(victims)}", resume)

    if step.kind == FaultKind.PARTITION:
        cut, rest = split(cluster, step, rng)
        if step.variant == "asymmetric-in":  # the cut-off side hears nothing, but talks
            for m in cut:
                cluster.drop_from(m, rest)
        elif step.variant == "asymmetric-out":  # the others do not hear the cut-off side
            for m in rest:
                cluster.drop_from(m, cut)
        else:
            for m in cut:
                cluster.drop_from(m, rest)
            for m in rest:
                cluster.drop_from(m, cut)
        return Fault(f"partition/{step.variant} {_names(cut)} | {_names(rest)}",
                     cluster.heal_firewall)

    if step.kind in (FaultKind.DELAY, FaultKind.DROP, FaultKind.PEER_PAUSE):
        if step.kind == FaultKind.PEER_PAUSE:
            targets, _ = split(cluster, step, rng)
            command = "pause"
        else:
            targets = [m for m in cluster.fmembers if rng.random() < 0.7] or cluster.fmembers
            if step.kind == FaultKind.DELAY:
                ms, jitter = step.variant.removesuffix("ms").split("+-")
                command = f"delay {ms} {jitter}"
            else:
                command = f"drop {step.variant}"
        for m in targets:
            m.proxy_command(command)

        def clear() -> None:
            for m in targets:
                m.proxy_command("heal")
        return Fault(f"{command} into {_names(targets)}", clear)

    if step.kind == FaultKind.REPLACE:
        victim = choose(cluster, step.role, rng)[0]
        cluster.replace(victim)
        return Fault(f"replace {victim.name}", _nothing)

    raise AssertionError(f"unknown fault {step.kind}")


def _is_leader(cluster: FaultCluster, m: FaultMember) -> bool:
    try:
        st = cluster.grpc_status(m, timeout_s=0.3)
    except grpc.RpcError:
        return False
    return st.leader == st.header.member_id != 0


def _double_vote_bait(cluster: FaultCluster, step: Step, rng: random.Random) -> Fault:
    """Bait for a forgotten vote (3 members), with nothing but kills, a pause, a partition and
    slow links, timed by who leads (as a Jepsen nemesis targets the leader):

    1. slow the links into the two followers and let L append for a moment, so that L's log
       ends with entries neither follower has yet; kill L;
    2. as soon as one follower W wins the next term T, pause W and kill the other, V, which
       voted for W but cannot yet have W's first entry of T (its inbound link is slow);
    3. cut L off from W and restart L, then V. V is in term T and has forgotten its vote, so
       L can win T too with V's vote: two leaders in one term. L's longer log makes L refuse
       V's own pre-votes, so V cannot move the term on first;
    4. after the hold, resume W, which still leads T and sends V its own entries of T.

    It works only when W wins the first election after L's death (T is one past L's term, so
    L's campaign is for T), hence short delays: with long ones the followers split their
    votes for several terms. With votes on disk, V refuses L in step 3 (it voted for W in T)
    and nothing is lost.
    """
    old = cluster.leader()
    if old is None or len(cluster.fmembers) != 3:
        return Fault("double-vote bait: no leader to start from, skipped", _nothing)
    others = [m for m in cluster.fmembers if m is not old]
    for m in others:
        # longer than it takes to see W win and kill V (a status call), short enough
        # that the followers rarely both become candidates in one round
        m.proxy_command("delay 100 10")
    time.sleep(0.4)
    old.kill()
    deadline = time.monotonic() + 10.0
    winner: FaultMember | None = None
    while winner is None and time.monotonic() < deadline:
        winner = next((m for m in others if _is_leader(cluster, m)), None)
    if winner is None:
        for m in others:
            m.proxy_command("heal")
        return Fault(f"double-vote bait: killed {old.name}, no new leader",
                     lambda: _restart(cluster, [old]))
    voter = next(m for m in others if m is not winner)
    winner.pause()
    voter.kill()
    cluster.drop_from(old, [winner])
    cluster.drop_from(winner, [old])
    old.restart()
    voter.restart()
    time.sleep(step.hold_s)
    winner.resume()
    time.sleep(rng.uniform(1.0, 3.0))  # let both leaders of the term talk to the voter

    def heal() -> None:
        for m in others:
            m.proxy_command("heal")
        cluster.heal_firewall()
        _restart(cluster, [old, voter])

    return Fault(f"double-vote bait: killed leader {old.name}, paused new leader "
                 f"{winner.name}, killed voter {voter.name}, {old.name} cut off from "
                 f"{winner.name}", heal, held=True)


def heal_all(cluster: FaultCluster) -> None:
    """Undo everything any fault may have left: firewall, proxies, pauses, dead members."""
    cluster.heal_firewall()
    for m in cluster.fmembers:
        if m.proxy is not None:
            m.proxy_command("heal")
        m.resume()
    _restart(cluster, [m for m in cluster.fmembers if not m.running])


def _names(members: list[FaultMember]) -> str:
    return ",".join(m.name for m in members) or "-"
