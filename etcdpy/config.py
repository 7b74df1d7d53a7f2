"""etcd 3.5's server settings: flags, `ETCD_*` environment variables and `--config-file` YAML.

One `Config` holds every setting etcd 3.5 accepts, under etcd's flag names in snake_case,
with etcd's types and defaults.  Each field carries its `FlagSpec` (kind, help group, text,
YAML key) in its dataclass metadata, so the flag table, the environment mapping, the YAML
keys and the help text all come from one place: the field list below.

Loading follows `etcdmain` of etcd 3.5.1 (the specification):

* `parse_argv` tokenizes like Go's `flag` package (`-flag`, `--flag`, `--flag=value`,
  bool flags take no separate value, parsing stops at the first non-flag argument);
* `load` picks the source: a config file (`--config-file` / `ETCD_CONFIG_FILE`) replaces
  flags and environment entirely; otherwise command-line flags win and `ETCD_<FLAG>`
  variables fill in the rest;
* `Config.validate` reproduces etcd's checks and error messages word for word, because
  operators and scripts grep for them.

Errors carry etcd's exit code and output shape: Go flag-package errors print the message
and the usage text (exit 2); validation errors are logged as "failed to verify flags"
(exit 1).  This module uses only the standard library and PyYAML.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import yaml

from etcdpy import ETCD_SERVER_VERSION

# --------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """A setting is invalid; `message` is etcd's text, `exit_code` etcd's status."""

    exit_code: int = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code
        # Log lines etcd prints before failing (e.g. unrecognized ETCD_* variables).
        self.notices: tuple[Notice, ...] = ()


class FlagError(ConfigError):
    """Go's flag package rejected the command line: etcd prints it with the usage, exit 2."""

    exit_code = 2


class FatalConfigError(ConfigError):
    """etcd logs these at fatal level (its `lg.Fatal`), with one extra field; exit 1."""

    def __init__(self, message: str, fields: Mapping[str, str]) -> None:
        super().__init__(message, 1)
        self.fields = dict(fields)


class PlainConfigError(ConfigError):
    """etcd prints these unstructured to stderr and exits 1 (YAML URL errors)."""


class HelpRequested(Exception):
    """`-h`, `-help` or `--help` was given: print the flag help to stdout, exit 0."""


# etcd's ErrUnsetAdvertiseClientURLsFlag; etcdmain logs a second warning for it.
ERR_UNSET_ADVERTISE_CLIENT_URLS = (
    "--advertise-client-urls is required when --listen-client-urls is set explicitly"
)
ERR_CONFLICT_BOOTSTRAP_FLAGS = (
    "multiple discovery or bootstrap flags are set. "
    'Choose one of "initial-cluster", "discovery" or "discovery-srv"'
)
ERR_CONFLICT_BOOTSTRAP_FLAGS_36 = (
    "multiple discovery or bootstrap flags are set. "
    'Choose one of "initial-cluster", "discovery", "discovery-endpoints" or "discovery-srv"'
)
MAX_ELECTION_MS = 50000
DEFAULT_QUOTA_BYTES = 2 * 1024**3
ENV_PREFIX = "ETCD"


# --------------------------------------------------------------------------- notices


class Level(IntEnum):
    DEBUG = 0
    INFO = 1
    WARN = 2
    ERROR = 3
    FATAL = 4


@dataclass(frozen=True, slots=True)
class Notice:
    """A log line produced while loading, rendered like etcd's zap JSON lines."""

    level: Level
    msg: str
    fields: tuple[tuple[str, str], ...] = ()

    def to_json(self, now: datetime.datetime | None = None) -> str:
        ts = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")
        record: dict[str, str] = {
            "level": self.level.name.lower(),
            "ts": ts[:-3] + "Z",
            "caller": "etcdpy/config.py",
            "msg": self.msg,
        }
        record.update(self.fields)
        return json.dumps(record, separators=(",", ":"))


def error_notices(err: ConfigError) -> tuple[Notice, ...]:
    """The log lines etcd writes for a configuration error that is not a flag error."""
    if isinstance(err, FatalConfigError):
        return (Notice(Level.FATAL, err.message, tuple(err.fields.items())),)
    notes = [Notice(Level.WARN, "failed to verify flags", (("error", err.message),))]
    if err.message == ERR_UNSET_ADVERTISE_CLIENT_URLS:
        notes.append(
            Notice(Level.WARN, "advertise client URLs are not set", (("error", err.message),))
        )
    return tuple(notes)


# --------------------------------------------------------------------------- URLs

_ALLOWED_SCHEMES = ("http", "https", "unix", "unixs")


@dataclass(frozen=True, slots=True)
class EtcdURL:
    """A URL as etcd accepts it for listen/advertise lists: scheme://host:port, no path."""

    scheme: str
    host: str  # "host:port" exactly as written (IPv6 keeps its brackets)
    query: str = ""

    def __post_init__(self) -> None:
        assert self.scheme in _ALLOWED_SCHEMES, self.scheme
        assert ":" in self.host, self.host

    @property
    def hostname(self) -> str:
        name = self.host.rsplit(":", 1)[0]
        return name[1:-1] if name.startswith("[") and name.endswith("]") else name

    @property
    def port(self) -> int | None:
        text = self.host.rsplit(":", 1)[1]
        return int(text) if text else None

    @property
    def is_tls(self) -> bool:
        return self.scheme in ("https", "unixs")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}" + (f"?{self.query}" if self.query else "")


def _go_scheme(raw: str) -> tuple[str, str]:
    """Split off a scheme the way Go's url.getScheme does: ("", raw) when there is none."""
    for i, ch in enumerate(raw):
        if ch.isascii() and ch.isalpha():
            continue
        if ch.isascii() and (ch.isdigit() or ch in "+-."):
            if i == 0:
                return "", raw
            continue
        if ch == ":":
            if i == 0:
                raise ValueError(f'parse "{raw}": missing protocol scheme')
            return raw[:i].lower(), raw[i + 1 :]
        return "", raw
    return "", raw


def _split_host_port_ok(host: str) -> bool:
    """Whether Go's net.SplitHostPort accepts `host`."""
    if host.startswith("["):
        end = host.find("]")
        return end > 0 and host[end + 1 : end + 2] == ":" and "]" not in host[end + 1 :]
    return host.count(":") == 1


def parse_url(text: str) -> EtcdURL:
    """Parse one URL with etcd's rules (types.NewURLs), raising ValueError with its message."""
    raw = text.strip()
    rest = raw.split("#", 1)[0]
    scheme, rest = _go_scheme(rest)
    rest, _, query = rest.partition("?")
    if not scheme and ":" in rest.split("/", 1)[0]:
        raise ValueError(f'parse "{raw}": first path segment in URL cannot contain colon')
    host, path = "", rest
    if scheme and rest.startswith("//"):
        authority, slash, tail = rest[2:].partition("/")
        path = slash + tail
        host = authority.rsplit("@", 1)[-1]
        colon = host.rfind(":")
        if colon >= 0 and (not host.startswith("[") or host.rfind("]") < colon):
            port = host[colon + 1 :]
            if port and not port.isdigit():
                raise ValueError(f'parse "{raw}": invalid port ":{port}" after host')
    if scheme not in _ALLOWED_SCHEMES:
        raise ValueError(f"URL scheme must be http, https, unix, or unixs: {raw}")
    if not _split_host_port_ok(host):
        raise ValueError(f'URL address does not have the form "host:port": {raw}')
    if path:
        raise ValueError(f"URL must not contain a path: {raw}")
    return EtcdURL(scheme, host, query)


def parse_urls(text: str) -> tuple[EtcdURL, ...]:
    """A comma-separated URL list, sorted by text and without duplicates, as etcd keeps it."""
    urls = {str(u): u for u in (parse_url(part) for part in text.split(","))}
    return tuple(urls[key] for key in sorted(urls))


# --------------------------------------------------------------------------- value kinds


