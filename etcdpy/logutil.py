"""Structured logs shaped like etcd's zap output: one JSON object per line on stderr.

etcd prints `{"level":"info","ts":"2026-11-26T18:55:36.355Z","caller":"etcdmain/etcd.go:72",
"msg":"...", <fields>}`; operators grep for the same messages ("ready to serve client
requests", "became leader at term N"...), so we keep the keys and the message texts.
The stdlib `logging` module carries the records; only the formatting is ours.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# etcd's --log-level values, mapped onto stdlib levels.
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}


class JsonLineFormatter(logging.Formatter):
    """Formats a record as one JSON line; extra fields come from `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        millis = int(record.created * 1000) % 1000
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{millis:03d}Z"
        line: dict[str, Any] = {
            "level": _LEVEL_NAMES.get(record.levelno, "info"),
            "ts": ts,
        }
        if record.name not in ("etcdpy", "root"):
            line["logger"] = record.name.removeprefix("etcdpy.")
        line["caller"] = f"{record.module}.py:{record.lineno}"
        line["msg"] = record.getMessage()
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def setup(level: str = "info", stream: Any = None) -> None:
    """Route every `etcdpy.*` logger to stderr as JSON lines at etcd's `--log-level`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger("etcdpy")
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    root.propagate = False


def get(name: str) -> StructLogger:
    return StructLogger(logging.getLogger(f"etcdpy.{name}" if name else "etcdpy"))


class StructLogger:
    """`log.info("msg", key=value, ...)`: etcd's zap style of message plus typed fields."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, msg: str, fields: dict[str, Any], exc: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, msg, extra={"fields": fields}, stacklevel=3, exc_info=exc)

    def debug(self, msg: str, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields, exc_info)

    def fatal(self, msg: str, **fields: Any) -> None:
        """Logged as zap's "fatal" level; the caller exits right after, as etcd does."""
        self._log(logging.CRITICAL, msg, fields)
