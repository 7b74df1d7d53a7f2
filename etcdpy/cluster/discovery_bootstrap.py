"""Where a new member learns its initial cluster: the static `--initial-cluster`, etcd's v2
discovery URL, etcd 3.6's v3 discovery, or DNS SRV records (etcd's PeerURLsMapAndToken plus
its discovery step). Kept apart from `bootstrap` so that the modules the server imports do not
pull in the gRPC client v3 discovery uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from etcdpy.cluster import discovery, discovery_v3, srv
from etcdpy.cluster.bootstrap import BootstrapError
from etcdpy.cluster.membership import compute_member_id, parse_initial_cluster


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    """Where a new member learns its initial cluster: the static `--initial-cluster`, a v2
    discovery URL, etcd 3.6's v3 discovery, or DNS SRV records (at most one is set)."""

    name: str
    advertise_peer_urls: tuple[str, ...]
    initial_cluster: str
    initial_cluster_token: str
    discovery_url: str = ""
    discovery_proxy: str = ""
    srv_domain: str = ""
    srv_name: str = ""
    v3: discovery_v3.V3DiscoveryConfig | None = None

    def __post_init__(self) -> None:
        sources = [bool(self.discovery_url), bool(self.srv_domain), self.v3 is not None]
        assert sum(sources) <= 1, "config validation admits one bootstrap source"

    @property
    def discovers(self) -> bool:
        return bool(self.discovery_url or self.srv_domain or self.v3 is not None)


def discover_initial_cluster(s: DiscoverySettings) -> tuple[str, str]:
    """(initial cluster, cluster token) of a member bootstrapping a new cluster, as etcd's
    PeerURLsMapAndToken and its discovery steps find them. Blocks while discovery waits for
    the other members; raises discovery.DiscoveryError or BootstrapError."""
    own = ",".join(f"{s.name}={u}" for u in sorted(s.advertise_peer_urls))
    if s.discovery_url or s.v3 is not None:
        # The member ID is hashed with the discovery URL (v2) or token (v3) as cluster token.
        token = s.discovery_url or (s.v3.token if s.v3 is not None else "")
        me = compute_member_id(s.advertise_peer_urls, token)
        if s.v3 is not None:
            cluster = discovery_v3.join_cluster(s.v3, me, own)
        else:
            cluster = discovery.join_cluster(s.discovery_url, s.discovery_proxy, me, own)
        urls = [u for member_urls in parse_initial_cluster(cluster).values()
                for u in member_urls]
        if len(urls) != len(set(urls)):
            raise BootstrapError(f"discovery cluster {cluster} has duplicate url")
        return cluster, token
    if s.srv_domain:
        try:
            cluster = srv.dns_cluster(s.name, s.srv_domain, s.srv_name, s.advertise_peer_urls)
        except (srv.SrvError, LookupError) as err:
            # etcd's embed.StartEtcd wraps every PeerURLsMapAndToken error so.
            raise BootstrapError(f"error setting up initial cluster: {err}") from None
        return cluster, s.initial_cluster_token
    return s.initial_cluster, s.initial_cluster_token