class Kind(IntEnum):
    """How a flag's text becomes a value; mirrors the Go flag.Value type etcd registers."""

    STRING = 0
    BOOL = 1
    UINT = 2  # Go uint (64-bit)
    UINT32 = 3
    UINT64 = 4
    INT = 5  # Go int (64-bit)
    INT64 = 6
    DURATION = 7
    URLS = 8  # flags.UniqueURLs
    CORS = 9  # flags.UniqueURLs with "*" allowed
    CHOICE = 10  # flags.SelectiveStringValue
    STRINGS = 11  # flags.StringsValue: comma list, order kept
    UNIQUE_STRINGS = 12  # flags.UniqueStringsValue: comma list, sorted set
    IGNORED = 13  # flags.IgnoredFlag: accepted, no effect
    CHOICE_LIST = 14  # flags.SelectiveStringsValue: comma list of allowed words


_INT_BITS = {Kind.UINT: 64, Kind.UINT32: 32, Kind.UINT64: 64, Kind.INT: 64, Kind.INT64: 64}
_UNSIGNED = (Kind.UINT, Kind.UINT32, Kind.UINT64)
_GO_TYPE = {
    Kind.STRING: "string",
    Kind.BOOL: "bool",
    Kind.UINT: "uint",
    Kind.UINT32: "uint32",
    Kind.UINT64: "uint64",
    Kind.INT: "int",
    Kind.INT64: "int64",
    Kind.DURATION: "time.Duration",
    Kind.URLS: "string",
    Kind.CORS: "string",
    Kind.CHOICE: "string",
    Kind.STRINGS: "[]string",
    Kind.UNIQUE_STRINGS: "[]string",
    Kind.IGNORED: "string",
    Kind.CHOICE_LIST: "string",
}
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")
# Go integer literal syntax: underscores only between digits or after a base prefix.
_GO_INT_RE = re.compile(
    r"0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+|0(_?[0-7])*|[1-9](_?[0-9])*"
)
_DURATION_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]+)")


def parse_go_bool(text: str) -> bool:
    """strconv.ParseBool; ValueError("parse error") like Go's flag package reports."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ValueError("parse error")


def parse_go_int(text: str, kind: Kind) -> int:
    """strconv.Parse(U)Int with base 0: Go literal syntax (0x, 0o, 0b, 0-octal, 1_000)."""
    sign, body = (text[0], text[1:]) if text[:1] in ("+", "-") else ("", text)
    if (sign and kind in _UNSIGNED) or not _GO_INT_RE.fullmatch(body):
        raise ValueError("parse error")
    digits = body.replace("_", "")
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        digits = "0o" + digits[1:]  # Go's leading-zero octal
    value = -int(digits, 0) if sign == "-" else int(digits, 0)
    bits = _INT_BITS[kind]
    low, high = (0, 2**bits - 1) if kind in _UNSIGNED else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if not low <= value <= high:
        raise ValueError("value out of range")
    return value


def parse_go_duration(text: str) -> datetime.timedelta:
    """time.ParseDuration ("1h30m", "100ms", "0"); ValueError("parse error") otherwise."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return datetime.timedelta(0)
    if not body:
        raise ValueError("parse error")
    total_ns = 0.0
    pos = 0
    while pos < len(body):
        match = _DURATION_PART_RE.match(body, pos)
        if not match or match.group(1) in ("", ".") or match.group(2) not in _DURATION_UNITS_NS:
            raise ValueError("parse error")
        total_ns += float(match.group(1)) * _DURATION_UNITS_NS[match.group(2)]
        pos = match.end()
    if text.startswith("-"):
        total_ns = -total_ns
    return datetime.timedelta(microseconds=total_ns / 1000)


def format_go_duration(value: datetime.timedelta) -> str:
    """Go's Duration.String() for whole milliseconds and up: "5s", "2h0m0s", "100ms"."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    sign, ms = ("-", -ms) if ms < 0 else ("", ms)
    if ms < 1000:
        return f"{sign}{ms}ms"
    hours, rem = divmod(ms, 3_600_000)
    minutes, rem = divmod(rem, 60_000)
    secs = f"{rem // 1000}" + (f".{rem % 1000:03d}".rstrip("0") if rem % 1000 else "")
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


# --------------------------------------------------------------------------- flag table


class Group(IntEnum):
    """Sections of `--help`, in etcd's order."""

    MEMBER = 0
    CLUSTERING = 1
    SECURITY = 2
    AUTH = 3
    MONITORING = 4
    LOGGING = 5
    TRACING = 6
    V2_PROXY = 7
    EXPERIMENTAL = 8
    UNSAFE = 9
    ETCDPY = 10


GROUP_TITLES = {
    Group.MEMBER: "Member",
    Group.CLUSTERING: "Clustering",
    Group.SECURITY: "Security",
    Group.AUTH: "Auth",
    Group.MONITORING: "Profiling and Monitoring",
    Group.LOGGING: "Logging",
    Group.TRACING: "Experimental distributed tracing",
    Group.V2_PROXY: "v2 Proxy (to be deprecated in v3.6)",
    Group.EXPERIMENTAL: "Experimental feature",
    Group.UNSAFE: "Unsafe feature",
    Group.ETCDPY: "etcdpy extensions",
}


@dataclass(frozen=True, slots=True)
class FlagSpec:
    """One etcd flag: its name, value kind, default text and where it lives in YAML."""

    name: str  # etcd's flag name, e.g. "listen-client-urls"
    kind: Kind
    default_text: str  # the text whose parse is the default value
    group: Group
    help: str
    shown_default: str | None  # what `--help` prints as the default (None: nothing)
    yaml_path: tuple[str, ...]  # key path in the config file
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert self.name and not self.name.startswith("-"), self.name
        assert isinstance(self.kind, Kind) and isinstance(self.group, Group), self.name
        assert (self.kind in (Kind.CHOICE, Kind.CHOICE_LIST)) == bool(self.choices), self.name
        assert not self.choices or self.default_text in self.choices, self.name

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env_key(self) -> str:
        return flag_to_env(self.name)

    @property
    def takes_value(self) -> bool:
        """Bool-like flags never consume the next argument (Go's IsBoolFlag)."""
        return self.kind not in (Kind.BOOL, Kind.IGNORED)

    def parse(self, text: str) -> Any:
        """Text -> value; ValueError carries the message Go's flag.Value.Set would return."""
        kind = self.kind
        if kind in (Kind.STRING, Kind.IGNORED):
            return text
        if kind is Kind.BOOL:
            return parse_go_bool(text)
        if kind in _INT_BITS:
            return parse_go_int(text, kind)
        if kind is Kind.DURATION:
            return parse_go_duration(text)
        if kind is Kind.URLS:
            return parse_urls(text) if text else ()
        if kind is Kind.CORS:
            return ("*",) if text == "*" else tuple(str(u) for u in parse_urls(text))
        if kind is Kind.CHOICE:
            if text not in self.choices:
                raise ValueError("invalid value")
            return text
        if kind is Kind.CHOICE_LIST:
            for word in text.split(","):
                if word not in self.choices:
                    raise ValueError(f'invalid value "{word}"')
            return text
        if kind is Kind.STRINGS:
            return tuple(text.split(",")) if text else ()
        assert kind is Kind.UNIQUE_STRINGS
        return tuple(sorted(set(text.split(","))))


def flag_to_env(name: str) -> str:
    """etcd's flags.FlagToEnv: "listen-client-urls" -> "ETCD_LISTEN_CLIENT_URLS"."""
    return f"{ENV_PREFIX}_{name.replace('-', '_').upper()}"


_AS_DEFAULT = "\0"  # `shown` sentinel: --help prints the default text itself
_UNNAMED = "_"


def _opt(
    kind: Kind,
    default_text: str,
    group: Group,
    help_text: str,
    *,
    shown: str | None = _AS_DEFAULT,
    yaml_path: tuple[str, ...] = (),
    choices: tuple[str, ...] = (),
) -> Any:
    """A Config field that is an etcd flag; `_build_flags` fills in the name later."""
    spec = FlagSpec(
        name=_UNNAMED,
        kind=kind,
        default_text=default_text,
        group=group,
        help=help_text,
        shown_default=default_text if shown == _AS_DEFAULT else shown,
        yaml_path=yaml_path,
        choices=choices,
    )
    return field(default=_default_for(spec), metadata={"flag": spec})


