"""One long-lived event loop, in a daemon thread, for all async Milvus and LlamaIndex work.

pymilvus' `AsyncMilvusClient` binds to the loop it is first used on. Streamlit runs every
rerun in a fresh script thread, and `asyncio.run` makes a new loop each time, so a cached
client ends up awaited on a closed loop (`Event loop is closed`). Running every coroutine on
this one loop, from any thread, avoids that by construction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_SENTINEL = object()


class BackgroundLoop:
    """An asyncio loop running forever in a daemon thread; thread-safe entry points."""

    def __init__(self, name: str = "rag-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coro` on the loop; returns a future usable from any thread."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("BackgroundLoop.submit called from the loop itself: await the coroutine instead")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and block the calling thread until it finishes."""
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator on the loop, yielding its items to a synchronous caller."""

        try:
            while (item := self.run(_next_item(agen))) is not _SENTINEL:
                yield item
        finally:
            aclose: Awaitable[None] | None = getattr(agen, "aclose", lambda: None)()
            if aclose is not None:
                self.run(_await(aclose))

    async def hop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on this loop from whatever loop the caller is on."""
        if asyncio.get_running_loop() is self._loop:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    async def hop_iter(self, agen: AsyncIterator[T]) -> AsyncIterator[T]:
        """Iterate `agen` on this loop from whatever loop the caller is on."""
        if asyncio.get_running_loop() is self._loop:
            async with contextlib.aclosing(agen):
                async for item in agen:
                    yield item
            return

        try:
            while (item := await self.hop(_next_item(agen))) is not _SENTINEL:
                yield item
        finally:
            await self.hop(_await(agen.aclose()))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


_shared: BackgroundLoop | None = None
_shared_lock = threading.Lock()


def shared_loop() -> BackgroundLoop:
    """The process-wide loop (created on first use, never closed: it lives as long as the process)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = BackgroundLoop()
        return _shared


async def _next_item(agen: AsyncIterator[T]) -> Any:
    """The iterator's next item, or `_SENTINEL` at its end (a value, passed back to the other thread)."""
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return _SENTINEL
