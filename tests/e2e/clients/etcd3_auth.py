"""python-etcd3 with user and password, run as
`python -m tests.e2e.clients.etcd3_auth HOST:PORT` against a server where alice may read and
write the prefix /a and nothing else. Prints one JSON object: what the client saw.

A separate process for the same reason as etcd3_scenarios.py (python-etcd3's generated code
needs the pure-Python protobuf).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import etcd3  # type: ignore[import-untyped]
import grpc

WAIT_S = 10.0


def outcome(call: Callable[[], Any]) -> Any:
    """What a call returned, or the error it raised (gRPC code and text, or its class)."""
    try:
        return call()
    except grpc.RpcError as error:
        return ["error", error.code().name, error.details()]
    except Exception as error:  # python-etcd3 translates some codes into its own classes
        return ["error", type(error).__name__]


def main(argv: list[str]) -> int:
    host, port = argv[0].rsplit(":", 1)

    def connect(password: str) -> Any:
        return etcd3.client(host=host, port=int(port), timeout=WAIT_S, user="alice",
                            password=password)

    seen: dict[str, Any] = {"wrong_password": outcome(lambda: connect("nope") and "connected")}
    client = connect("apw")
    # python-etcd3 sends its token twice: as plain metadata and as call credentials. grpcio
    # refuses call credentials on a plaintext channel before sending anything, so, as users
    # of python-etcd3 without TLS do, keep the metadata (the token it obtained) and drop the
    # credentials wrapper.
    client.call_credentials = None
    try:
        seen["put"] = outcome(lambda: client.put("/a/1", "uno").header.revision > 0)
        seen["get"] = outcome(lambda: client.get("/a/1")[0].decode())
        seen["prefix"] = outcome(lambda: [v.decode() for v, _m in client.get_prefix("/a/")])
        seen["put_denied"] = outcome(lambda: client.put("/b/1", "x"))
        seen["get_denied"] = outcome(lambda: client.get("/b/1"))
        seen["txn"] = outcome(lambda: client.transaction(
            compare=[client.transactions.value("/a/1") == "uno"],
            success=[client.transactions.put("/a/2", "dos")], failure=[])[0])
        seen["txn_denied"] = outcome(lambda: client.transaction(
            compare=[], success=[client.transactions.put("/b/2", "x")], failure=[]))
        seen["delete"] = outcome(lambda: client.delete("/a/1"))
        lease = client.lease(60)
        seen["lease_put"] = outcome(lambda: client.put("/a/3", "tres", lease=lease) and True)
        seen["lease_revoke"] = outcome(lambda: lease.revoke() and True)
        seen["after_revoke"] = outcome(lambda: client.get("/a/3")[0])
        seen["after_delete"] = outcome(lambda: client.get("/a/1")[0])
    finally:
        client.close()
    print(json.dumps(seen, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
