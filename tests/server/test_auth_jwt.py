"""JWT tokens: the claims etcd puts in them, signature and expiry checks, and `--auth-token`
parsing with etcd's errors."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from etcdpy.server.auth_jwt import (
    INVALID_OPTIONS,
    MISSING_KEY,
    AuthOptionsError,
    JwtTokens,
    token_provider,
)
from etcdpy.server.auth_tokens import SimpleTokens


def write_keys(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(65537, 2048) if kind == "rsa" else \
        ec.generate_private_key(ec.SECP256R1())
    priv = tmp_path / f"{kind}.key"
    pub = tmp_path / f"{kind}.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


@pytest.mark.parametrize(("kind", "method"), [("rsa", "RS256"), ("ec", "ES256")])
def test_token_carries_user_revision_and_expiry(tmp_path: Path, kind: str, method: str) -> None:
    priv, pub = write_keys(tmp_path, kind)
    tokens = token_provider(f"jwt,pub-key={pub},priv-key={priv},sign-method={method},ttl=10m",
                            300)
    assert isinstance(tokens, JwtTokens) and tokens.new_prefix() == ""
    minted_after = int(time.time())
    token = tokens.mint("", 7, "alice", 12)
    minted_before = time.time()
    claims = jwt.decode(token, pub.read_bytes(), algorithms=[method])
    assert claims["username"] == "alice" and claims["revision"] == 12
    # The expiry is the minting time plus the ttl (exp is in whole seconds).
    assert minted_after + 600 <= claims["exp"] <= minted_before + 600
    assert tokens.lookup(token, 99) == ("alice", 12)  # the token's revision, not the store's
    assert tokens.lookup(token[:-4] + "AAAA", 99) is None  # signature broken
    # A member holding only the public key verifies but cannot issue.
    verifier = token_provider(f"jwt,pub-key={pub},sign-method={method}", 300)
    assert isinstance(verifier, JwtTokens) and verifier.verify_only
    assert verifier.lookup(token, 1) == ("alice", 12)
    with pytest.raises(RuntimeError):
        verifier.mint("", 8, "alice", 12)


def test_expired_and_foreign_tokens_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "hmac.key"
    secret.write_bytes(b"0123456789abcdef0123456789abcdef")
    tokens = token_provider(f"jwt,priv-key={secret},sign-method=HS256", 300)
    expired = jwt.encode({"username": "a", "revision": 1, "exp": int(time.time()) - 5},
                         secret.read_bytes(), algorithm="HS256")
    assert tokens.lookup(expired, 1) is None
    foreign = jwt.encode({"username": "a", "revision": 1, "exp": int(time.time()) + 60},
                         b"another secret from another cluster!", algorithm="HS256")
    assert tokens.lookup(foreign, 1) is None
    assert tokens.lookup("not-a-jwt", 1) is None


def test_auth_token_option_parsing(tmp_path: Path) -> None:
    assert isinstance(token_provider("simple", 300), SimpleTokens)
    secret = tmp_path / "k"
    secret.write_bytes(b"secret")
    for spec, message in (("foo", INVALID_OPTIONS), ("jwt", INVALID_OPTIONS),
                          ("jwt,sign-method=XX1", INVALID_OPTIONS),
                          ("jwt,sign-method=RS256", MISSING_KEY),
                          (f"jwt,pub-key={secret},sign-method=HS256", MISSING_KEY),
                          (f"jwt,priv-key={secret},sign-method=HS256,ttl=5x", INVALID_OPTIONS),
                          ("jwt,junk", INVALID_OPTIONS)):
        with pytest.raises(AuthOptionsError) as error:
            token_provider(spec, 300)
        assert str(error.value) == message, spec
