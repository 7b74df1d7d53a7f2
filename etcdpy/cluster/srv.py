"""DNS SRV bootstrap (`--discovery-srv <domain>`, `--discovery-srv-name <suffix>`), as etcd's.

The members of a new cluster are the targets of `_etcd-server-ssl[-suffix]._tcp.<domain>`
(https) and `_etcd-server[-suffix]._tcp.<domain>` (http). Each target is resolved to an IP:port
and compared with this member's resolved advertised peer URLs: the match is named `--name`,
the others get temporary names "0", "1", .... The URLs keep the SRV targets' host names, so
every member hashes the same member IDs. SRV records are read with dnspython using the
system's resolver configuration (/etc/resolv.conf); host names are resolved with the system's
resolver (getaddrinfo: /etc/hosts, then DNS), as Go's resolver does for etcd.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.exception
import dns.resolver

from etcdpy import logutil

log = logutil.get("srv")

LOOKUP_TIMEOUT_S = 10.0


class SrvError(Exception):
    """SRV discovery found no cluster (etcd's error text)."""


@dataclass(frozen=True, slots=True)
class SrvTarget:
    target: str  # as in the record, with its trailing dot
    port: int
    priority: int = 0
    weight: int = 0


SrvLookup = Callable[[str], list[SrvTarget]]
AddrResolver = Callable[[str, int], str]


def srv_service(service: str, suffix: str, scheme: str) -> str:
    """etcd's GetSRVService: "etcd-server" -> "etcd-server-ssl" for https, then "-suffix"."""
    if scheme == "https":
        service += "-ssl"
    return f"{service}-{suffix}" if suffix else service


def lookup_srv(qname: str) -> list[SrvTarget]:
    """The SRV records of `qname`, ordered by priority then weight (as Go's net.LookupSRV
    orders them, less its random tie-breaking); raises LookupError with Go's wording."""
    resolver = dns.resolver.Resolver()  # reads /etc/resolv.conf
    server = f"{resolver.nameservers[0]}:53" if resolver.nameservers else "resolver"
    try:
        answer = resolver.resolve(qname, "SRV", lifetime=LOOKUP_TIMEOUT_S)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        raise LookupError(f"lookup {qname} on {server}: no such host") from None
    except dns.resolver.NoNameservers:
        # A SERVFAIL or REFUSED answer: Go's resolver calls that a misbehaving server.
        raise LookupError(f"lookup {qname} on {server}: server misbehaving") from None
    except dns.exception.Timeout:
        raise LookupError(f"lookup {qname} on {server}: i/o timeout") from None
    except dns.exception.DNSException as err:
        raise LookupError(f"lookup {qname} on {server}: {err}") from None
    records = [SrvTarget(str(r.target), int(r.port), int(r.priority), int(r.weight))
               for r in answer]
    return sorted(records, key=lambda r: (r.priority, -r.weight))


def resolve_tcp(host: str, port: int) -> str:
    """host:port -> "ip:port" (IPv4 preferred, as Go's ResolveTCPAddr)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise LookupError(f"lookup {host}: {err.strerror}") from None
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    address = infos[0][4][0]
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def get_cluster(scheme: str, service: str, name: str, domain: str,
                advertise_peer_urls: Sequence[str],
                lookup: SrvLookup = lookup_srv, resolve: AddrResolver = resolve_tcp,
                first_temp_name: int = 0) -> list[str]:
    """etcd's srv.GetCluster: "name=scheme://target:port" for each record of `service`."""
    by_address: dict[str, str] = {}
    for url in advertise_peer_urls:
        host, port = _url_host_port(url)
        by_address[resolve(host, port)] = url
    try:
        records = lookup(f"_{service}._tcp.{domain}")
    except LookupError as err:
        raise SrvError(f"error querying DNS SRV records for _{service} {err}") from None
    parts: list[str] = []
    last_error = ""
    temp_name = first_temp_name
    for record in records:
        try:
            address = resolve(record.target, record.port)
        except LookupError as err:
            last_error = str(err)
            continue
        host = record.target.rstrip(".")
        url_host = f"[{host}]:{record.port}" if ":" in host else f"{host}:{record.port}"
        mine = by_address.get(address)
        if mine is not None and urlsplit(mine).scheme != scheme:
            last_error = (f"bootstrap at {scheme}://{url_host} from DNS for {service} has scheme "
                          f"mismatch with expected peer {mine}")
            continue
        if mine is not None:
            member = name
        else:
            member = str(temp_name)
            temp_name += 1
        parts.append(f"{member}={scheme}://{url_host}")
    if not parts:
        raise SrvError(f"error querying DNS SRV records for _{service} {last_error}")
    return parts


def dns_cluster(name: str, domain: str, suffix: str, advertise_peer_urls: Sequence[str],
                lookup: SrvLookup = lookup_srv, resolve: AddrResolver = resolve_tcp) -> str:
    """The initial cluster from both SRV services (etcd's GetDNSClusterNames plus the
    checks of PeerURLsMapAndToken); raises SrvError with etcd's text."""
    found: list[str] = []
    errors: list[str] = []
    for scheme in ("https", "http"):
        service = srv_service("etcd-server", suffix, scheme)
        try:
            # Temporary names continue across both services so they stay unique.
            more = get_cluster(scheme, service, name, domain, advertise_peer_urls, lookup,
                               resolve, first_temp_name=sum(
                                   1 for p in found if not p.startswith(f"{name}=")))
        except SrvError as err:
            more, error = [], str(err)
            errors.append(error)
        else:
            error = ""
            found.extend(more)
        which = "etcd-server-ssl" if scheme == "https" else "etcd-server"
        log.info(f"get cluster for {which} SRV",
                 **{"service-scheme": scheme, "service-name": service, "server-name": name,
                    "discovery-srv": domain, "advertise-peer-urls": list(advertise_peer_urls),
                    "found-cluster": list(found), "error": error or None})
    if errors:
        log.warning("failed to resolve during SRV discovery", error="; ".join(errors))
    if not found:
        raise SrvError("; ".join(errors))
    for node in found:
        log.info("got bootstrap from DNS for etcd-server", node=node)
    if not any(p.partition("=")[0] == name for p in found):
        raise SrvError(f'cannot find local etcd member "{name}" in SRV records')
    return ",".join(found)


def client_endpoints(domain: str, suffix: str = "",
                     lookup: SrvLookup = lookup_srv) -> list[str]:
    """etcd's srv.GetClient for `_etcd-client[-ssl]`: the client URLs the records name."""
    urls: list[str] = []
    errors: list[str] = []
    for scheme in ("https", "http"):
        try:
            records = lookup(f"_{srv_service('etcd-client', suffix, scheme)}._tcp.{domain}")
        except LookupError as err:
            errors.append(str(err))
            continue
        urls.extend(f"{scheme}://{r.target}:{r.port}" for r in records)
    if len(errors) == 2:
        raise SrvError(f"dns lookup errors: {errors[0]} and {errors[1]}")
    return urls
