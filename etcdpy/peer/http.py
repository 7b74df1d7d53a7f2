"""etcd's peer HTTP endpoints that third parties use: `GET /members` and `GET /version`.

Patroni's SRV fallback and joining etcd members call them on the peer URL, so the bodies and
headers are etcd 3.5's: members as `[{"id":<uint64>,"peerURLs":[..],"name":..,
"clientURLs":[..]}]` with `"isLearner":true` only for learners (Go's omitempty), the cluster ID
in `X-Etcd-Cluster-Id`, and etcd's plain-text 404 and 405 answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from etcdpy import ETCD_CLUSTER_VERSION, ETCD_SERVER_VERSION
from etcdpy.netshare import HttpRequest, HttpResponse


@dataclass(frozen=True, slots=True)
class MemberInfo:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "peerURLs": list(self.peer_urls),
            "name": self.name,
            "clientURLs": list(self.client_urls),
        }
        if self.is_learner:
            out["isLearner"] = True
        return out


_JSON = ("Content-Type", "application/json")


class PeerHttpHandler:
    """An `etcdpy.netshare.HttpHandler` for the peer port."""

    def __init__(
        self,
        cluster_id: Callable[[], int],
        members: Callable[[], Sequence[MemberInfo]],
        server_version: str = ETCD_SERVER_VERSION,
        cluster_version: Callable[[], str] = lambda: ETCD_CLUSTER_VERSION,
    ) -> None:
        self._cluster_id = cluster_id
        self._members = members
        self._server_version = server_version
        self._cluster_version = cluster_version

    async def __call__(self, req: HttpRequest) -> HttpResponse:
        if req.path == "/members":
            if req.method != "GET":
                return _not_allowed()
            body = json.dumps([m.to_json() for m in self._members()], separators=(",", ":"))
            headers = (_JSON, ("X-Etcd-Cluster-Id", f"{self._cluster_id():x}"))
            return HttpResponse(200, headers, body.encode())
        if req.path == "/version":
            if req.method != "GET":
                return _not_allowed()
            body = json.dumps(
                {"etcdserver": self._server_version, "etcdcluster": self._cluster_version()},
                separators=(",", ":"),
            )
            return HttpResponse(200, (_JSON,), body.encode())
        return HttpResponse.text(404, "404 page not found\n")


def _not_allowed() -> HttpResponse:
    return HttpResponse.text(405, "Method Not Allowed\n", (("Allow", "GET"),))
