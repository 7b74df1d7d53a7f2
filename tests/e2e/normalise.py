"""What differs between two servers' answers for reasons that are not behaviour (ids, terms,
timestamps, addresses), replaced by stable placeholders so the answers can be compared."""

from __future__ import annotations

import json
import re
from typing import Any


class IdMap:
    """Renames ids (lease ids, member ids) to `<id1>`, `<id2>`... in order of first sight, so
    two servers' outputs compare equal when they use the same ids in the same places."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def name(self, raw: str) -> str:
        key = raw.lower().lstrip("0") if re.fullmatch(r"[0-9a-fA-F]+", raw) else raw
        return self._names.setdefault(key, f"<id{len(self._names) + 1}>")


def normalise_json(value: Any, ids: IdMap) -> Any:
    """A parsed `-w json` answer with volatile fields replaced by stable placeholders."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in ("cluster_id", "member_id", "raft_term", "raftIndex", "raftTerm",
                     "raftAppliedIndex", "dbSize", "dbSizeInUse"):
                out[k] = "<n>"
            elif k in ("ID", "id", "leader", "lease") and isinstance(v, int) and v != 0:
                out[k] = ids.name(format(v, "x"))
            else:
                out[k] = normalise_json(v, ids)
        return out
    if isinstance(value, list):
        return [normalise_json(v, ids) for v in value]
    return value


def parse_json(text: str, ids: IdMap | None = None) -> Any:
    """etcdctl's `-w json` output (one object) parsed and normalised."""
    return normalise_json(json.loads(text), ids or IdMap())


_HEX_ID = re.compile(r"\b[0-9a-f]{12,16}\b")
_FIELDS_VOLATILE = re.compile(r'^"(ClusterID|MemberID|RaftTerm)" : \d+$', re.M)
_FIELDS_ID = re.compile(r'^"(Lease|ID)" : ([1-9]\d*)$', re.M)


def normalise_stderr(text: str, ids: IdMap) -> str:
    """etcdctl's stderr: its client's JSON log lines reduced to message and error (dropping
    timestamps and connection addresses), other lines as they are."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if isinstance(entry, dict):
                line = f"log: {entry.get('msg')}: {entry.get('error')}"
        out.append(line)
    return normalise_text("\n".join(out), ids)


def normalise_text(text: str, ids: IdMap) -> str:
    """etcdctl's simple and `fields` output with ids and terms replaced by placeholders."""
    text = _FIELDS_VOLATILE.sub(lambda m: f'"{m.group(1)}" : <n>', text)
    text = _FIELDS_ID.sub(lambda m: f'"{m.group(1)}" : {ids.name(format(int(m.group(2)), "x"))}',
                          text)
    return _HEX_ID.sub(lambda m: ids.name(m.group(0)), text)
