"""etcd's JWT auth tokens (`--auth-token jwt,pub-key=..,priv-key=..,sign-method=..,ttl=..`)
and the choice between them and simple tokens.

A JWT carries the user name, the auth revision it was issued at, and an expiry; any member
holding the key can check it, so nothing is kept per token. Because the revision travels in
the token, a token issued before an auth change is "old" afterwards (clients then
authenticate again), as with etcd. With only a public key configured a member can verify
tokens but not issue them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etcdpy import logutil
from etcdpy.server.auth_tokens import SimpleTokens

log = logutil.get("auth")

DEFAULT_JWT_TTL_S = 300.0


class AuthOptionsError(ValueError):
    """`--auth-token` names no usable token provider (etcd's texts)."""


INVALID_OPTIONS = "auth: invalid auth options"
MISSING_KEY = "auth: missing key data"

_ASYMMETRIC = ("RS", "PS", "ES")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration_s(text: str) -> float:
    """A Go duration ("10m", "1h30m", "90s")."""
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None:
            raise AuthOptionsError(INVALID_OPTIONS)
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if not text:
        raise AuthOptionsError(INVALID_OPTIONS)
    return total


@dataclass(frozen=True, slots=True)
class JwtOptions:
    sign_method: str
    private_key: bytes | None
    public_key: bytes | None
    ttl_s: float

    @staticmethod
    def parse(options: dict[str, str]) -> JwtOptions:
        import jwt  # PyJWT is needed only when JWT tokens are configured

        method = options.get("sign-method", "")
        if method not in jwt.algorithms.get_default_algorithms() or method == "none":
            raise AuthOptionsError(INVALID_OPTIONS)
        ttl = _duration_s(options["ttl"]) if "ttl" in options else DEFAULT_JWT_TTL_S
        private = Path(options["priv-key"]).read_bytes() if "priv-key" in options else None
        public = Path(options["pub-key"]).read_bytes() if "pub-key" in options else None
        if private is None and (public is None or not method.startswith(_ASYMMETRIC)):
            raise AuthOptionsError(MISSING_KEY)
        return JwtOptions(method, private, public, ttl)


class JwtTokens:
    def __init__(self, options: JwtOptions) -> None:
        self._method = options.sign_method
        self._ttl = options.ttl_s
        self._sign_key: Any = options.private_key
        self._verify_key: Any = options.public_key or options.private_key
        if self._method.startswith(_ASYMMETRIC) and options.private_key is not None:
            # The private key also verifies (etcd derives the public half from it).
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            self._verify_key = load_pem_private_key(options.private_key, None).public_key()
        self.verify_only = options.private_key is None

    @staticmethod
    def new_prefix() -> str:
        return ""  # a JWT needs no replicated part

    def mint(self, prefix: str, index: int, user: str, revision: int) -> str:
        if self.verify_only:
            raise RuntimeError("auth: token signing attempted with verify-only key")
        import jwt

        claims = {"username": user, "revision": revision, "exp": int(time.time() + self._ttl)}
        return jwt.encode(claims, self._sign_key, algorithm=self._method)

    def lookup(self, token: str, current_revision: int) -> tuple[str, int] | None:
        import jwt

        try:
            claims = jwt.decode(token, self._verify_key, algorithms=[self._method])
        except jwt.PyJWTError as error:
            log.warning("failed to parse a JWT token", error=str(error))
            return None
        user, revision = claims.get("username"), claims.get("revision")
        if not isinstance(user, str) or not isinstance(revision, int | float):
            return None
        return user, int(revision)

    def invalidate_user(self, user: str) -> None:
        """A JWT stays valid until it expires (etcd's behaviour)."""

    def clear(self) -> None:
        """Nothing is kept per token."""


def token_provider(spec: str, simple_ttl_s: float) -> SimpleTokens | JwtTokens:
    """The provider `--auth-token` names: "simple" or "jwt,key=value,...". Raises
    AuthOptionsError with etcd's text when it names none."""
    kind, _, rest = spec.partition(",")
    if kind == "simple":
        return SimpleTokens(simple_ttl_s)
    if kind != "jwt":
        raise AuthOptionsError(INVALID_OPTIONS)
    options: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq:
            raise AuthOptionsError(INVALID_OPTIONS)
        options[key] = value
    return JwtTokens(JwtOptions.parse(options))
