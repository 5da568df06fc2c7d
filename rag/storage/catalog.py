"""Milvus: the catalog of collections and documents, and one LlamaIndex vector store per collection.

The catalog is a small Milvus collection of its own (`_rag_catalog`), so what a knowledge base
was built with, and which documents it holds, lives next to the vectors: on Milvus Lite, on a
server, or on a cluster alike. Every method runs on the shared event loop (see `rag.loop`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from llama_index.core.schema import BaseNode
from llama_index.vector_stores.milvus import MilvusVectorStore
from llama_index.vector_stores.milvus.utils import BM25BuiltInFunction
from pymilvus import AsyncMilvusClient, DataType, MilvusClient, MilvusException

from rag.config import Settings
from rag.errors import CollectionNotFound, EmbeddingMismatch, StoreUnavailable, first_line
from rag.models.embeddings import EmbedInfo
from rag.status import DocStatus

CATALOG = "_rag_catalog"
INTERNAL_PREFIX = "_rag_"
QUERY_LIMIT = 16384  # Milvus' cap on offset + limit for one query
CONNECT_TIMEOUT = 10.0
# Milvus Lite is a local process on a Unix socket: keepalive pings are useless there, and its
# gRPC server answers pings every 10 s on an idle connection with GOAWAY "too_many_pings",
# after which reconnecting fails. Seen after ~2 minutes without a request.
LITE_GRPC_OPTIONS = {"grpc.keepalive_time_ms": 2**31 - 1, "grpc.keepalive_permit_without_calls": 0}

# pymilvus prints every failed call, with tracebacks, on a console handler of its own: a stopped
# server fills the terminal. The store reports each failure once, as a one-line StoreUnavailable.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
# What a failed Milvus call raises: pymilvus' own exception, or (a server gone mid-call) the raw
# gRPC error, which pymilvus lets through after its retries.
MILVUS_ERRORS = (MilvusException, grpc.RpcError)


def milvus_str(value: str) -> str:
    """A string literal for a Milvus filter expression (double quotes, escaped)."""
    return json.dumps(value)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class CollectionInfo:
    name: str
    embed_model: str
    embed_dim: int
    created_at: str = ""
    # "hybrid": chunks carry Milvus' BM25 field too (hybrid, dense and keyword search work);
    # "dense": vectors only. Rows written before hybrid search existed have no value: dense.
    retrieval: str = "dense"

    @property
    def has_bm25(self) -> bool:
        return self.retrieval == "hybrid"


@dataclass
class DocumentRecord:
    """One document of a collection, as the library shows it."""

    collection: str
    doc_id: str
    file_name: str
    file_type: str = ""
    size: int = 0
    pages: int | None = None
    chunks: int = 0
    content_hash: str = ""
    status: DocStatus = DocStatus.INDEXING
    error: str = ""
    indexed_at: str = ""
    previous: dict[str, Any] | None = None  # the indexed version this one replaces, while indexing
    source_path: str = ""  # the file it was read from, for showing a source in place
    ocr: dict[str, Any] | None = None  # pages read by OCR: count, confidence, flagged (`rag.ingestion.ocr`)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def __post_init__(self) -> None:
        self.status = DocStatus(self.status)  # a catalog row read back holds the plain string

    @property
    def key(self) -> str:
        return f"{self.collection}/{self.doc_id}"


def _unavailable(uri_display: str, exc: Exception) -> StoreUnavailable:
    if _refused_credentials(exc):
        return StoreUnavailable(
            f"{uri_display} refused the credentials. Set MILVUS_TOKEN to a user:password or an API key "
            "that this Milvus accepts."
        )
    details = getattr(exc, "details", None)  # a raw gRPC error: its str() is a multi-line dump
    reason = (details() if callable(details) else None) or getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return StoreUnavailable(
        f"cannot use {uri_display}: {first_line(reason)}. "
        "Check that Milvus is running and that MILVUS_URI and MILVUS_TOKEN are right."
    )


def _refused_credentials(exc: BaseException | None) -> bool:
    """Whether Milvus answered "unauthenticated": pymilvus wraps that in "Fail connecting"."""
    seen = 0
    while exc is not None and seen < 10:
        code = getattr(exc, "code", None)
        if callable(code) and getattr(code(), "name", "") in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class MilvusStore:
    """One Milvus deployment, opened with the settings' URI and token."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._uri = settings.resolved_milvus_uri
        self._token = settings.milvus_token.get_secret_value()
        self._client_kwargs: dict[str, Any] = {"timeout": CONNECT_TIMEOUT}
        if not settings.is_milvus_server:
            self._client_kwargs["grpc_options"] = LITE_GRPC_OPTIONS
        self._client: AsyncMilvusClient | None = None
        self._vector_stores: dict[str, MilvusVectorStore] = {}
        self._catalog_deletes = 0  # catalog deletes made, and how many a Strong read has covered
        self._deletes_seen = 0
        self._bm25: bool | None = None

    @property
    def display(self) -> str:
        return self._settings.milvus_display

    @property
    def uri(self) -> str:
        return self._uri

    def unavailable(self, exc: Exception) -> StoreUnavailable:
        """The user-ready error for a failed Milvus call (raise it `from exc`)."""
        return _unavailable(self.display, exc)

    async def aconnect(self) -> None:
        """Open the connection and make sure the catalog exists (idempotent)."""
        if self._client is not None:
            return
        if not self._settings.is_milvus_server:
            Path(self._uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            # The sync client starts Milvus Lite for a file URI and creates the catalog;
            # both are one-time costs, before any async call.
            sync = MilvusClient(uri=self._uri, token=self._token, **self._client_kwargs)
            if not sync.has_collection(CATALOG):
                self._create_catalog(sync)
            client = AsyncMilvusClient(uri=self._uri, token=self._token, **self._client_kwargs)
            await client.load_collection(CATALOG)
        except Exception as exc:  # Milvus, gRPC and OS errors: unreachable or malformed endpoints
            raise self.unavailable(exc) from exc
        self._client = client

    @staticmethod
    def _create_catalog(client: MilvusClient) -> None:
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=2048)
        schema.add_field("kind", DataType.VARCHAR, max_length=16)
        schema.add_field("collection", DataType.VARCHAR, max_length=256)
        schema.add_field("info", DataType.JSON)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field
        index = client.prepare_index_params()
        index.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
        client.create_collection(CATALOG, schema=schema, index_params=index, consistency_level="Strong")

    @property
    def client(self) -> AsyncMilvusClient:
        if self._client is None:
            raise RuntimeError("MilvusStore used before aconnect()")
        return self._client

    async def aclose(self) -> None:
        for store in self._vector_stores.values():
            if store.aclient is not None:
                await store.aclient.close()
            store.client.close()
        self._vector_stores.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    # Catalog rows -----------------------------------------------------------------------

    async def _put(self, key: str, kind: str, collection: str, info: dict[str, Any]) -> None:
        row = {"id": key, "kind": kind, "collection": collection, "info": info, "vec": [0.0, 0.0]}
        try:
            await self.client.upsert(CATALOG, [row])
        except MILVUS_ERRORS as exc:
            raise self.unavailable(exc) from exc

    async def _rows(self, expr: str, limit: int = QUERY_LIMIT) -> list[dict[str, Any]]:
        # Session consistency: this process always reads its own upserts, without the wait for
        # the server's time tick that Strong costs (~200 ms per read on a server). A delete
        # returns no timestamp for Session to wait for (Milvus 2.3): the first read after one
        # is Strong, or the deleted row could still be listed.
        deletes = self._catalog_deletes
        level = "Session" if deletes == self._deletes_seen else "Strong"
        try:
            rows = await self.client.query(
                CATALOG, filter=expr, output_fields=["id", "info"], limit=limit, consistency_level=level
            )
        except MILVUS_ERRORS as exc:
            raise self.unavailable(exc) from exc
        self._deletes_seen = max(self._deletes_seen, deletes)
        return rows

    async def _delete_rows(self, expr: str) -> None:
        try:
            await self.client.delete(CATALOG, filter=expr)
        except MILVUS_ERRORS as exc:
            raise self.unavailable(exc) from exc
        finally:
            self._catalog_deletes += 1  # even a failed call may have deleted

    # Collections --------------------------------------------------------------------------

    async def alist_collections(self) -> list[CollectionInfo]:
        rows = await self._rows('kind == "collection"')
        infos = [CollectionInfo(**row["info"]) for row in rows if not row["id"].startswith(INTERNAL_PREFIX)]
        return sorted(infos, key=lambda c: c.name)

    async def aget_collection(self, name: str) -> CollectionInfo:
        rows = await self._rows(f'kind == "collection" and collection == {milvus_str(name)}')
        if not rows:
            names = ", ".join(c.name for c in await self.alist_collections()) or "none yet"
            raise CollectionNotFound(f"no collection named {name!r} (collections: {names}); ingest documents into it first")
        return CollectionInfo(**rows[0]["info"])

    async def _describe_dense_index(self, name: str) -> dict[str, Any]:
        names = await self.client.list_indexes(name, field_name="embedding")
        return await self.client.describe_index(name, names[0]) if names else {}

    async def adense_index(self, name: str) -> str:
        """How a collection's vectors are indexed, as Milvus describes it: "HNSW (M=16, efConstruction=200)"."""
        try:
            about = await self._describe_dense_index(name)
        except MILVUS_ERRORS as exc:
            raise self.unavailable(exc) from exc
        skip = {"index_type", "field_name", "index_name", "metric_type", "total_rows", "indexed_rows",
                "pending_index_rows", "state", "dim"}
        params = ", ".join(f"{k}={v}" for k, v in about.items() if k not in skip)
        kind = about.get("index_type", "none")
        return f"{kind} ({params})" if params else kind

    async def await_indexed(self, name: str, timeout: float = 600.0) -> None:
        """Seal what was inserted and wait until a server has indexed all of it (searches of rows
        not yet indexed are exhaustive, so a benchmark would time the wrong thing)."""
        try:
            await self.client.flush(name)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                about = await self._describe_dense_index(name)
                if not about.get("pending_index_rows") and about.get("indexed_rows", 0) >= about.get("total_rows", 0):
                    return
                await asyncio.sleep(1.0)
        except MILVUS_ERRORS as exc:
            raise self.unavailable(exc) from exc
        raise StoreUnavailable(f"{self._settings.milvus_display} had not indexed collection {name!r} after {timeout:.0f} s")

    async def asupports_bm25(self) -> bool:
        """Whether this Milvus has the built-in BM25 function (Milvus 2.5+; Milvus Lite 2.5+)."""
        if self._bm25 is None:
            if self._settings.is_milvus_server:
                try:
                    version = await self.client.get_server_version()
                except MILVUS_ERRORS:
                    version = ""  # unknown (a managed service may not say): assume a current Milvus
                self._bm25 = _version_at_least(version, (2, 5)) if version else True
            else:
                from importlib.metadata import version as package_version

                self._bm25 = _version_at_least(package_version("milvus-lite"), (2, 5))
        return self._bm25

    async def aensure_collection(self, name: str, embed: EmbedInfo, retrieval: str | None = None) -> CollectionInfo:
        """The collection's record, created on first use; refuses a different embedding model.

        A new collection gets the BM25 field where Milvus has it (`retrieval="dense"` opts out)."""
        try:
            info = await self.aget_collection(name)
        except CollectionNotFound:
            if retrieval is None:
                retrieval = "hybrid" if await self.asupports_bm25() else "dense"
            info = CollectionInfo(
                name=name, embed_model=embed.name, embed_dim=embed.dim, created_at=now_iso(), retrieval=retrieval
            )
            await self._put(name, "collection", name, asdict(info))
            return info
        check_embedding(info, embed)
        return info

    async def adrop_collection(self, name: str) -> None:
        await self.aget_collection(name)
        store = self._vector_stores.pop(name, None)
        if store is not None and store.aclient is not None:
            await store.aclient.close()
        try:
            if await self.client.has_collection(name):
                await self.client.drop_collection(name)
        except MILVUS_ERRORS as exc:
            raise self.unavailable(exc) from exc
        await self._delete_rows(f"collection == {milvus_str(name)}")

    def vector_store(self, info: CollectionInfo) -> MilvusVectorStore:
        """The LlamaIndex store for a collection (one per process; creates the Milvus collection)."""
        store = self._vector_stores.get(info.name)
        if store is None:
            # BM25BuiltInFunction is always passed explicitly: without it, opening an existing
            # collection falls back to a BGE-M3 function that exits the process (Lite lists no functions).
            sparse: dict[str, Any] = (
                {"enable_sparse": True, "sparse_embedding_function": BM25BuiltInFunction()}
                if info.has_bm25 else {}
            )
            index_config, search_config = self._settings.vector_index_configs
            try:
                store = MilvusVectorStore(
                    uri=self._uri,
                    token=self._token,
                    collection_name=info.name,
                    dim=info.embed_dim,
                    similarity_metric="IP",  # embeddings are normalised: inner product is cosine
                    consistency_level=self._settings.consistency_level,
                    index_config=index_config,  # used when the collection is created
                    search_config=search_config,
                    **sparse,
                    **self._client_kwargs,
                )
            except MILVUS_ERRORS as exc:
                raise self.unavailable(exc) from exc
            self._vector_stores[info.name] = store
        return store

    async def ainsert(self, vector_store: MilvusVectorStore, nodes: list[BaseNode]) -> None:
        """Insert embedded chunks through a collection's LlamaIndex store."""
        try:
            await vector_store.async_add(nodes)
        except MILVUS_ERRORS as exc:
            raise self.unavailable(exc) from exc

    # Documents ------------------------------------------------------------------------------

    async def adocuments(self, collection: str) -> list[DocumentRecord]:
        rows = await self._rows(f'kind == "document" and collection == {milvus_str(collection)}')
        docs = [DocumentRecord(**row["info"]) for row in rows]
        return sorted(docs, key=lambda d: d.doc_id)

    async def ahas_indexed(self, collection: str) -> bool:
        expr = f'kind == "document" and collection == {milvus_str(collection)} and info["status"] == "{DocStatus.INDEXED}"'
        return bool(await self._rows(expr, limit=1))

    async def aget_document(self, collection: str, doc_id: str) -> DocumentRecord | None:
        key = f"{collection}/{doc_id}"
        rows = await self._rows(f"id == {milvus_str(key)}")
        return DocumentRecord(**rows[0]["info"]) if rows else None

    async def aput_document(self, record: DocumentRecord) -> None:
        await self._put(record.key, "document", record.collection, asdict(record))

    async def aforget_document(self, collection: str, doc_id: str) -> None:
        await self._delete_rows(f"id == {milvus_str(f'{collection}/{doc_id}')}")

    async def adelete_chunks(self, collection: str, doc_id: str, *, keep_hash: str | None = None, only_hash: str | None = None) -> None:
        """Delete a document's chunks: all, all but one version, or one version."""
        expr = f"doc_id == {milvus_str(doc_id)}"
        if keep_hash is not None:
            expr += f" and content_hash != {milvus_str(keep_hash)}"
        if only_hash is not None:
            expr += f" and content_hash == {milvus_str(only_hash)}"
        try:
            if await self.client.has_collection(collection):
                await self.client.delete(collection, filter=expr)
        except MILVUS_ERRORS as exc:
            raise self.unavailable(exc) from exc

    async def arollback(self, record: DocumentRecord, previous: DocumentRecord | None) -> None:
        """Undo a half-written version: its chunks go, and the previous version is listed again
        only if all its chunks are still there (an update that died while finishing may have
        deleted them); otherwise the document is removed whole."""
        await self.adelete_chunks(record.collection, record.doc_id, only_hash=record.content_hash)
        if previous is not None and await self.acount_chunks(record.collection, record.doc_id) == previous.chunks:
            await self.aput_document(previous)
        else:
            await self.adelete_chunks(record.collection, record.doc_id)
            await self.aforget_document(record.collection, record.doc_id)

    async def acount_chunks(self, collection: str, doc_id: str | None = None) -> int:
        """Chunks actually stored (not the catalog's figure): for checks and recovery."""
        expr = f"doc_id == {milvus_str(doc_id)}" if doc_id is not None else ""
        try:
            if not await self.client.has_collection(collection):
                return 0
            rows = await self.client.query(
                collection, filter=expr, output_fields=["count(*)"], consistency_level="Strong"
            )
        except MILVUS_ERRORS as exc:
            raise self.unavailable(exc) from exc
        return int(rows[0]["count(*)"]) if rows else 0

    # Used by the benchmarks -----------------------------------------------------------------

    async def adiscard_collection(self, name: str) -> None:
        """Drop a collection whether or not the catalog lists it, with its catalog rows: a
        benchmark clears its own collections before and after use, however an earlier run ended."""
        if await self.client.has_collection(name):
            await self.client.drop_collection(name)
        await self._delete_rows(f"collection == {milvus_str(name)}")
        self._vector_stores.pop(name, None)  # its MilvusVectorStore would point at the dropped collection


def _version_at_least(version: str, minimum: tuple[int, int]) -> bool:
    numbers = re.findall(r"\d+", version)
    return len(numbers) >= 2 and (int(numbers[0]), int(numbers[1])) >= minimum


def check_embedding(info: CollectionInfo, embed: EmbedInfo) -> None:
    if info.embed_model != embed.name or info.embed_dim != embed.dim:
        raise EmbeddingMismatch(
            f"collection {info.name!r} was built with embedding model {info.embed_model!r} "
            f"({info.embed_dim}-d), but the configured one is {embed.name!r} ({embed.dim}-d): "
            f"set {_settings_for(info.embed_model, embed.name)} to use it, or choose another collection"
        )


def _settings_for(recorded: str, configured: str) -> str:
    """The settings that give a recorded model back: a server's is recorded as `provider:model`."""
    provider, colon, model = recorded.partition(":")
    if colon and provider == "openai":
        return f"RAG_EMBED_PROVIDER={provider} and RAG_EMBED_MODEL={model}"
    if configured.startswith("openai:"):
        return f"RAG_EMBED_PROVIDER=local and RAG_EMBED_MODEL={recorded}"
    return f"RAG_EMBED_MODEL={recorded}"
