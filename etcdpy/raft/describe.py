"""Text renderings of entries, messages, snapshots and Readies (tests and logs).

The formats follow etcd's describers so that scripts read familiarly, e.g.
    1->2 MsgApp Term:1 Log:1/3 Commit:3 Entries:[1/4 EntryNormal "x"]
"""

from __future__ import annotations

from .status import Status
from .types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Ready,
    Snapshot,
    SoftState,
    StateType,
)

_MSG_NAMES = {
    MessageType.HUP: "MsgHup",
    MessageType.BEAT: "MsgBeat",
    MessageType.PROP: "MsgProp",
    MessageType.APP: "MsgApp",
    MessageType.APP_RESP: "MsgAppResp",
    MessageType.VOTE: "MsgVote",
    MessageType.VOTE_RESP: "MsgVoteResp",
    MessageType.SNAP: "MsgSnap",
    MessageType.HEARTBEAT: "MsgHeartbeat",
    MessageType.HEARTBEAT_RESP: "MsgHeartbeatResp",
    MessageType.UNREACHABLE: "MsgUnreachable",
    MessageType.SNAP_STATUS: "MsgSnapStatus",
    MessageType.CHECK_QUORUM: "MsgCheckQuorum",
    MessageType.TRANSFER_LEADER: "MsgTransferLeader",
    MessageType.TIMEOUT_NOW: "MsgTimeoutNow",
    MessageType.READ_INDEX: "MsgReadIndex",
    MessageType.READ_INDEX_RESP: "MsgReadIndexResp",
    MessageType.PRE_VOTE: "MsgPreVote",
    MessageType.PRE_VOTE_RESP: "MsgPreVoteResp",
}

_STATE_NAMES = {
    StateType.FOLLOWER: "StateFollower",
    StateType.CANDIDATE: "StateCandidate",
    StateType.LEADER: "StateLeader",
    StateType.PRE_CANDIDATE: "StatePreCandidate",
}

_CC_PREFIX = {
    ConfChangeType.ADD_NODE: "v",
    ConfChangeType.REMOVE_NODE: "r",
    ConfChangeType.UPDATE_NODE: "u",
    ConfChangeType.ADD_LEARNER_NODE: "l",
}


def message_type_name(t: MessageType) -> str:
    return _MSG_NAMES[t]


def state_name(s: StateType) -> str:
    return _STATE_NAMES[s]


def describe_conf_change(cc: ConfChange) -> str:
    return f"{_CC_PREFIX[cc.type]}{cc.node_id}"


def describe_entry(e: Entry) -> str:
    if e.type == EntryType.CONF_CHANGE:
        try:
            body = describe_conf_change(ConfChange.decode(e.data))
        except ValueError:
            body = f"<undecodable {len(e.data)} bytes>"
        return f"{e.term}/{e.index} EntryConfChange {body}"
    return f"{e.term}/{e.index} EntryNormal {_quote(e.data)}"


def describe_entries(ents: tuple[Entry, ...] | list[Entry]) -> str:
    return "\n".join(describe_entry(e) for e in ents)


def describe_snapshot(s: Snapshot) -> str:
    m = s.metadata
    cs = m.conf_state
    voters = " ".join(map(str, cs.voters))
    out = f"Index:{m.index} Term:{m.term} ConfState:Voters:[{voters}]"
    if cs.learners:
        out += " Learners:[" + " ".join(map(str, cs.learners)) + "]"
    return out


def describe_message(m: Message) -> str:
    out = f"{m.from_}->{m.to} {message_type_name(m.type)} Term:{m.term} Log:{m.log_term}/{m.index}"
    if m.reject:
        out += f" Rejected (Hint: {m.reject_hint})"
    if m.commit:
        out += f" Commit:{m.commit}"
    if m.context:
        out += f" Context:{_quote(m.context)}"
    if m.entries:
        out += " Entries:[" + ", ".join(describe_entry(e) for e in m.entries) + "]"
    if m.snapshot is not None:
        out += " Snapshot: " + describe_snapshot(m.snapshot)
    return out


def describe_hard_state(hs: HardState) -> str:
    return f"Term:{hs.term} Vote:{hs.vote} Commit:{hs.commit}"


def describe_soft_state(ss: SoftState) -> str:
    return f"Lead:{ss.lead} State:{state_name(ss.raft_state)}"


def describe_ready(rd: Ready) -> str:
    lines: list[str] = []
    if rd.soft_state is not None:
        lines.append(describe_soft_state(rd.soft_state))
    if rd.hard_state is not None:
        lines.append("HardState " + describe_hard_state(rd.hard_state))
    if rd.read_states:
        lines.append("ReadStates:")
        lines += [
            f"ReadState Index:{rs.index} RequestCtx:{_quote(rs.request_ctx)}"
            for rs in rd.read_states
        ]
    if rd.entries:
        lines.append("Entries:")
        lines += [describe_entry(e) for e in rd.entries]
    if rd.snapshot is not None:
        lines.append("Snapshot " + describe_snapshot(rd.snapshot))
    if rd.committed_entries:
        lines.append("CommittedEntries:")
        lines += [describe_entry(e) for e in rd.committed_entries]
    if rd.messages:
        lines.append("Messages:")
        lines += [describe_message(m) for m in rd.messages]
    if rd.persisted_messages:
        lines.append("Messages (after persist):")
        lines += [describe_message(m) for m in rd.persisted_messages]
    if not lines:
        return "<empty Ready>"
    return "\n".join(lines)


def describe_status(st: Status) -> str:
    lines = [
        f"{st.id} {state_name(st.soft_state.raft_state)} lead={st.soft_state.lead} "
        f"{describe_hard_state(st.hard_state)} Applied:{st.applied}"
    ]
    for i in sorted(st.progress):
        p = st.progress[i]
        s = f"{i}: {p.state.name} match={p.match} next={p.next}"
        if p.is_learner:
            s += " learner"
        if p.inflight:
            s += f" inflight={p.inflight}"
        if p.pending_snapshot:
            s += f" pendingSnap={p.pending_snapshot}"
        lines.append(s)
    if st.lead_transferee:
        lines.append(f"lead_transferee={st.lead_transferee}")
    return "\n".join(lines)


def _quote(b: bytes) -> str:
    try:
        s = b.decode()
    except UnicodeDecodeError:
        return repr(b)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
