"""Member and cluster IDs come out as etcd 3.5 computes them."""

from etcdpy.cluster.membership import (
    compute_cluster_id,
    compute_member_id,
    format_id,
    members_from_initial_cluster,
    parse_initial_cluster,
)


def test_ids_match_those_real_etcd_logged() -> None:
    # etcd 3.5.1 started with --initial-cluster default=http://127.0.0.1:23800 and the
    # default token logged local-member-id 2e1259d415f2a040 and cluster-id 48276a8f75b6a87.
    mid = compute_member_id(["http://127.0.0.1:23800"], "etcd-cluster")
    assert format_id(mid) == "2e1259d415f2a040"
    assert format_id(compute_cluster_id([mid])) == "48276a8f75b6a87"


def test_peer_url_order_does_not_matter_but_token_does() -> None:
    a = compute_member_id(["http://b:2380", "http://a:2380"], "t")
    assert a == compute_member_id(["http://a:2380", "http://b:2380"], "t")
    assert a != compute_member_id(["http://a:2380", "http://b:2380"], "other")
    assert a != compute_member_id(["http://a:2380", "http://b:2380"], "t", now_s=1)


def test_initial_cluster_parsing_groups_urls_by_name() -> None:
    parsed = parse_initial_cluster("m1=http://a:1,m2=http://b:2,m1=http://c:3")
    assert parsed == {"m1": ["http://a:1", "http://c:3"], "m2": ["http://b:2"]}
    members = members_from_initial_cluster("m1=http://a:1,m2=http://b:2", "tok")
    assert [m.id for m in members] == sorted(m.id for m in members)
    assert {m.name for m in members} == {"m1", "m2"}
