"""Responses as plain comparable values, without what legitimately differs between servers.

Two members of different clusters differ in `cluster_id`, `member_id` and `raft_term` of every
response header; nothing else may differ. Two things come out of etcd in map order and are
sorted here (the lease IDs of LeaseLeases, the keys of LeaseTimeToLive), and a lease's
remaining TTL depends on when the request arrived, so it is compared by `same_ttl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from etcdpy._pb.etcdserverpb import rpc_pb2 as pb

Plain = Any  # dict[str, Plain] | list[Plain] | bytes | int | bool | str | float

HEADER_FIELDS_THAT_DIFFER = frozenset({"cluster_id", "member_id", "raft_term"})
# A remaining TTL is read at slightly different moments on the two servers.
TTL_SLACK_S = 2


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def plain(msg: Message) -> dict[str, Plain]:
    """The set fields of `msg` (proto3: non-default ones), recursively, minus header ids."""
    out: dict[str, Plain] = {}
    is_header = isinstance(msg, pb.ResponseHeader)
    for field, value in msg.ListFields():
        if is_header and field.name in HEADER_FIELDS_THAT_DIFFER:
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            out[field.name] = [plain(v) for v in value] if _is_repeated(field) else plain(value)
        else:
            out[field.name] = list(value) if _is_repeated(field) else value
    if isinstance(msg, pb.LeaseLeasesResponse) and "leases" in out:
        out["leases"] = sorted(out["leases"], key=lambda lease: lease.get("ID", 0))
    if isinstance(msg, pb.LeaseTimeToLiveResponse) and "keys" in out:
        out["keys"] = sorted(out["keys"])
    return out


_SORT_FIELD = {
    pb.RangeRequest.SortTarget.VERSION: ("version", 0),
    pb.RangeRequest.SortTarget.CREATE: ("create_revision", 0),
    pb.RangeRequest.SortTarget.MOD: ("mod_revision", 0),
    pb.RangeRequest.SortTarget.VALUE: ("value", b""),
}


def untie(request: Message, response: Plain) -> Plain:
    """Put keys that tie on a Range's sort target in key order, in place (txn ranges too).

    etcd sorts with Go's unstable sort.Sort, so keys with the same version, revision or value
    come out in an order that depends on the Go release etcd was built with; no client can
    rely on it, so it is not compared."""
    if "error" in response:
        return response
    if isinstance(request, pb.RangeRequest):
        field = _SORT_FIELD.get(request.sort_target)
        kvs = response.get("kvs")
        if field is not None and kvs:
            name, default = field
            groups: list[list[Plain]] = []
            for kv in kvs:
                if groups and groups[-1][0].get(name, default) == kv.get(name, default):
                    groups[-1].append(kv)
                else:
                    groups.append([kv])
            if request.limit and response.get("more"):
                # The limit may cut the last tie group: which of its keys made it is as
                # arbitrary as their order. Only their sort values are compared.
                groups[-1] = [{name: kv.get(name, default), "tie at the limit": True}
                              for kv in groups[-1]]
            response["kvs"] = [kv for g in groups for kv in sorted(g, key=lambda kv: kv.get("key", b""))]
    elif isinstance(request, pb.TxnRequest):
        branch = request.success if response.get("succeeded") else request.failure
        for op, out in zip(branch, response.get("responses", []), strict=False):
            which = op.WhichOneof("request")
            if which == "request_range" and "response_range" in out:
                untie(op.request_range, out["response_range"])
            elif which == "request_txn" and "response_txn" in out:
                untie(op.request_txn, out["response_txn"])
    return response


def same_ttl(reference: int, ours: int) -> bool:
    """Remaining TTLs agree when both leases are alive and a couple of seconds apart at most."""
    if reference <= 0 or ours <= 0:
        return reference == ours
    return abs(reference - ours) <= TTL_SLACK_S


@dataclass(frozen=True, slots=True)
class Difference:
    path: str
    reference: Plain
    ours: Plain

    def render(self) -> str:
        return (f"  at {self.path or '<top>'}:\n    etcd:   {short(self.reference, 400)}\n"
                f"    etcdpy: {short(self.ours, 400)}")


_MISSING = "<absent>"


def first_difference(reference: Plain, ours: Plain, path: str = "") -> Difference | None:
    """The first place where the two plain values differ, depth first, fields in name order."""
    if isinstance(reference, dict) and isinstance(ours, dict):
        for name in sorted(reference.keys() | ours.keys()):
            sub = f"{path}.{name}" if path else name
            if name not in reference or name not in ours:
                return Difference(sub, reference.get(name, _MISSING), ours.get(name, _MISSING))
            if name == "TTL" and isinstance(reference[name], int) and "grantedTTL" in reference:
                if not same_ttl(reference[name], ours[name]):
                    return Difference(sub, reference[name], ours[name])
                continue
            found = first_difference(reference[name], ours[name], sub)
            if found is not None:
                return found
        return None
    if isinstance(reference, list) and isinstance(ours, list):
        for i, (a, b) in enumerate(zip(reference, ours, strict=False)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        if len(reference) != len(ours):
            return Difference(f"{path} (length)", len(reference), len(ours))
        return None
    if reference != ours:
        return Difference(path, reference, ours)
    return None


def short(value: Plain, limit: int = 1500) -> str:
    """A bounded rendering for failure messages (a too-large request holds 64 KiB)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
