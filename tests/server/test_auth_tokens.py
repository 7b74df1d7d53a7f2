"""Simple tokens: TTL from the last use, per-user invalidation, bounded size."""

from __future__ import annotations

from etcdpy.server import auth_tokens
from etcdpy.server.auth_tokens import SimpleTokens


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_prefix_is_sixteen_letters_and_random() -> None:
    a, b = SimpleTokens.new_prefix(), SimpleTokens.new_prefix()
    assert len(a) == 16 and a.isalpha() and a != b


def test_token_expires_ttl_after_last_use() -> None:
    clock = Clock()
    tokens = SimpleTokens(300, clock)
    tokens.assign("abc.5", "alice")
    clock.now += 299
    assert tokens.user_of("abc.5") == "alice"  # renews
    clock.now += 299
    assert tokens.user_of("abc.5") == "alice"
    clock.now += 301
    assert tokens.user_of("abc.5") is None
    assert len(tokens) == 0


def test_invalidate_user_and_clear() -> None:
    tokens = SimpleTokens(300, Clock())
    tokens.assign("a.1", "alice")
    tokens.assign("a.2", "alice")
    tokens.assign("b.3", "bob")
    tokens.invalidate_user("alice")
    assert tokens.user_of("a.1") is None and tokens.user_of("a.2") is None
    assert tokens.user_of("b.3") == "bob"
    tokens.clear()
    assert tokens.user_of("b.3") is None


def test_least_recently_used_token_goes_beyond_the_bound(monkeypatch: object) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    mp.setattr(auth_tokens, "MAX_TOKENS", 3)
    try:
        tokens = SimpleTokens(300, Clock())
        for i in range(3):
            tokens.assign(f"t.{i}", "u")
        assert tokens.user_of("t.0") == "u"  # t.1 is now the least recently used
        tokens.assign("t.3", "u")
        assert len(tokens) == 3
        assert tokens.user_of("t.1") is None
        assert tokens.user_of("t.0") == "u"
    finally:
        mp.undo()
