"""Discovery's pure parts: SRV self-matching and names, joining registrations, error texts,
proxy sanitising, the discovery flags' conflicts."""

from __future__ import annotations

import pytest

from etcdpy import config as cfg
from etcdpy.cluster import discovery, srv
from etcdpy.cluster.discovery import DiscoveryError, Node, V2Error, nodes_to_cluster
from etcdpy.cluster.discovery_bootstrap import DiscoverySettings, discover_initial_cluster
from etcdpy.netshare import HttpRequest
from etcdpy.server.api import v2keys

ADDRESSES = {"m1.x.test": "10.0.0.1", "m2.x.test": "10.0.0.2", "m3.x.test": "10.0.0.3",
             "me.alias.test": "10.0.0.2"}


def resolve(host: str, port: int) -> str:
    host = host.rstrip(".")
    if host not in ADDRESSES and not host[0].isdigit():
        raise LookupError(f"lookup {host}: no such host")
    return f"{ADDRESSES.get(host, host)}:{port}"


def records(table: dict[str, list[tuple[str, int]]]) -> srv.SrvLookup:
    def lookup(qname: str) -> list[srv.SrvTarget]:
        if qname not in table:
            raise LookupError(f"lookup {qname} on 10.0.0.53:53: no such host")
        return [srv.SrvTarget(t, p) for t, p in table[qname]]
    return lookup


THREE = [("m1.x.test.", 2380), ("m2.x.test.", 2380), ("m3.x.test.", 2380)]


def test_srv_service_names_with_scheme_and_suffix() -> None:
    assert srv.srv_service("etcd-server", "", "http") == "etcd-server"
    assert srv.srv_service("etcd-server", "", "https") == "etcd-server-ssl"
    assert srv.srv_service("etcd-server", "prod", "https") == "etcd-server-ssl-prod"
    assert srv.srv_service("etcd-client", "prod", "http") == "etcd-client-prod"


def test_srv_names_the_matching_target_and_numbers_the_others() -> None:
    lookup = records({"_etcd-server._tcp.x.test": THREE})
    # This member advertises another name of m2's address: the match is by IP:port.
    cluster = srv.dns_cluster("me", "x.test", "", ["http://me.alias.test:2380"], lookup, resolve)
    assert cluster == "0=http://m1.x.test:2380,me=http://m2.x.test:2380,1=http://m3.x.test:2380"


def test_srv_merges_https_and_http_records_with_unique_temporary_names() -> None:
    lookup = records({"_etcd-server-ssl._tcp.x.test": [("m1.x.test.", 2380)],
                      "_etcd-server._tcp.x.test": [("m2.x.test.", 2380), ("m3.x.test.", 2380)]})
    cluster = srv.dns_cluster("m3", "x.test", "", ["http://m3.x.test:2380"], lookup, resolve)
    assert cluster == "0=https://m1.x.test:2380,1=http://m2.x.test:2380,m3=http://m3.x.test:2380"


def test_srv_without_records_reports_both_lookups() -> None:
    with pytest.raises(srv.SrvError) as err:
        srv.dns_cluster("m1", "x.test", "", ["http://m1.x.test:2380"], records({}), resolve)
    assert str(err.value) == (
        "error querying DNS SRV records for _etcd-server-ssl lookup _etcd-server-ssl._tcp.x.test "
        "on 10.0.0.53:53: no such host; error querying DNS SRV records for _etcd-server lookup "
        "_etcd-server._tcp.x.test on 10.0.0.53:53: no such host")


def test_srv_without_this_member_is_refused() -> None:
    lookup = records({"_etcd-server._tcp.x.test": THREE[:2]})
    with pytest.raises(srv.SrvError, match='cannot find local etcd member "m3" in SRV records'):
        srv.dns_cluster("m3", "x.test", "", ["http://m3.x.test:2380"], lookup, resolve)


def test_srv_scheme_mismatch_is_etcds_error() -> None:
    lookup = records({"_etcd-server-ssl._tcp.x.test": [("m1.x.test.", 2380)]})
    with pytest.raises(srv.SrvError) as err:
        srv.get_cluster("https", "etcd-server-ssl", "m1", "x.test", ["http://m1.x.test:2380"],
                        lookup, resolve)
    assert str(err.value) == (
        "error querying DNS SRV records for _etcd-server-ssl bootstrap at "
        "https://m1.x.test:2380 from DNS for etcd-server-ssl has scheme mismatch with expected "
        "peer http://m1.x.test:2380")


def test_srv_client_endpoints_need_one_of_the_two_services() -> None:
    lookup = records({"_etcd-client._tcp.x.test": [("m1.x.test.", 2379)]})
    assert srv.client_endpoints("x.test", "", lookup) == ["http://m1.x.test.:2379"]
    with pytest.raises(srv.SrvError, match="^dns lookup errors: lookup _etcd-client-ssl"):
        srv.client_endpoints("y.test", "", lookup)


