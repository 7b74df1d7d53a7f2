"""`etcdctl user/role/auth ...` and `etcdctl --user ...` on etcdpy and on real etcd 3.5.1: what
the user sees (output, errors, exit codes, auth revisions) must be the same."""

from __future__ import annotations

import pytest

from tests.e2e.pair import Outcome, Pair

pytestmark = pytest.mark.e2e

ROOT = ("--user", "root:rootpw")
ALICE = ("--user", "alice:apw")


def same_but_endpoint(pair: Pair, *args: str, input: str | None = None  # noqa: A002
                      ) -> Outcome:
    """Like `pair.same`, for commands whose messages name the endpoint they talked to."""
    want, got = pair.run(*args, input=input)

    def scrub(o: Outcome, endpoint: str) -> Outcome:
        return Outcome(o.returncode, o.stdout.replace(endpoint, "<endpoint>"),
                       o.stderr.replace(endpoint, "<endpoint>"))

    want, got = scrub(want, pair.etcd.endpoint), scrub(got, pair.etcdpy.endpoint)
    assert got == want, f"etcdctl {' '.join(args)}\netcd:   {want}\netcdpy: {got}"
    return want


def test_user_role_auth_management_matches_etcd(pair: Pair) -> None:
    steps: list[tuple[str, ...]] = [
        ("auth", "status"),
        ("auth", "enable"),  # no root user yet
        ("user", "add", "root:rootpw"),
        ("auth", "status"),
        ("role", "get", "root"),
        ("auth", "enable"),  # etcdctl adds the root role and grants it, then enables
        ("auth", "status"),
        ("get", "foo"),  # no user: refused
        ("--user", "root:wrong", "get", "foo"),
        ("--user", "nobody:x", "get", "foo"),
        (*ROOT, "user", "add", "alice:apw"),
        (*ROOT, "user", "add", "alice:apw"),
        (*ROOT, "user", "add", "bob", "--no-password"),
        (*ROOT, "user", "add", "a:b:c"),
        (*ROOT, "role", "add", "r1"),
        (*ROOT, "role", "add", "r1"),
        (*ROOT, "role", "add", ""),
        (*ROOT, "role", "grant-permission", "r1", "readwrite", "/a", "/b"),
        (*ROOT, "role", "grant-permission", "r1", "read", "/p", "--prefix"),
        (*ROOT, "role", "grant-permission", "r1", "write", "k1"),
        (*ROOT, "role", "grant-permission", "r1", "read", "k1"),
        (*ROOT, "role", "grant-permission", "r1", "read", "z", "--from-key"),
        (*ROOT, "role", "grant-permission", "nor", "read", "z"),
        (*ROOT, "role", "get", "r1"),
        (*ROOT, "role", "get", "nor"),
        (*ROOT, "user", "grant-role", "alice", "r1"),
        (*ROOT, "user", "grant-role", "alice", "r1"),
        (*ROOT, "user", "grant-role", "alice", "nor"),
        (*ROOT, "user", "grant-role", "nou", "r1"),
        (*ROOT, "user", "get", "alice"),
        (*ROOT, "user", "get", "alice", "--detail"),
        (*ROOT, "user", "get", "nou"),
        (*ROOT, "user", "list"),
        (*ROOT, "role", "list"),
        (*ROOT, "auth", "status"),
        (*ALICE, "user", "list"),
        (*ALICE, "user", "get", "alice"),
        (*ALICE, "user", "get", "root"),
        (*ALICE, "role", "get", "r1"),
        (*ALICE, "role", "get", "root"),
        (*ALICE, "auth", "status"),
        (*ALICE, "auth", "disable"),
        ("--user", "bob:x", "get", "foo"),
        (*ROOT, "role", "revoke-permission", "r1", "k1"),
        (*ROOT, "role", "revoke-permission", "r1", "k1"),
        (*ROOT, "role", "revoke-permission", "r1", "/p", "--prefix"),
        (*ROOT, "role", "revoke-permission", "nor", "/p"),
        (*ROOT, "user", "revoke-role", "alice", "r1"),
        (*ROOT, "user", "revoke-role", "alice", "r1"),
        (*ROOT, "user", "revoke-role", "root", "root"),
        (*ROOT, "user", "delete", "root"),
        (*ROOT, "role", "delete", "root"),
        (*ROOT, "role", "delete", "nor"),
        (*ROOT, "user", "delete", "nou"),
        (*ROOT, "user", "delete", "a"),
        (*ROOT, "role", "delete", "r1"),
        (*ROOT, "user", "get", "alice"),
        (*ROOT, "auth", "status"),
        (*ROOT, "auth", "disable"),
        ("auth", "status"),
        ("auth", "disable"),
        (*ROOT, "put", "foo", "bar"),  # a user given while auth is off is ignored
        ("get", "foo"),
    ]
    for step in steps:
        pair.same(*step)
    status = pair.same("auth", "status")
    assert status.stdout == "Authentication Status: false\nAuthRevision: 20\n"


