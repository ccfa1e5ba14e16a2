"""The shard-wide thread pool that runs every SQLite call of every agent's log.

`sqlite3` is blocking, so its calls must leave the event loop; but one thread per connection (what
aiosqlite does) makes the thread count grow with the number of agents. Instead, all
`SqliteEventLog`s of a shard share one small `SqliteExecutor`: the thread count is
`max_workers`, however many logs are open. Each log serializes its own calls (an `asyncio.Lock`),
so a connection is never used by two threads at once, while different logs run in parallel on the
pool's threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from agent_runtime import errors

T = TypeVar("T")

DEFAULT_MAX_WORKERS = 2


class ExecutorClosed(errors.Error, RuntimeError, code="executor_closed"):
    """A SQLite call was submitted after `SqliteExecutor.close()`."""


class SqliteExecutor:
    """A small thread pool shared by all SQLite event logs of a shard.

    Threads are started lazily (at most `max_workers`). `close()` waits for submitted calls and
    joins the threads; close the logs first.
    """

    __slots__ = ("_pool", "_closed", "max_workers")

    def __init__(self, max_workers: int = DEFAULT_MAX_WORKERS, thread_name_prefix: str = "sqlite") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.max_workers = max_workers
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=thread_name_prefix
        )
        self._closed = False

    @property
    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        return self._pool

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run `fn` on the pool; an asyncio future of the running loop (call from the loop)."""
        if self._closed:
            raise ExecutorClosed("SqliteExecutor is closed")
        return asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def run(self, fn: Callable[[], T]) -> T:
        return await self.submit(fn)

    def close(self) -> None:
        """Stop accepting calls, wait for the running ones and join the threads. Idempotent.

        Blocks until the in-flight calls finish (they are short SQLite statements).
        """
        self._closed = True
        self._pool.shutdown(wait=True)

    def __enter__(self) -> SqliteExecutor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> SqliteExecutor:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
