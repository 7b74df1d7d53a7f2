"""Leases: the pure in-memory ``Lessor`` (etcd's lessor rules) and the persisted records.

Persistence lives in the state env (``lease_store.py`` records, written by
``mvcc.WriteTxn.lease_grant / lease_revoke / lease_checkpoint`` in the same LMDB
transaction as the key changes, so a revoke deletes its keys in one revision).  The
``Lessor`` here holds what is only meaningful in memory: expiry deadlines.

Rules taken from etcd's lessor:

* Only the primary (the Raft leader) tracks real deadlines.  A non-primary keeps
  every lease "forever": followers never expire leases, they apply the leader's
  revoke proposals.
* ``promote(extend)`` makes this lessor primary and refreshes *every* lease's
  deadline to ``now + remaining + extend`` (remaining = last checkpointed TTL if any,
  else the granted TTL), so a new leader never expires a lease that was kept alive
  against the old leader.  ``demote()`` drops all deadlines.
* ``renew`` is allowed on the primary only and fails for unknown or already expired
  leases (the client must not resurrect a lease that is being revoked).
* The TTL is raised to the minimum TTL (a function of the election timeout, chosen
  by the server) so a lease cannot expire before a leader change could complete.

No clock is read here: ``now`` comes from the injected ``clock`` callable, so tests
use a fake clock and the simulator uses simulated time.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from .errors import LeaseExistsError, LeaseNotFoundError, StorageError
from .lease_store import LeaseRecord

FOREVER: Final = math.inf
MAX_LEASE_TTL: Final = 9_000_000_000  # etcd's MaxLeaseTTL (seconds)
NO_LEASE: Final = 0
# an expired lease reported to the server is reported again only after this long if
# its revoke has not been applied by then (etcd: expiredLeaseRetryInterval)
EXPIRED_RETRY_SECONDS: Final = 3.0


class NotPrimaryError(StorageError):
    """Renew or expiry asked of a lessor that is not the primary (leader)."""

    def __str__(self) -> str:
        return "not a primary lessor"


class LeaseTTLTooLargeError(StorageError):
    def __str__(self) -> str:
        return "too large lease TTL"


@dataclass(slots=True)
class Lease:
    id: int
    ttl: int  # granted TTL (seconds), after raising to the minimum
    remaining_ttl: int = 0  # last checkpointed remaining TTL; 0 = none
    expiry: float = FOREVER  # monotonic deadline; FOREVER when not primary
    # when the expiry heap should look at this lease next (expiry, or a retry time)
    next_check: float = FOREVER
    keys: set[bytes] = field(default_factory=set)

    def remaining(self, now: float) -> float:
        if self.expiry == FOREVER:
            return float(self.ttl)
        return max(0.0, self.expiry - now)


class Lessor:
    def __init__(self, clock: Callable[[], float], min_ttl: int = 0) -> None:
        self._clock = clock
        self.min_ttl = min_ttl
        self.primary = False
        self._leases: dict[int, Lease] = {}
        # (next_check, id) min-heap; entries go stale when a lease is renewed or
        # revoked and are skipped lazily.  Invariant: every live lease with a finite
        # next_check has an entry with its current next_check.
        self._heap: list[tuple[float, int]] = []

    # --- queries ------------------------------------------------------------------
    def lookup(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def leases(self) -> list[Lease]:
        return sorted(self._leases.values(), key=lambda lease: lease.id)

    def remaining_ttl(self, lease_id: int) -> int:
        """Whole seconds left, truncated as etcd's TimeToLive does; -1 for an unknown lease."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return -1
        return int(lease.remaining(self._clock()))

    # --- changes that follow applied Raft entries ------------------------------------
    def grant(self, lease_id: int, ttl: int) -> Lease:
        if lease_id == NO_LEASE:
            raise ValueError("lease id 0 is reserved")
        if ttl > MAX_LEASE_TTL:
            raise LeaseTTLTooLargeError()
        if lease_id in self._leases:
            raise LeaseExistsError()
        lease = Lease(lease_id, max(ttl, self.min_ttl))
        self._leases[lease_id] = lease
        if self.primary:
            self._refresh(lease, 0.0)
        return lease

    def revoke(self, lease_id: int) -> list[bytes]:
        """Forget the lease; returns its keys (the caller deletes them in the same txn)."""
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            raise LeaseNotFoundError()
        return sorted(lease.keys)

    def checkpoint(self, lease_id: int, remaining_ttl: int) -> None:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError()
        lease.remaining_ttl = remaining_ttl
        if self.primary:
            self._refresh(lease, 0.0)

    def attach(self, lease_id: int, keys: Iterable[bytes]) -> None:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError()
        lease.keys.update(keys)

    def detach(self, lease_id: int, keys: Iterable[bytes]) -> None:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError()
        lease.keys.difference_update(keys)

    def recover(self, records: Iterable[tuple[LeaseRecord, list[bytes]]]) -> None:
        """Rebuild from the persisted leases (after a restart or a snapshot install)."""
        self._leases.clear()
        self._heap.clear()
        for rec, keys in records:
            lease = Lease(rec.id, max(rec.ttl, self.min_ttl), rec.remaining_ttl,
                          keys=set(keys))
            self._leases[rec.id] = lease
            if self.primary:
                self._refresh(lease, 0.0)

    # --- leader-only ------------------------------------------------------------------
    def renew(self, lease_id: int) -> int:
        """Keep-alive; returns the TTL granted again."""
        if not self.primary:
            raise NotPrimaryError()
        lease = self._leases.get(lease_id)
        if lease is None or lease.expiry <= self._clock():
            raise LeaseNotFoundError()
        # a renewed lease starts over from its full TTL: the checkpoint is obsolete
        lease.remaining_ttl = 0
        self._refresh(lease, 0.0)
        return lease.ttl

    def expired(self, limit: int) -> list[int]:
        """Ids of up to ``limit`` leases whose deadline passed (primary only).

        They stay granted until the revoke the leader proposes is applied; the
        server must not propose the same id twice while that revoke is in flight.
        """
        assert limit > 0
        if not self.primary:
            return []
        now = self._clock()
        out: list[int] = []
        retry: list[int] = []
        # bounded: each pop removes a heap entry, at most limit ids are returned
        while self._heap and len(out) < limit:
            due, lid = self._heap[0]
            if due > now:
                break
            heapq.heappop(self._heap)
            lease = self._leases.get(lid)
            if lease is None or lease.next_check != due:
                continue  # stale entry
            out.append(lid)
            retry.append(lid)
        for lid in retry:  # still granted until the revoke applies: ask again later
            lease = self._leases[lid]
            lease.next_check = now + EXPIRED_RETRY_SECONDS
            heapq.heappush(self._heap, (lease.next_check, lid))
        return out

    def promote(self, extend: float) -> None:
        self.primary = True
        self._heap.clear()
        for lease in self._leases.values():
            self._refresh(lease, extend)

    def demote(self) -> None:
        self.primary = False
        self._heap.clear()
        for lease in self._leases.values():
            lease.expiry = lease.next_check = FOREVER

    def _refresh(self, lease: Lease, extend: float) -> None:
        base = lease.remaining_ttl if lease.remaining_ttl > 0 else lease.ttl
        lease.expiry = lease.next_check = self._clock() + extend + base
        heapq.heappush(self._heap, (lease.next_check, lease.id))