def _default_for(spec: FlagSpec) -> Any:
    if spec.default_text == "" and spec.kind is Kind.DURATION:
        return datetime.timedelta(0)
    if spec.default_text == "" and spec.kind in _INT_BITS:
        return 0
    return spec.parse(spec.default_text)


_GM, _GC, _GS, _GA = Group.MEMBER, Group.CLUSTERING, Group.SECURITY, Group.AUTH
_GMON, _GLOG, _GTR, _GPX, _GEX, _GUN = (
    Group.MONITORING,
    Group.LOGGING,
    Group.TRACING,
    Group.V2_PROXY,
    Group.EXPERIMENTAL,
    Group.UNSAFE,
)
_CTS, _PTS = "client-transport-security", "peer-transport-security"
DEFAULT_NAME = "default"
DEFAULT_INITIAL_CLUSTER = "default=http://localhost:2380"
DEFAULT_LOG_ROTATION_CONFIG = (
    '{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}'
)
_S, _B, _U, _D, _URLS = Kind.STRING, Kind.BOOL, Kind.UINT, Kind.DURATION, Kind.URLS


@dataclass(frozen=True, slots=True)
class Config:
    """Every etcd 3.5 server setting (flag names in snake_case) with etcd's defaults.

    Invariants: values have the Python type of their `Kind` (URL lists are tuples of
    `EtcdURL`, durations are `timedelta`, lists are tuples); `validate()` has not
    necessarily been run, `load()` runs it.
    """

    # --- member
    name: str = _opt(_S, "default", _GM, "Human-readable name of this member.")
    data_dir: str = _opt(_S, "", _GM, "Data directory.", shown="${name}.etcd")
    wal_dir: str = _opt(_S, "", _GM, "Separate directory for the write-ahead log.")
    snapshot_count: int = _opt(
        Kind.UINT64, "100000", _GM, "Committed entries between two snapshots to disk."
    )
    heartbeat_interval: int = _opt(_U, "100", _GM, "Heartbeat interval in milliseconds.")
    election_timeout: int = _opt(_U, "1000", _GM, "Election timeout in milliseconds.")
    initial_election_tick_advance: bool = _opt(
        _B, "true", _GM, "Fast-forward election ticks at boot so the first election comes sooner."
    )
    listen_peer_urls: tuple[EtcdURL, ...] = _opt(
        _URLS, "http://localhost:2380", _GM, "URLs to listen on for peer traffic."
    )
    listen_client_urls: tuple[EtcdURL, ...] = _opt(
        _URLS, "http://localhost:2379", _GM, "URLs to listen on for client traffic."
    )
    listen_client_http_urls: tuple[EtcdURL, ...] = _opt(
        _URLS, "", _GM, "URLs serving only HTTP client traffic (removes HTTP from client URLs)."
    )
    max_snapshots: int = _opt(_U, "5", _GM, "Snapshot files to keep (0: keep all).")
    max_wals: int = _opt(_U, "5", _GM, "WAL files to keep (0: keep all).")
    quota_backend_bytes: int = _opt(
        Kind.INT64, "0", _GM, "Backend size that raises the NOSPACE alarm (0: the default quota)."
    )
    backend_bbolt_freelist_type: str = _opt(
        _S, "map", _GM, "Free-list type of the backend (array or map); accepted for compatibility."
    )
    backend_batch_interval: datetime.timedelta = _opt(
        _D, "", _GM, "Longest time before a backend transaction is committed."
    )
    backend_batch_limit: int = _opt(
        Kind.INT, "0", _GM, "Most operations before a backend transaction is committed."
    )
    max_txn_ops: int = _opt(_U, "128", _GM, "Most operations allowed in one transaction.")
    max_request_bytes: int = _opt(_U, "1572864", _GM, "Largest client request accepted, in bytes.")
    max_concurrent_streams: int = _opt(
        Kind.UINT32, "4294967295", _GM, "Most concurrent streams per client connection."
    )
    grpc_keepalive_min_time: datetime.timedelta = _opt(
        _D, "5s", _GM, "Shortest interval a client may wait between pings."
    )
    grpc_keepalive_interval: datetime.timedelta = _opt(
        _D, "2h", _GM, "Interval of server-to-client pings (0 disables)."
    )
    grpc_keepalive_timeout: datetime.timedelta = _opt(
        _D, "20s", _GM, "Wait for a ping reply before closing the connection (0 disables)."
    )
    socket_reuse_port: bool = _opt(
        _B,
        "false",
        _GM,
        "Set SO_REUSEPORT on listeners.",
        yaml_path=("socket-options", "reuse-port"),
    )
    socket_reuse_address: bool = _opt(
        _B,
        "false",
        _GM,
        "Set SO_REUSEADDR on listeners.",
        yaml_path=("socket-options", "reuse-address"),
    )
    raft_read_timeout: datetime.timedelta = _opt(_D, "5s", _GM, "Read timeout on peer connections.")
    raft_write_timeout: datetime.timedelta = _opt(
        _D, "5s", _GM, "Write timeout on peer connections."
    )
    enable_grpc_gateway: bool = _opt(_B, "true", _GM, "Serve the JSON gateway on the client port.")

    # --- clustering
    initial_advertise_peer_urls: tuple[EtcdURL, ...] = _opt(
        _URLS, "http://localhost:2380", _GC, "This member's peer URLs as told to the other members."
    )
    initial_cluster: str = _opt(
        _S, DEFAULT_INITIAL_CLUSTER, _GC, "Members at bootstrap, as name=peer-url,..."
    )
    initial_cluster_state: str = _opt(
        Kind.CHOICE,
        "new",
        _GC,
        "'new' to bootstrap a cluster, 'existing' to join one.",
        choices=("new", "existing"),
    )
    initial_cluster_token: str = _opt(
        _S, "etcd-cluster", _GC, "Token that keeps clusters with the same peer URLs apart."
    )
    advertise_client_urls: tuple[EtcdURL, ...] = _opt(
        _URLS, "http://localhost:2379", _GC, "This member's client URLs as told to clients."
    )
    discovery: str = _opt(_S, "", _GC, "Discovery service URL used to bootstrap.")
    discovery_fallback: str = _opt(
        Kind.CHOICE,
        "proxy",
        _GC,
        "What to do when discovery fails: 'exit' or 'proxy'.",
        choices=("proxy", "exit"),
    )
    discovery_proxy: str = _opt(_S, "", _GC, "HTTP proxy for reaching the discovery service.")
    discovery_srv: str = _opt(_S, "", _GC, "DNS domain whose SRV records list the members.")
    discovery_srv_name: str = _opt(_S, "", _GC, "Suffix of the SRV service name queried.")
    # etcd 3.6's v3 discovery (names, defaults and help as 3.6 has them).
    discovery_token: str = _opt(
        _S, "", _GC, "V3 discovery: discovery token for the etcd cluster to be bootstrapped."
    )
    discovery_endpoints: tuple[str, ...] = _opt(
        Kind.STRINGS, "", _GC, "V3 discovery: List of gRPC endpoints of the discovery service."
    )
    discovery_dial_timeout: datetime.timedelta = _opt(
        _D, "2s", _GC, "V3 discovery: dial timeout for client connections."
    )
    discovery_request_timeout: datetime.timedelta = _opt(
        _D, "5s", _GC, "V3 discovery: timeout for discovery requests (excluding dial timeout)."
    )
    discovery_keepalive_time: datetime.timedelta = _opt(
        _D, "2s", _GC, "V3 discovery: keepalive time for client connections."
    )
    discovery_keepalive_timeout: datetime.timedelta = _opt(
        _D, "6s", _GC, "V3 discovery: keepalive timeout for client connections."
    )
    discovery_insecure_transport: bool = _opt(
        _B, "true", _GC, "V3 discovery: disable transport security for client connections."
    )
    discovery_insecure_skip_tls_verify: bool = _opt(
        _B,
        "false",
        _GC,
        "V3 discovery: skip server certificate verification (CAUTION: this option should be "
        "enabled only for testing purposes).",
    )
    discovery_cert: str = _opt(
        _S, "", _GC, "V3 discovery: identify secure client using this TLS certificate file."
    )
    discovery_key: str = _opt(
        _S, "", _GC, "V3 discovery: identify secure client using this TLS key file."
    )
    discovery_cacert: str = _opt(
        _S,
        "",
        _GC,
        "V3 discovery: verify certificates of TLS-enabled secure servers using this CA bundle.",
    )
    discovery_user: str = _opt(
        _S,
        "",
        _GC,
        "V3 discovery: username[:password] for authentication (prompt if password is not "
        "supplied).",
    )
    discovery_password: str = _opt(
        _S,
        "",
        _GC,
        "V3 discovery: password for authentication (if this option is used, --user option "
        "shouldn't include password).",
    )
    strict_reconfig_check: bool = _opt(
        _B, "true", _GC, "Refuse membership changes that would lose quorum."
    )
    pre_vote: bool = _opt(_B, "true", _GC, "Run Raft's pre-vote phase before elections.")
    auto_compaction_retention: str = _opt(
        _S, "0", _GC, "History kept by auto compaction (0: off); hours unless a unit is given."
    )
    auto_compaction_mode: str = _opt(
        _S, "periodic", _GC, "How the retention is read: 'periodic' (time) or 'revision'."
    )
    enable_v2: bool = _opt(_B, "false", _GC, "Serve the deprecated v2 API.")
    v2_deprecation: str = _opt(
        Kind.CHOICE_LIST,
        "not-yet",
        _GC,
        "Stage of the v2 store deprecation.",
        choices=("not-yet", "write-only", "write-only-drop-data", "gone"),
    )

    # --- security
    cert_file: str = _opt(
        _S, "", _GS, "TLS certificate for the client port.", yaml_path=(_CTS, "cert-file")
    )
    key_file: str = _opt(_S, "", _GS, "TLS key for the client port.", yaml_path=(_CTS, "key-file"))
    client_cert_file: str = _opt(
        _S,
        "",
        _GS,
        "Certificate used when acting as a client.",
        yaml_path=(_CTS, "client-cert-file"),
    )
    client_key_file: str = _opt(
        _S, "", _GS, "Key used when acting as a client.", yaml_path=(_CTS, "client-key-file")
    )
    client_cert_auth: bool = _opt(
        _B, "false", _GS, "Require client certificates.", yaml_path=(_CTS, "client-cert-auth")
    )
    client_crl_file: str = _opt(_S, "", _GS, "Certificate revocation list for clients.")
    client_cert_allowed_hostname: tuple[str, ...] = _opt(
        Kind.STRINGS,
        "",
        _GS,
        "Hostnames a client certificate must name.",
        yaml_path=(_CTS, "allowed-hostname"),
    )
    trusted_ca_file: str = _opt(
        _S, "", _GS, "CA bundle for verifying clients.", yaml_path=(_CTS, "trusted-ca-file")
    )
    auto_tls: bool = _opt(
        _B, "false", _GS, "Client TLS with a generated certificate.", yaml_path=(_CTS, "auto-tls")
    )
    peer_cert_file: str = _opt(
        _S, "", _GS, "TLS certificate for the peer port.", yaml_path=(_PTS, "cert-file")
    )
    peer_key_file: str = _opt(
        _S, "", _GS, "TLS key for the peer port.", yaml_path=(_PTS, "key-file")
    )
    peer_client_cert_file: str = _opt(
        _S, "", _GS, "Certificate used towards peers.", yaml_path=(_PTS, "client-cert-file")
    )
    peer_client_key_file: str = _opt(
        _S, "", _GS, "Key used towards peers.", yaml_path=(_PTS, "client-key-file")
    )
    peer_client_cert_auth: bool = _opt(
        _B, "false", _GS, "Require peer client certificates.", yaml_path=(_PTS, "client-cert-auth")
    )
    peer_trusted_ca_file: str = _opt(
        _S, "", _GS, "CA bundle for verifying peers.", yaml_path=(_PTS, "trusted-ca-file")
    )
    peer_cert_allowed_cn: tuple[str, ...] = _opt(
        Kind.STRINGS,
        "",
        _GS,
        "Common names a peer certificate must have.",
        yaml_path=(_PTS, "allowed-cn"),
    )
    peer_cert_allowed_hostname: tuple[str, ...] = _opt(
        Kind.STRINGS,
        "",
        _GS,
        "Hostnames a peer certificate must name.",
        yaml_path=(_PTS, "allowed-hostname"),
    )
    peer_auto_tls: bool = _opt(
        _B, "false", _GS, "Peer TLS with generated certificates.", yaml_path=(_PTS, "auto-tls")
    )
    self_signed_cert_validity: int = _opt(
        _U, "1", _GS, "Validity in years of generated certificates."
    )
    peer_crl_file: str = _opt(_S, "", _GS, "Certificate revocation list for peers.")
    cipher_suites: tuple[str, ...] = _opt(
        Kind.STRINGS, "", _GS, "Allowed TLS cipher suites, comma separated (empty: defaults)."
    )
    cors: tuple[str, ...] = _opt(Kind.CORS, "*", _GS, "Allowed CORS origins ('*' allows all).")
    host_whitelist: tuple[str, ...] = _opt(
        Kind.UNIQUE_STRINGS, "*", _GS, "Accepted Host headers on plain HTTP ('*' allows all)."
    )
    tls_min_version: str = _opt(
        _S, "TLS1.2", _GS, "Lowest TLS version accepted (TLS1.2 or TLS1.3)."
    )
    tls_max_version: str = _opt(
        _S, "", _GS, "Highest TLS version accepted (empty: library default)."
    )

    # --- auth
    auth_token: str = _opt(
        _S, "simple", _GA, "Auth token type and options ('simple' or 'jwt,...')."
    )
    bcrypt_cost: int = _opt(_U, "10", _GA, "bcrypt cost for password hashes (4 to 31).")
    auth_token_ttl: int = _opt(_U, "300", _GA, "Lifetime of a simple token in seconds.")

    # --- profiling and monitoring
    enable_pprof: bool = _opt(_B, "false", _GMON, "Serve profiling data under /debug/pprof/.")
    metrics: str = _opt(_S, "basic", _GMON, "Metrics detail: 'basic' or 'extensive'.")
    listen_metrics_urls: tuple[EtcdURL, ...] = _opt(
        _URLS, "", _GMON, "Extra URLs serving only /metrics and /health."
    )

    # --- logging
    logger: str = _opt(_S, "zap", _GLOG, "Logger implementation; only 'zap'.")
    log_outputs: tuple[str, ...] = _opt(
        Kind.UNIQUE_STRINGS,
        "default",
        _GLOG,
        "Log targets: 'default', 'stderr', 'stdout' or files.",
    )
    log_level: str = _opt(_S, "info", _GLOG, "debug, info, warn, error, panic or fatal.")
    enable_log_rotation: bool = _opt(_B, "false", _GLOG, "Rotate a single file log output.")
    log_rotation_config_json: str = _opt(
        _S, DEFAULT_LOG_ROTATION_CONFIG, _GLOG, "Rotation settings as JSON (size MB, age days...)."
    )

    # --- distributed tracing
    experimental_enable_distributed_tracing: bool = _opt(
        _B, "false", _GTR, "Export traces with OpenTelemetry."
    )
    experimental_distributed_tracing_address: str = _opt(
        _S, "localhost:4317", _GTR, "Trace collector address."
    )
    experimental_distributed_tracing_service_name: str = _opt(
        _S, "etcd", _GTR, "Service name in traces; the same on every member."
    )
    experimental_distributed_tracing_instance_id: str = _opt(
        _S, "", _GTR, "Instance id in traces; different on every member."
    )
    experimental_distributed_tracing_sampling_rate: int = _opt(
        Kind.INT, "0", _GTR, "Spans sampled per million."
    )

    # --- v2 proxy
    proxy: str = _opt(
        Kind.CHOICE,
        "off",
        _GPX,
        "v2 proxy mode: 'off', 'readonly' or 'on'.",
        choices=("off", "readonly", "on"),
    )
    proxy_failure_wait: int = _opt(_U, "5000", _GPX, "Milliseconds a failed endpoint is skipped.")
    proxy_refresh_interval: int = _opt(
        _U, "30000", _GPX, "Milliseconds between endpoint refreshes."
    )
    proxy_dial_timeout: int = _opt(_U, "1000", _GPX, "Dial timeout in milliseconds.")
    proxy_write_timeout: int = _opt(_U, "5000", _GPX, "Write timeout in milliseconds.")
    proxy_read_timeout: int = _opt(_U, "0", _GPX, "Read timeout in milliseconds.")

    # --- experimental
    experimental_initial_corrupt_check: bool = _opt(
        _B, "false", _GEX, "Check for data corruption before serving."
    )
    experimental_corrupt_check_time: datetime.timedelta = _opt(
        _D, "0s", _GEX, "Interval between cluster corruption checks."
    )
    experimental_enable_v2v3: str = _opt(_S, "", _GEX, "Prefix under which v2 is served from v3.")
    experimental_enable_lease_checkpoint: bool = _opt(
        _B, "false", _GEX, "Leader checkpoints lease TTLs to the other members."
    )
    experimental_enable_lease_checkpoint_persist: bool = _opt(
        _B, "false", _GEX, "Persist checkpointed lease TTLs."
    )
    experimental_compaction_batch_limit: int = _opt(
        Kind.INT, "1000", _GEX, "Revisions removed per compaction batch."
    )
    experimental_compaction_sleep_interval: datetime.timedelta = _opt(
        _D, "", _GEX, "Pause between compaction batches."
    )
    experimental_peer_skip_client_san_verification: bool = _opt(
        _B, "false", _GEX, "Do not check SANs of peer client certificates."
    )
    experimental_watch_progress_notify_interval: datetime.timedelta = _opt(
        _D, "10m", _GEX, "Interval of progress notifications on idle watches."
    )
    experimental_downgrade_check_time: datetime.timedelta = _opt(
        _D, "5s", _GEX, "Interval between downgrade status checks."
    )
    experimental_warning_apply_duration: datetime.timedelta = _opt(
        _D, "100ms", _GEX, "Applies slower than this are logged."
    )
    experimental_memory_mlock: bool = _opt(_B, "false", _GEX, "Lock the process memory in RAM.")
    experimental_txn_mode_write_with_shared_buffer: bool = _opt(
        _B, "true", _GEX, "Write transactions read through a shared buffer."
    )
    experimental_bootstrap_defrag_threshold_megabytes: int = _opt(
        _U,
        "0",
        _GEX,
        "Defragment at boot when it frees at least this many MB (0: never).",
        shown=None,
    )
    experimental_compact_hash_check_enabled: bool = _opt(
        _B, "false", _GEX, "Leader compares followers' compaction hashes."
    )
    experimental_compact_hash_check_time: datetime.timedelta = _opt(
        _D, "1m", _GEX, "Interval between compaction hash checks."
    )
    experimental_stop_grpc_service_on_defrag: bool = _opt(
        _B, "false", _GEX, "Report NOT_SERVING on gRPC health while defragmenting."
    )
    experimental_snapshot_catchup_entries: int = _opt(
        Kind.UINT64,
        "5000",
        _GEX,
        "Entries kept after a snapshot for slow followers.",
        yaml_path=("experimental-snapshot-catch-up-entries",),  # sic, etcd's YAML key
    )

    # --- unsafe
    force_new_cluster: bool = _opt(_B, "false", _GUN, "Restart as a new one-member cluster.")
    unsafe_no_fsync: bool = _opt(_B, "false", _GUN, "Never fsync: loses data on a crash.")

    # --- etcdpy's own
    emulated_etcd_version: str = _opt(
        _S,
        ETCD_SERVER_VERSION,
        Group.ETCDPY,
        "etcd version reported to clients (they gate features on it).",
        yaml_path=("emulated-etcd-version",),
    )
    etcdpy_read_workers: int = _opt(
        _U,
        "0",
        Group.ETCDPY,
        "etcdpy only: worker processes that share each client port and answer Range from the "
        "data dir read-only (linearizable reads ask this process for a read index; everything "
        "else is passed to it). 0 serves everything from this process.",
        yaml_path=("etcdpy-read-workers",),
    )

    # --- bookkeeping (not flags)
    config_file: str = ""
    # Flag names set on the command line or from ETCD_* (etcd's FlagsExplicitlySet).
    flags_set: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ derived values

    @property
    def election_ticks(self) -> int:
        """Raft election timeout in ticks (etcd's ElectionTicks)."""
        assert self.heartbeat_interval > 0
        return self.election_timeout // self.heartbeat_interval

    @property
    def resolved_data_dir(self) -> str:
        """The data directory; etcd defaults an empty --data-dir to "${name}.etcd"."""
        return self.data_dir or f"{self.name}.etcd"

    @property
    def member_dir(self) -> str:
        return f"{self.resolved_data_dir}/member"

    @property
    def resolved_wal_dir(self) -> str:
        """Where the Raft log lives: --wal-dir, else "<data-dir>/member/wal" like etcd."""
        return self.wal_dir or f"{self.member_dir}/wal"

    @property
    def snap_dir(self) -> str:
        return f"{self.member_dir}/snap"

    @property
    def is_new_cluster(self) -> bool:
        return self.initial_cluster_state == "new"

    @property
    def heartbeat_seconds(self) -> float:
        return self.heartbeat_interval / 1000

    @property
    def may_be_proxy(self) -> bool:
        """etcd's mayBeProxy: the v2 proxy is on, or discovery may fall back to it."""
        return self.proxy != "off" or (bool(self.discovery) and self.discovery_fallback == "proxy")

    @property
    def uses_discovery(self) -> bool:
        return bool(self.discovery or self.discovery_srv or self.discovery_endpoints)

    @property
    def uses_v3_discovery_flags(self) -> bool:
        """Any of 3.6's v3 discovery settings that cannot be mixed with v2 discovery's."""
        return bool(
            self.discovery_endpoints or self.discovery_token or self.discovery_cert
            or self.discovery_key or self.discovery_cacert or self.discovery_user
            or self.discovery_password
        )

    @property
    def min_lease_ttl_seconds(self) -> int:
        """Shortest lease TTL granted: 1.5 election timeouts, rounded up (etcd's lessor)."""
        ticks = 3 * self.election_ticks // 2
        return -(-ticks * self.heartbeat_interval // 1000)

    @property
    def effective_quota_backend_bytes(self) -> int | None:
        """The NOSPACE threshold: 0 means etcd's 2 GiB default, a negative value no quota."""
        if self.quota_backend_bytes < 0:
            return None
        return self.quota_backend_bytes or DEFAULT_QUOTA_BYTES

    def auto_compaction_retention_value(self) -> datetime.timedelta | int:
        """--auto-compaction-retention read as etcd does at start.

        A bare integer is hours in periodic mode and revisions in revision mode; anything
        else must be a Go duration (in revision mode etcd then counts its nanoseconds).
        """
        text = self.auto_compaction_retention or "0"
        if re.fullmatch(r"[+-]?[0-9]+", text) and int(text) >= 0:
            hours_or_revs = int(text)
            if self.auto_compaction_mode == "revision":
                return hours_or_revs
            return datetime.timedelta(hours=hours_or_revs)
        try:
            duration = parse_go_duration(text)
        except ValueError as err:
            raise ConfigError(
                f'error parsing CompactionRetention: time: invalid duration "{text}"'
            ) from err
        if self.auto_compaction_mode == "revision":
            return round(duration.total_seconds() * 1e9)
        return duration

    def initial_cluster_map(self) -> dict[str, tuple[EtcdURL, ...]]:
        """--initial-cluster as name -> sorted peer URLs (a name may repeat to add URLs)."""
        grouped: dict[str, list[str]] = {}
        for item in self.initial_cluster.split(","):
            if not item:
                continue
            key, _, value = item.partition("=")
            grouped.setdefault(key, []).append(value)
        result: dict[str, tuple[EtcdURL, ...]] = {}
        for key, values in grouped.items():
            try:
                urls = [parse_url(v) for v in values]
            except ValueError as err:
                raise ConfigError(str(err)) from err
            result[key] = tuple(sorted(urls, key=str))
        return result

    def initial_cluster_from_name(self, name: str) -> str:
        """etcd's InitialClusterFromName: "<name>=<url>" for each advertised peer URL."""
        member = name or DEFAULT_NAME
        return ",".join(f"{member}={u}" for u in self.initial_advertise_peer_urls)

    # ------------------------------------------------------------------ validation

    def validate(self, *, allow_proxy: bool = False) -> None:
        """etcd 3.5's embed.Config.Validate, same order and messages.

        `allow_proxy` is etcdmain's exception: a missing --advertise-client-urls is fine
        when this member may become a v2 proxy.
        """
        self._validate_logging()
        for urls in (self.listen_peer_urls, self.listen_client_urls):
            _check_bind_urls(urls)
        _check_bind_urls(self.listen_client_http_urls)
        _check_bind_urls(self.listen_metrics_urls)
        for flag, urls in (
            ("--initial-advertise-peer-urls", self.initial_advertise_peer_urls),
            ("--advertise-client-urls", self.advertise_client_urls),
        ):
            empty = [u for u in urls if not u.hostname]
            if empty:
                joined = ",".join(str(u) for u in urls)
                raise ConfigError(
                    f'{flag} "{joined}" must be "host:port" (unexpected empty host ({empty[0]}))'
                )
        bootstraps = sum(
            bool(v) for v in (self.discovery, self.initial_cluster, self.discovery_srv,
                              self.discovery_endpoints)
        )
        if self.initial_cluster_state not in ("new", "existing"):
            raise ConfigError(f'unexpected clusterState "{self.initial_cluster_state}"')
        if bootstraps > 1:
            # 3.5's text, unless 3.6's --discovery-endpoints is one of them (3.6's text).
            raise ConfigError(ERR_CONFLICT_BOOTSTRAP_FLAGS_36 if self.discovery_endpoints
                              else ERR_CONFLICT_BOOTSTRAP_FLAGS)
        self._validate_v3_discovery()
        if self.heartbeat_interval == 0:
            raise ConfigError("--heartbeat-interval must be >0 (set to 0ms)")
        if self.election_timeout == 0:
            raise ConfigError("--election-timeout must be >0 (set to 0ms)")
        if 5 * self.heartbeat_interval > self.election_timeout:
            raise ConfigError(
                f"--election-timeout[{self.election_timeout}ms] should be at least as 5 times as "
                f"--heartbeat-interval[{self.heartbeat_interval}ms]"
            )
        if self.election_timeout > MAX_ELECTION_MS:
            raise ConfigError(
                f"--election-timeout[{self.election_timeout}ms] is too long, and should be set "
                f"less than {MAX_ELECTION_MS}ms"
            )
        if self.listen_client_urls and not self.advertise_client_urls and not allow_proxy:
            raise ConfigError(ERR_UNSET_ADVERTISE_CLIENT_URLS)
        if self.auto_compaction_mode not in ("", "periodic", "revision"):
            raise ConfigError(f'unknown auto-compaction-mode "{self.auto_compaction_mode}"')
        self._validate_later_35()

    def _validate_logging(self) -> None:
        if self.logger == "capnslog":
            raise ConfigError("--logger=capnslog is removed in v3.5")
        if self.logger != "zap":
            raise ConfigError(f'unknown logger option "{self.logger}"')
        if len(self.log_outputs) > 1 and "default" in self.log_outputs:
            raise ConfigError('multi logoutput for "default" is not supported yet')
        if self.enable_log_rotation:
            _check_log_rotation(self.log_outputs, self.log_rotation_config_json)
        if self.log_level not in ("debug", "info", "warn", "error", "dpanic", "panic", "fatal"):
            # etcd 3.5.1 panics here (exit status 2); we keep the text and the status.
            raise ConfigError(f'unrecognized level: "{self.log_level}"', exit_code=2)

    def _validate_v3_discovery(self) -> None:
        """etcd 3.6's checks on its v3 discovery flags."""
        if (self.discovery or self.discovery_proxy) and self.uses_v3_discovery_flags:
            raise ConfigError(
                "both v2 discovery settings (discovery, discovery-proxy) and v3 discovery "
                "settings (discovery-token, discovery-endpoints, discovery-cert, discovery-key, "
                "discovery-cacert, discovery-user, discovery-password) are set"
            )
        if bool(self.discovery_token) != bool(self.discovery_endpoints):
            raise ConfigError("both --discovery-token and --discovery-endpoints must be set")

    def _validate_read_workers(self) -> None:
        """Read workers serve the plain client ports (shared with HTTP/1.1, or gRPC-only with
        --listen-client-http-urls); they speak no TLS, so that combination is refused up front."""
        if not self.etcdpy_read_workers:
            return
        if self.cert_file or self.key_file or self.auto_tls or self.client_cert_auth:
            raise ConfigError("--etcdpy-read-workers cannot be used with client TLS")

    def _validate_later_35(self) -> None:
        """Checks that later 3.5 releases (3.5.3+) added for the flags they introduced."""
        if self.experimental_enable_lease_checkpoint_persist and not (
            self.experimental_enable_lease_checkpoint
        ):
            raise ConfigError(
                "setting experimental-enable-lease-checkpoint-persist requires "
                "experimental-enable-lease-checkpoint"
            )
        if self.experimental_compact_hash_check_time <= datetime.timedelta(0):
            raise ConfigError(
                "--experimental-compact-hash-check-time must be >0 (set to "
                f"{format_go_duration(self.experimental_compact_hash_check_time)})"
            )
        order = {"": 0, "TLS1.2": 12, "TLS1.3": 13}
        for version in (self.tls_min_version, self.tls_max_version):
            if version not in order:
                raise ConfigError(
                    f'unexpected TLS version "{version}" (must be one of: TLS1.2, TLS1.3)'
                )
        if self.tls_max_version and order[self.tls_min_version] > order[self.tls_max_version]:
            raise ConfigError(
                f"min version ({self.tls_min_version}) is greater than max version "
                f"({self.tls_max_version})"
            )
        if self.tls_min_version == "TLS1.3" and self.cipher_suites:
            raise ConfigError("cipher suites cannot be configured when only TLS1.3 is enabled")
        self._validate_read_workers()
        if not re.fullmatch(r"3\.[0-9]+\.[0-9]+", self.emulated_etcd_version):
            raise ConfigError(
                f'invalid --emulated-etcd-version "{self.emulated_etcd_version}" '
                "(want an etcd 3.x.y version)"
            )

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_yaml(cls, text: str, path: str = "") -> Config:
        """A config file's text -> validated Config, as etcd's embed.ConfigFromFile."""
        return _config_from_yaml(text, path)


def _check_bind_urls(urls: Iterable[EtcdURL]) -> None:
    """Listen URLs must name an IP (or localhost): binding needs an address."""
    for url in urls:
        if url.scheme in ("unix", "unixs") or url.hostname == "localhost":
            continue
        if not _is_ip(url.hostname):
            raise ConfigError(f"expected IP in URL for binding ({url})")


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _check_log_rotation(outputs: Sequence[str], config_json: str) -> None:
    """etcd's setupLogRotation: exactly one file output, and a JSON object for lumberjack."""
    files = [o for o in outputs if o not in ("default", "stderr", "stdout")]
    if (len(outputs) == 1 and not files) or len(files) > 1:
        raise ConfigError(
            "--log-outputs requires a single file path when --log-rotate-config-json is defined"
        )
    try:
        parsed = json.loads(config_json)
    except ValueError as err:
        raise ConfigError(f"improperly formatted log rotation config: {err}") from err
    if not isinstance(parsed, dict):
        raise ConfigError("invalid log rotation config: not a JSON object")


# --------------------------------------------------------------------------- the flag table


def _build_flags() -> tuple[FlagSpec, ...]:
    specs = []
    for f in dataclasses.fields(Config):
        spec = f.metadata.get("flag")
        if spec is None:
            continue
        name = f.name.replace("_", "-")
        specs.append(dataclasses.replace(spec, name=name, yaml_path=spec.yaml_path or (name,)))
    return tuple(specs)


FLAGS: tuple[FlagSpec, ...] = _build_flags()
FLAGS_BY_NAME: Mapping[str, FlagSpec] = {s.name: s for s in FLAGS}

# Flags etcd 3.5 registers outside Config: read directly by the command.
CONFIG_FILE_FLAG = FlagSpec(
    "config-file",
    Kind.STRING,
    "",
    _GM,
    "YAML configuration file; when given, other flags and ETCD_* variables are ignored.",
    "",
    ("config-file",),
)
VERSION_FLAG = FlagSpec("version", Kind.BOOL, "false", _GM, "Print the version and exit.", None, ())
# Old flags etcd still accepts and ignores (its `ignored` list), so old scripts still start.
IGNORED_FLAG_NAMES = (
    "cluster-active-size",
    "cluster-remove-delay",
    "cluster-sync-interval",
    "config",
    "force",
    "max-result-buffer",
    "max-retry-attempts",
    "peer-heartbeat-interval",
    "peer-election-timeout",
    "retry-interval",
    "snapshot",
    "v",
    "vv",
    "test.coverprofile",
    "test.outputdir",
)
IGNORED_FLAGS = tuple(
    FlagSpec(n, Kind.IGNORED, "", _GM, "Ignored.", None, ()) for n in IGNORED_FLAG_NAMES
)
# Flags this table has beyond etcd 3.5.1's: added by later 3.5 releases, or etcdpy's own.
NOT_IN_ETCD_3_5_1 = frozenset(
    {
        "listen-client-http-urls",
        "max-concurrent-streams",
        "tls-min-version",
        "tls-max-version",
        "experimental-distributed-tracing-sampling-rate",
        "experimental-enable-lease-checkpoint-persist",
        "experimental-compaction-sleep-interval",
        "experimental-compact-hash-check-enabled",
        "experimental-compact-hash-check-time",
        "experimental-stop-grpc-service-on-defrag",
        "experimental-snapshot-catchup-entries",
        "emulated-etcd-version",
        "etcdpy-read-workers",
        # etcd 3.6's v3 discovery
        "discovery-token",
        "discovery-endpoints",
        "discovery-dial-timeout",
        "discovery-request-timeout",
        "discovery-keepalive-time",
        "discovery-keepalive-timeout",
        "discovery-insecure-transport",
        "discovery-insecure-skip-tls-verify",
        "discovery-cert",
        "discovery-key",
        "discovery-cacert",
        "discovery-user",
        "discovery-password",
    }
)
ALL_FLAGS: Mapping[str, FlagSpec] = {
    s.name: s for s in (*FLAGS, CONFIG_FILE_FLAG, VERSION_FLAG, *IGNORED_FLAGS)
}


# --------------------------------------------------------------------------- command line


@dataclass(frozen=True, slots=True)
class ParsedArgs:
    """The command line after Go-style tokenizing: flag values by name, and the rest."""

    values: tuple[tuple[str, str], ...]  # (flag name, text) in command-line order
    rest: tuple[str, ...]  # arguments after the first non-flag

    def as_dict(self) -> dict[str, str]:
        """Last occurrence wins, as with Go's flag package."""
        return dict(self.values)

    def to_click_argv(self) -> list[str]:
        """Normalized `--name=value` argv, unambiguous for click to re-parse."""
        argv = [f"--{name}={text}" for name, text in self.values]
        return [*argv, "--", *self.rest] if self.rest else argv


def parse_argv(argv: Sequence[str]) -> ParsedArgs:
    """Tokenize like Go's flag.FlagSet.Parse with etcd's flag set.

    Raises FlagError with Go's message for unknown flags, bad syntax, a missing value or a
    value the flag type rejects; HelpRequested for -h/-help.
    """
    values: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        if arg == "--":
            i += 1
            break
        body = arg[2:] if arg.startswith("--") else arg[1:]
        if not body or body[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        i += 1
        name, has_value, text = body.partition("=")
        spec = ALL_FLAGS.get(name)
        if spec is None:
            if name in ("help", "h"):
                raise HelpRequested()
            raise FlagError(f"flag provided but not defined: -{name}")
        if not spec.takes_value:
            text = text if has_value else "true"
            if spec.kind is Kind.BOOL:
                try:
                    parse_go_bool(text)
                except ValueError as err:
                    raise FlagError(f'invalid boolean value "{text}" for -{name}: {err}') from err
        elif not has_value:
            if i >= len(argv):
                raise FlagError(f"flag needs an argument: -{name}")
            text = argv[i]
            i += 1
        if spec.takes_value:
            try:
                spec.parse(text)
            except ValueError as err:
                raise FlagError(f'invalid value "{text}" for flag -{name}: {err}') from err
        values.append((name, text))
    return ParsedArgs(tuple(values), tuple(argv[i:]))


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class Loaded:
    """A validated Config and the log lines etcd would have printed while loading it."""

    config: Config
    notices: tuple[Notice, ...]


def load(
    cmdline: Mapping[str, str],
    environ: Mapping[str, str],
    rest: Sequence[str] = (),
) -> Loaded:
    """Build and validate the Config from command-line values, environment and config file.

    `cmdline` maps flag names given on the command line to their text (already checked by
    `parse_argv`); `rest` holds the arguments after the first non-flag one.
    """
    reject_positional(rest)
    config_file = cmdline.get("config-file") or environ.get(flag_to_env("config-file"), "")
    if config_file:
        try:
            with open(config_file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as err:
            raise ConfigError(f"open {config_file}: {_os_error_text(err)}") from err
        config = _config_from_yaml(text, config_file)
        note = Notice(
            Level.INFO,
            "loaded server configuration, other configuration command line flags and "
            "environment variables will be ignored if provided",
            (("path", config_file),),
        )
        return Loaded(config, (note,))
    return _config_from_flags(cmdline, environ)


def from_argv(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Convenience for tests and tools: an etcd command line (and environment) -> Config."""
    parsed = parse_argv(argv)
    return load(parsed.as_dict(), environ or {}, parsed.rest).config


def reject_positional(rest: Sequence[str]) -> None:
    """etcd takes no positional arguments; the first one is reported as a bad flag."""
    if rest:
        raise ConfigError(f"'{rest[0]}' is not a valid flag")


def _os_error_text(err: OSError) -> str:
    return (err.strerror or str(err)).lower()


def _config_from_flags(cmdline: Mapping[str, str], environ: Mapping[str, str]) -> Loaded:
    notices: list[Notice] = []
    try:
        return _config_from_flags_noting(cmdline, environ, notices)
    except ConfigError as err:
        err.notices = (*notices, *err.notices)
        raise


def _config_from_flags_noting(
    cmdline: Mapping[str, str], environ: Mapping[str, str], notices: list[Notice]
) -> Loaded:
    env = dict(environ)
    special = env.pop("ETCD_VERSION", "")
    if special:
        notices.append(
            Notice(
                Level.WARN,
                "cannot set special environment variable",
                (("key", "ETCD_VERSION"), ("value", special)),
            )
        )
    texts = {k: v for k, v in cmdline.items() if k in FLAGS_BY_NAME}
    from_env = _apply_env(set(cmdline), env, notices)
    texts.update(from_env)
    explicit = frozenset(cmdline) | frozenset(from_env)

    values: dict[str, Any] = {}
    for name, text in texts.items():
        spec = FLAGS_BY_NAME[name]
        values[spec.attr] = spec.parse(text)
    config = Config(**values, flags_set=explicit)

    # Listening on explicit client URLs means the default advertise URL is surely wrong.
    missing_advertise = "listen-client-urls" in explicit and "advertise-client-urls" not in explicit
    if missing_advertise and not config.may_be_proxy:
        config = dataclasses.replace(config, advertise_client_urls=())
    # A discovery source replaces the default static cluster.
    discovering = config.uses_discovery or config.discovery_srv_name
    if discovering and "initial-cluster" not in explicit:
        config = dataclasses.replace(config, initial_cluster="")
    config.validate(allow_proxy=config.may_be_proxy)
    return Loaded(_finish(config), tuple(notices))


def _apply_env(
    already_set: set[str], environ: Mapping[str, str], notices: list[Notice]
) -> dict[str, str]:
    """etcd's flags.SetFlagsFromEnv for flags not given on the command line."""
    used: dict[str, str] = {}
    error: ConfigError | None = None
    shadowed = {flag_to_env(n) for n in already_set}
    for name in sorted(ALL_FLAGS):
        key = flag_to_env(name)
        if key in shadowed or not environ.get(key, ""):
            continue
        text = environ[key]
        spec = ALL_FLAGS[name]
        try:
            if spec.kind is not Kind.IGNORED:
                spec.parse(text)
        except ValueError as err:
            # etcd keeps going and reports the last failure, after the checks below.
            error = ConfigError(f'invalid value "{text}" for {key}: {err}')
            continue
        used[key] = name
        notices.append(
            Notice(
                Level.INFO,
                "recognized and used environment variable",
                (("variable-name", key), ("variable-value", text)),
            )
        )
    for key, value in environ.items():
        if key in used:
            continue
        if key in shadowed:
            raise FatalConfigError(
                "conflicting environment variable is shadowed by corresponding command-line "
                "flag (either unset environment variable or disable flag))",
                {"environment-variable": key},
            )
        if key.startswith(f"{ENV_PREFIX}_"):
            notices.append(
                Notice(
                    Level.WARN,
                    "unrecognized environment variable",
                    (("environment-variable", f"{key}={value}"),),
                )
            )
    if error is not None:
        raise error
    return {name: environ[key] for key, name in used.items() if name in FLAGS_BY_NAME}


def _finish(config: Config) -> Config:
    """etcd's UpdateDefaultClusterFromName: `--name foo` alone gets "foo=<peer urls>"."""
    if config.name != DEFAULT_NAME and config.initial_cluster == DEFAULT_INITIAL_CLUSTER:
        return dataclasses.replace(
            config, initial_cluster=config.initial_cluster_from_name(config.name)
        )
    return config


# --------------------------------------------------------------------------- YAML


_YAML_PREFIX = "error unmarshaling JSON: while decoding JSON: json: "
_URL_YAML_NAMES = {
    "listen-peer-urls": "listen-peer-urls",
    "listen-client-urls": "listen-client-urls",
    "listen-client-http-urls": "listen-client-http-urls",
    "initial-advertise-peer-urls": "initial-advertise-peer-urls",
    # etcd 3.5 names the wrong flag in this message; kept so logs match.
    "advertise-client-urls": "advertise-peer-urls",
    "listen-metrics-urls": "listen-metrics-urls",
}


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"  # dates and other YAML scalars reach Go as strings


def _lookup(mapping: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """Go's encoding/json key match: exact first, then case-insensitive."""
    if key in mapping:
        return True, mapping[key]
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == key.lower():
            return True, v
    return False, None


def _yaml_value(spec: FlagSpec, value: Any) -> Any:
    """One YAML value -> the field value, with Go's json unmarshal errors on type mismatch."""

    def mismatch(detail: str = "") -> ConfigError:
        where = ".".join(spec.yaml_path)
        return ConfigError(
            f"{_YAML_PREFIX}cannot unmarshal {_json_type(value)}{detail} into Go struct field "
            f"configYAML.{where} of type {_GO_TYPE[spec.kind]}"
        )

    kind = spec.kind
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise mismatch()
        return value
    if kind in _INT_BITS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise mismatch()
        if isinstance(value, float) and not value.is_integer():
            raise mismatch(f" {value}")
        try:
            return parse_go_int(str(int(value)), kind)
        except ValueError:
            raise mismatch(f" {int(value)}") from None
    if kind is Kind.DURATION:
        # Go decodes a Duration from JSON as integer nanoseconds; we also take "5s" strings.
        if isinstance(value, int) and not isinstance(value, bool):
            return datetime.timedelta(microseconds=value / 1000)
        if isinstance(value, str):
            try:
                return parse_go_duration(value)
            except ValueError:
                raise mismatch() from None
        raise mismatch()
    if kind in (Kind.STRINGS, Kind.UNIQUE_STRINGS):
        if isinstance(value, str):  # a comma list, as on the command line
            return spec.parse(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise mismatch()
        return tuple(sorted(set(value))) if kind is Kind.UNIQUE_STRINGS else tuple(value)
    if not isinstance(value, str):
        raise mismatch()
    if kind is Kind.URLS:
        if not value:
            return ()
        try:
            return parse_urls(value)
        except ValueError as err:
            raise PlainConfigError(
                f"unexpected error setting up {_URL_YAML_NAMES.get(spec.name, spec.name)}: {err}"
            ) from err
    if kind is Kind.CORS:
        try:
            return spec.parse(value)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    return value


def _check_yaml_choice(spec: FlagSpec, value: str) -> None:
    try:
        spec.parse(value)
    except ValueError as err:
        if spec.name in ("proxy", "discovery-fallback"):
            # etcdmain log.Fatalf()s these, unstructured.
            flag = "proxyFlag" if spec.name == "proxy" else "discovery-fallback flag"
            raise PlainConfigError(f"unexpected error setting up {flag}: {err}") from err
        # etcd 3.5.1 would keep an unknown v2-deprecation stage; refusing it is safer.
        raise ConfigError(f"invalid {spec.name}: {err}") from err


def _config_from_yaml(text: str, path: str) -> Config:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"error converting YAML to JSON: yaml: {line}{problem}") from err
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{_YAML_PREFIX}cannot unmarshal {_json_type(doc)} into Go value of type "
            "embed.configYAML"
        )
    values: dict[str, Any] = {}
    for spec in FLAGS:
        node: Any = doc
        found = True
        for key in spec.yaml_path:
            found, node = _lookup(node, key) if isinstance(node, dict) else (False, None)
            if not found:
                break
        if not found or node is None:
            continue  # JSON null leaves the default, as in Go
        value = _yaml_value(spec, node)
        if spec.choices and spec.name != "initial-cluster-state":  # Validate checks that one
            _check_yaml_choice(spec, value)
        values[spec.attr] = value
    if values.get("initial_cluster_state") == "":
        values["initial_cluster_state"] = "new"
    if values.get("self_signed_cert_validity") == 0:
        values["self_signed_cert_validity"] = 1
    config = Config(**values, config_file=path)
    if config.uses_discovery and config.initial_cluster == DEFAULT_INITIAL_CLUSTER:
        config = dataclasses.replace(config, initial_cluster="")
    config.validate()
    return _finish(config)


# --------------------------------------------------------------------------- help


USAGE = """Usage:

  etcdpy [flags]
    Start an etcd-compatible server.

  etcdpy --version
    Show the version of etcdpy and of the etcd API it serves.

  etcdpy -h | --help
    Show the help information about etcdpy.

  etcdpy --config-file
    Path to the server configuration file. Other command line flags and environment
    variables are ignored when a configuration file is given.
"""


def help_text() -> str:
    """The `--help` text: usage, then every visible flag grouped as etcd groups them."""
    lines = [USAGE]
    for group in Group:
        specs = [s for s in FLAGS if s.group is group]
        if not specs:
            continue
        lines.append(f"{GROUP_TITLES[group]}:")
        for spec in specs:
            shown = "" if spec.shown_default is None else f" '{spec.shown_default}'"
            lines.append(f"  --{spec.name}{shown}")
            lines.append(f"    {spec.help}")
        lines.append("")
    lines.append("Every flag can also be set as ETCD_<FLAG_NAME> (e.g. ETCD_LISTEN_CLIENT_URLS).")
    return "\n".join(lines) + "\n"
