"""Log lines are JSON objects with etcd's keys."""

import io
import json

from etcdpy import logutil


def test_log_line_has_etcd_keys_and_fields() -> None:
    out = io.StringIO()
    logutil.setup("info", out)
    logutil.get("server").info("ready to serve client requests", address="127.0.0.1:2379")
    logutil.get("server").debug("not shown at info level")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["level"] == "info"
    assert line["msg"] == "ready to serve client requests"
    assert line["address"] == "127.0.0.1:2379"
    assert line["logger"] == "server"
    assert line["ts"].endswith("Z") and "T" in line["ts"]
    assert line["caller"].startswith("test_logutil.py:")


def test_warn_level_name_matches_zap() -> None:
    out = io.StringIO()
    logutil.setup("debug", out)
    logutil.get("").warning("simple token is not cryptographically signed")
    assert json.loads(out.getvalue())["level"] == "warn"
