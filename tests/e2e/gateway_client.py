"""curl against a server's HTTP endpoints, and JSON normalised so two servers compare equal."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from tests.e2e.normalise import IdMap

CURL_TIMEOUT_S = 20


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # names lower case
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def curl(url: str, body: str | None = None, method: str = "POST",
         headers: tuple[str, ...] = ()) -> Reply:
    """One request with curl; the whole answer (head and body)."""
    cmd = ["curl", "-s", "-i", "-X", method, "--max-time", str(CURL_TIMEOUT_S)]
    for h in headers:
        cmd += ["-H", h]
    if body is not None:
        cmd += ["--data-binary", body]
    out = subprocess.run([*cmd, url], capture_output=True, timeout=CURL_TIMEOUT_S + 5,
                         check=True).stdout.decode()
    head, _, rest = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        hdrs[name.strip().lower()] = value.strip()
    return Reply(status, hdrs, rest)


def curl_stream(url: str, body: str, seconds: float) -> list[Any]:
    """POST `body` and read the streamed answer for `seconds`; its JSON lines, parsed."""
    proc = subprocess.run(
        ["curl", "-s", "-N", "-X", "POST", "--max-time", str(seconds), "--data-binary", body,
         url], capture_output=True, timeout=seconds + 10, check=False,
    )
    assert proc.returncode in (0, 28), proc.stderr  # 28: our own time limit ended it
    return [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]


_VOLATILE = {"cluster_id", "member_id", "raft_term", "raftIndex", "raftTerm", "raftAppliedIndex",
             "dbSize", "dbSizeInUse"}
_IDS = {"ID", "id", "leader", "lease", "watch_id"}


def normalise(value: Any, ids: IdMap) -> Any:
    """Gateway JSON with ids renamed in order of first sight and volatile numbers masked."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in _VOLATILE:
                out[k] = "<n>"
            elif k in _IDS and isinstance(v, str) and v not in ("0", ""):
                out[k] = ids.name(format(int(v), "x"))
            elif k in ("peerURLs", "clientURLs"):
                out[k] = [re.sub(r":\d+", ":<port>", u) for u in v]
            else:
                out[k] = normalise(v, ids)
        return out
    if isinstance(value, list):
        return [normalise(v, ids) for v in value]
    return value
