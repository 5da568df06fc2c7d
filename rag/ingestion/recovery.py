"""Crash recovery: a document left half-indexed is rolled back, so the library stays consistent.

Before any chunk of a document is written, its catalog row says "indexing" and names its owner
(`host:pid`). Such a row is an orphan when its owner stopped (a killed process), or when it
belongs to this process but no ingestion holds it any more (an undo that failed because Milvus
was down). `arecover_once` rolls orphans back once per process and Milvus, before that
Milvus is used; `needs_recovery` asks for it again after an ingestion stopped early.

Claiming, releasing and recovering hold the event loop's catalog lock, so recovery never sees
a row change hands half-way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import weakref

from rag.status import DocStatus
from rag.storage.catalog import DocumentRecord, MilvusStore

log = logging.getLogger(__name__)

_claimed: set[tuple[str, str]] = set()  # (Milvus URI, catalog key) of documents this process is indexing
_recovered: set[str] = set()  # Milvus URIs whose orphans this process has rolled back
_catalog_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def catalog_lock() -> asyncio.Lock:
    """The running loop's lock over "indexing" rows (one per loop: asyncio locks are loop-bound)."""
    loop = asyncio.get_running_loop()
    lock = _catalog_locks.get(loop)
    if lock is None:
        lock = _catalog_locks[loop] = asyncio.Lock()
    return lock


def claim(uri: str, key: str) -> None:
    """This process is indexing the document now: its "indexing" row is not an orphan (lock held)."""
    _claimed.add((uri, key))


def release(uri: str, key: str) -> None:
    """Indexed, or undone (or left for recovery when the undo failed) (lock held)."""
    _claimed.discard((uri, key))


def needs_recovery(uri: str) -> None:
    """Recover again on the next call that reaches this Milvus (an ingestion stopped early)."""
    _recovered.discard(uri)


async def arecover_once(store: MilvusStore) -> None:
    """Roll back this Milvus' orphans, unless done already by this process (or failed: then again)."""
    if store.uri in _recovered:
        return
    _recovered.add(store.uri)
    try:
        await _arecover(store)
    except BaseException:
        _recovered.discard(store.uri)
        raise


async def _arecover(store: MilvusStore) -> None:
    host, me = socket.gethostname(), os.getpid()
    async with catalog_lock():
        for info in await store.alist_collections():
            for doc in await store.adocuments(info.name):
                if doc.status is not DocStatus.INDEXING or not _orphan(doc, store.uri, host, me):
                    continue
                log.warning("rolling back %s/%s, left half-indexed by a stopped ingestion", info.name, doc.doc_id)
                await store.arollback(doc, DocumentRecord(**doc.previous) if doc.previous else None)


def _orphan(doc: DocumentRecord, uri: str, host: str, me: int) -> bool:
    owner_host, _, owner_pid = doc.owner.rpartition(":")
    pid = int(owner_pid) if owner_pid.isdigit() else 0
    if owner_host != host:  # another machine's process: it cannot be checked, so it is left alone
        return False
    return (uri, doc.key) not in _claimed if pid == me else not _alive(pid)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