def test_password_change_and_json_output_match_etcd(pair: Pair) -> None:
    for step in (("user", "add", "root:rootpw"), ("auth", "enable"),
                 (*ROOT, "user", "add", "carol:cpw"), (*ROOT, "role", "add", "rc"),
                 (*ROOT, "role", "grant-permission", "rc", "readwrite", "/c", "--prefix"),
                 (*ROOT, "user", "grant-role", "carol", "rc")):
        pair.same(*step)
    pair.same("--user", "carol:cpw", "put", "/c/1", "v")
    pair.same(*ROOT, "user", "passwd", "carol", "--interactive=false", input="newpw\n")
    pair.same("--user", "carol:cpw", "get", "/c/1")
    pair.same("--user", "carol:newpw", "get", "/c/1")
    for step in (("auth", "status"), ("user", "get", "carol"), ("user", "list"),
                 ("role", "get", "rc"), ("role", "list")):
        pair.same(*ROOT, "-w", "json", *step, json_output=True)


def test_permissions_on_kv_lease_and_maintenance_match_etcd(pair: Pair) -> None:
    for step in (("user", "add", "root:rootpw"), ("auth", "enable"),
                 (*ROOT, "user", "add", "alice:apw"), (*ROOT, "role", "add", "r1"),
                 (*ROOT, "role", "grant-permission", "r1", "readwrite", "/a", "/b"),
                 (*ROOT, "role", "grant-permission", "r1", "read", "k1"),
                 (*ROOT, "user", "grant-role", "alice", "r1"),
                 (*ROOT, "put", "k1", "v1")):
        pair.same(*step)
    for step in (
        ("put", "/a1", "v"), ("put", "/b", "v"), ("get", "/a1"), ("get", "/a", "/b"),
        ("get", "/a", "/c"), ("get", "k1"), ("put", "k1", "x"), ("put", "--prev-kv", "/a1", "y"),
        ("del", "k1"), ("del", "--prev-kv", "/a1"), ("get", "/a", "--from-key"),
        ("txn", "--interactive=false"),
        ("compaction", "1"), ("lease", "grant", "100"), ("alarm", "disarm"), ("endpoint", "hashkv"), ("alarm", "list"),
        ("defrag",), ("member", "add", "m2", "--peer-urls=http://127.0.0.1:1"),
        ("member", "remove", "1234"), ("auth", "disable"),
    ):
        txn_input = "value(\"k1\") = \"v1\"\n\nput /a2 x\n\nput /zz y\n\n" \
            if step[0] == "txn" else None
        same_but_endpoint(pair, *ALICE, *step, input=txn_input)


def test_lock_and_election_recipes_are_checked_like_etcd(pair: Pair) -> None:
    for step in (("user", "add", "root:rootpw"), ("auth", "enable"),
                 (*ROOT, "user", "add", "alice:apw"), (*ROOT, "role", "add", "r1"),
                 (*ROOT, "role", "grant-permission", "r1", "readwrite", "/a", "--prefix"),
                 (*ROOT, "user", "grant-role", "alice", "r1")):
        pair.same(*step)
    held = pair.same(*ALICE, "lock", "/a/lock", "echo", "held")
    assert held.returncode == 0 and "held" in held.stdout
    refused = pair.same(*ALICE, "lock", "/zz/lock", "echo", "held")
    assert refused.returncode != 0 and "permission denied" in refused.stderr
    refused = pair.same(*ALICE, "elect", "-l", "/zz/election")
    assert refused.returncode != 0 and "permission denied" in refused.stderr
    assert pair.same(*ROOT, "get", "/zz", "--prefix", "--keys-only").stdout == ""