def _node(key: str, value: str, index: int) -> Node:
    return Node(key, value, index, index)


def test_registrations_join_into_an_initial_cluster() -> None:
    nodes = [_node("/t/a", "m1=http://h1:2380", 5), _node("/t/b", "m2=http://h2:2380", 6)]
    assert nodes_to_cluster(nodes, 2) == "m1=http://h1:2380,m2=http://h2:2380"


def test_registrations_with_a_repeated_name_or_a_bad_url_are_refused() -> None:
    same = [_node("/t/a", "m1=http://h1:2380", 5), _node("/t/b", "m1=http://h2:2380", 6)]
    with pytest.raises(discovery._Failure, match="^discovery: found duplicate name$"):
        nodes_to_cluster(same, 2)
    bad = [_node("/t/a", "m1=not-a-url", 5)]
    with pytest.raises(discovery._Failure, match="^discovery: invalid URL$"):
        nodes_to_cluster(bad, 1)


def test_texts_are_etcds() -> None:
    assert str(V2Error(100, "Key not found", "/d/t", 6)) == "100: Key not found (/d/t) [6]"
    assert str(DiscoveryError("discovery: cluster is full")) == (
        "failed to join discovery cluster (discovery: cluster is full)")


def test_proxy_without_a_scheme_gets_http() -> None:
    assert discovery.proxy_url("10.0.0.9:3128") == "http://10.0.0.9:3128"
    assert discovery.proxy_url("https://p.example:443") == "https://p.example:443"


@pytest.mark.parametrize("durl, cause", [
    ("http://[::1/x", "parse \"http://[::1/x\": missing ']' in host"),
    ("foo", 'unsupported protocol scheme ""'),
])
def test_a_malformed_discovery_url_fails_at_once(durl: str, cause: str) -> None:
    settings = DiscoverySettings("m1", ("http://127.0.0.1:2380",), "", "etcd-cluster",
                                 discovery_url=durl)
    with pytest.raises(DiscoveryError) as err:
        discover_initial_cluster(settings)
    assert err.value.cause == cause


def test_static_settings_pass_the_initial_cluster_through() -> None:
    settings = DiscoverySettings("m1", ("http://h:2380",), "m1=http://h:2380", "tok")
    assert not settings.discovers
    assert discover_initial_cluster(settings) == ("m1=http://h:2380", "tok")


def _refused(argv: list[str]) -> str:
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(cfg.parse_argv(argv).as_dict(), {})
    return err.value.message


def test_v3_discovery_flags_conflict_as_in_etcd_36() -> None:
    assert _refused(["--discovery-token=t"]) == (
        "both --discovery-token and --discovery-endpoints must be set")
    assert _refused(["--discovery-proxy=http://p:3128", "--discovery-token=t",
                     "--discovery-endpoints=http://r:2379"]).startswith(
        "both v2 discovery settings (discovery, discovery-proxy) and v3 discovery settings")
    assert _refused(["--initial-cluster=a=http://h:2380", "--discovery-token=t",
                     "--discovery-endpoints=http://r:2379"]) == cfg.ERR_CONFLICT_BOOTSTRAP_FLAGS_36
    assert _refused(["--discovery=http://r/x", "--discovery-srv=x.test"]) == (
        cfg.ERR_CONFLICT_BOOTSTRAP_FLAGS)


def test_v3_discovery_flags_have_36s_defaults_and_clear_the_default_cluster() -> None:
    loaded = cfg.load(cfg.parse_argv(["--discovery-token=t",
                                      "--discovery-endpoints=http://a:2379,http://b:2379"]).as_dict(),
                      {})
    c = loaded.config
    assert c.discovery_endpoints == ("http://a:2379", "http://b:2379")
    assert c.discovery_dial_timeout.total_seconds() == 2
    assert c.discovery_request_timeout.total_seconds() == 5
    assert c.discovery_keepalive_time.total_seconds() == 2
    assert c.discovery_keepalive_timeout.total_seconds() == 6
    assert c.discovery_insecure_transport is True
    assert c.discovery_insecure_skip_tls_verify is False
    assert c.initial_cluster == "" and c.uses_discovery


@pytest.mark.parametrize("raw, cleaned", [
    ("", "/"), ("/", "/"), ("/a/b/", "/a/b"), ("//a//b", "/a/b"), ("/a/./b/../c", "/a/c"),
    ("/../a", "/a"),
])
def test_v2_keys_are_cleaned_as_etcd_cleans_them(raw: str, cleaned: str) -> None:
    assert v2keys.clean_path(raw) == cleaned


def test_v2_form_values_come_from_query_and_body_the_body_winning() -> None:
    req = HttpRequest("PUT", "/v2/keys/a?value=q&ttl=5",
                      (("content-type", "application/x-www-form-urlencoded"),), b"value=body")
    params = v2keys.Params.of(req)
    assert params.get("value") == "body" and params.get("ttl") == "5"
    assert not params.has("prevExist")
