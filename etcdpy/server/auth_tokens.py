"""etcd's "simple" auth tokens: opaque strings a member maps to a user name, with a TTL.

A token is a random 16-letter prefix chosen by the member that received Authenticate, a dot,
and the Raft index of the Authenticate entry. The entry is applied on every member, so each
member learns the token and a client may use it anywhere. A token lives `ttl_s` seconds after
its last use on this member (use renews it, as etcd's TTL keeper does); changing a user's
password, deleting the user or disabling auth drops that user's (or every) token.
"""

from __future__ import annotations

import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

PREFIX_LETTERS = string.ascii_letters
PREFIX_LEN = 16
# Bound on live tokens per member: beyond it the least recently used token is dropped (its
# client gets "invalid auth token" and authenticates again, which clients do on their own).
MAX_TOKENS = 100_000


class TokenProvider(Protocol):
    """What the auth store needs of a token kind (simple here, JWT in auth_jwt.py)."""

    def new_prefix(self) -> str:
        """Chosen by the member receiving Authenticate and replicated with it."""
        ...

    def mint(self, prefix: str, index: int, user: str, revision: int) -> str:
        """The token for `user`, when the Authenticate entry at `index` is applied."""
        ...

    def lookup(self, token: str, current_revision: int) -> tuple[str, int] | None:
        """(user, auth revision the token stands for), or None if it is not valid."""
        ...

    def invalidate_user(self, user: str) -> None: ...

    def clear(self) -> None: ...


class SimpleTokens:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        assert ttl_s > 0
        self._ttl = ttl_s
        self._clock = clock
        # token -> (user, deadline); ordered by last use, so expired tokens are at the front
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tokens)

    @staticmethod
    def new_prefix() -> str:
        return "".join(secrets.choice(PREFIX_LETTERS) for _ in range(PREFIX_LEN))

    def mint(self, prefix: str, index: int, user: str, revision: int) -> str:
        token = f"{prefix}.{index}"
        self.assign(token, user)
        return token

    def lookup(self, token: str, current_revision: int) -> tuple[str, int] | None:
        # A simple token names a user only: it is judged at the store's revision of the
        # moment (etcd's simple token provider does the same).
        user = self.user_of(token)
        return None if user is None else (user, current_revision)

    def assign(self, token: str, user: str) -> None:
        self._expire()
        self._tokens[token] = (user, self._clock() + self._ttl)
        self._tokens.move_to_end(token)
        while len(self._tokens) > MAX_TOKENS:
            self._tokens.popitem(last=False)

    def user_of(self, token: str) -> str | None:
        """The user a live token belongs to (renewing it), or None."""
        self._expire()
        entry = self._tokens.get(token)
        if entry is None:
            return None
        self._tokens[token] = (entry[0], self._clock() + self._ttl)
        self._tokens.move_to_end(token)
        return entry[0]

    def invalidate_user(self, user: str) -> None:
        for token in [t for t, (u, _d) in self._tokens.items() if u == user]:
            del self._tokens[token]

    def clear(self) -> None:
        self._tokens.clear()

    def _expire(self) -> None:
        now = self._clock()
        # bounded by the number of tokens; deadlines grow along the order
        while self._tokens:
            token, (_user, deadline) = next(iter(self._tokens.items()))
            if deadline > now:
                return
            del self._tokens[token]
