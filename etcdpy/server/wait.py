"""Waiting for the outcome of a proposal: register an ID, get a future, trigger it on apply.

The proposing request registers its ID before proposing; the apply loop triggers the ID with
the result when the entry is applied (on this member only: other members find nothing
registered and drop the result). Entries applied after a restart or proposed by another
member are never registered, so `trigger` must tolerate unknown IDs.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Wait:
    def __init__(self) -> None:
        self._futures: dict[int, asyncio.Future[Any]] = {}

    def register(self, request_id: int) -> asyncio.Future[Any]:
        assert request_id not in self._futures, f"duplicate request id {request_id:x}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[request_id] = future
        return future

    def is_registered(self, request_id: int) -> bool:
        return request_id in self._futures

    def trigger(self, request_id: int, result: Any) -> None:
        future = self._futures.pop(request_id, None)
        if future is not None and not future.done():
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def cancel(self, request_id: int) -> None:
        """Forget a request that gave up waiting (timeout or client cancel)."""
        future = self._futures.pop(request_id, None)
        if future is not None and not future.done():
            future.cancel()

    def fail_all(self, error: BaseException) -> None:
        """Fail every waiter, e.g. when the server stops."""
        futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(error)

    def __len__(self) -> int:
        return len(self._futures)
