"""Typed settings: the only place in `rag` that reads the environment (and `.env`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import sys
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
MIN_TOP_K, MAX_TOP_K = 1, 100  # passages retrieved per question
MAX_RERANK = 20  # candidates an LLM may re-order: two of its calls

ConsistencyLevel = Literal["Strong", "Session", "Bounded", "Eventually"]


class ScoreKind(StrEnum):
    """What a passage's score is: only dense scores are similarities."""

    SIMILARITY = "similarity"
    HYBRID = "hybrid score"  # dense and BM25 fused; 1.0: first on both
    BM25 = "BM25"


class RetrievalMode(StrEnum):
    """How passages are found: by meaning (dense vectors), by words (Milvus' built-in BM25), or
    both fused by score (hybrid). Hybrid needs a collection indexed with the BM25 field (Milvus 2.5+)."""

    HYBRID = "hybrid"
    DENSE = "dense"
    KEYWORD = "keyword"

    @property
    def score_kind(self) -> ScoreKind:
        return {RetrievalMode.HYBRID: ScoreKind.HYBRID, RetrievalMode.DENSE: ScoreKind.SIMILARITY,
                RetrievalMode.KEYWORD: ScoreKind.BM25}[self]


RETRIEVAL_MODES: tuple[RetrievalMode, ...] = tuple(RetrievalMode)


class EmbedProvider(StrEnum):
    """Where passages are embedded."""

    LOCAL = "local"  # a Hugging Face model run in this process (the packaged one by default)
    OPENAI = "openai"  # any OpenAI-compatible embeddings endpoint: OpenAI, Ollama, vLLM, TEI, infinity...


class EmbedBackend(StrEnum):
    """What computes a local model's embeddings (`rag.models.backends`)."""

    AUTO = "auto"  # the fastest of the others whose vectors match float32 torch, measured once per CPU
    TORCH = "torch"  # sentence-transformers on torch, in RAG_EMBED_PRECISION
    ONNX = "onnx"  # ONNX Runtime, float32, exported from the model at first use
    ONNX_INT8 = "onnx-int8"  # the same export with int8 weights (dynamic quantization)
    OPENVINO = "openvino"  # the same export run by OpenVINO, in bfloat16 where the CPU has it


class VectorIndex(StrEnum):
    """The dense vector index a new collection gets on a Milvus server (Milvus Lite always searches flat)."""

    HNSW = "HNSW"  # graph index: fast approximate search, the usual choice up to tens of millions of chunks
    FLAT = "FLAT"  # exhaustive: exact, slower as the library grows
    IVF_FLAT = "IVF_FLAT"  # clustered: less memory than HNSW, needs enough chunks to train its clusters
    AUTOINDEX = "AUTOINDEX"  # the server's (or Zilliz Cloud's) own choice


# Build and search parameters when RAG_VECTOR_INDEX_PARAMS / RAG_VECTOR_SEARCH_PARAMS are not set.
# HNSW's ef must be at least the number of passages a search asks for (up to MAX_TOP_K).
INDEX_PARAMS: dict[VectorIndex, tuple[dict, dict]] = {
    VectorIndex.HNSW: ({"M": 16, "efConstruction": 200}, {"ef": 128}),
    VectorIndex.FLAT: ({}, {}),
    VectorIndex.IVF_FLAT: ({"nlist": 1024}, {"nprobe": 32}),
    VectorIndex.AUTOINDEX: ({}, {}),
}


class OcrMode(StrEnum):
    """Which pages are read by OCR (`rag.ingestion.ocr`); image files are always read by OCR unless off."""

    AUTO = "auto"  # PDF pages without a text layer (scans); pages with one keep it
    OFF = "off"  # never: scanned pages and images are refused with a reason
    FORCE = "force"  # every PDF page, even one with a text layer (a bad or hidden layer)


class OcrRuntime(StrEnum):
    """What runs the OCR models (`rag.ingestion.ocr_engine`)."""

    AUTO = "auto"  # OpenVINO, or ONNX Runtime (with a warning) where OpenVINO cannot load
    OPENVINO = "openvino"  # 2.1x faster here, the same readings
    ONNXRUNTIME = "onnxruntime"


class LLMMode(StrEnum):
    """Which language model answers questions."""

    AUTO = "auto"  # OpenAI-compatible if OPENAI_API_KEY or OPENAI_BASE_URL is set, else quote
    QUOTE = "quote"  # no LLM: answers quote the passages' best sentences, every word from the documents
    OPENAI = "openai"  # any OpenAI-compatible server
    LOCAL = "local"  # a small GGUF model run in-process with llama-cpp-python
    NONE = "none"  # retrieval only: answers are the cited passages


class Settings(BaseSettings):
    """Everything configurable, from environment variables or a `.env` file.

    Variable names are the field names in upper case, except where an alias is the
    name the ecosystem already uses (`MILVUS_URI`, `OPENAI_API_KEY`, ...).
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # Storage
    data_dir: Path = Field(Path("data"), alias="RAG_DATA_DIR")
    milvus_uri: str = Field(
        "", alias="MILVUS_URI", repr=False, description="empty: a Milvus Lite file in the data folder"
    )  # may hold user:password
    milvus_token: SecretStr = Field(SecretStr(""), alias="MILVUS_TOKEN")
    consistency_level: ConsistencyLevel = Field("Bounded", alias="MILVUS_CONSISTENCY_LEVEL")
    collection: str = Field("documents", alias="RAG_COLLECTION")
    vector_index: VectorIndex = Field(VectorIndex.HNSW, alias="RAG_VECTOR_INDEX", description="on a server")
    vector_index_params: dict[str, int | float | str] | None = Field(
        None, alias="RAG_VECTOR_INDEX_PARAMS", description='JSON, e.g. {"M": 16, "efConstruction": 200}'
    )
    vector_search_params: dict[str, int | float | str] | None = Field(
        None, alias="RAG_VECTOR_SEARCH_PARAMS", description='JSON, e.g. {"ef": 128}'
    )

    # Embedding
    embed_provider: EmbedProvider = Field(EmbedProvider.LOCAL, alias="RAG_EMBED_PROVIDER")
    embed_model: str = Field("all-MiniLM-L6-v2", alias="RAG_EMBED_MODEL")
    embed_base_url: str = Field("", alias="RAG_EMBED_BASE_URL", description="empty with a key: OpenAI itself")
    embed_api_key: SecretStr = Field(SecretStr(""), alias="RAG_EMBED_API_KEY")
    embed_concurrency: int = Field(4, ge=1, le=64, alias="RAG_EMBED_CONCURRENCY", description="requests in flight")
    embed_timeout: float = Field(60.0, gt=0, alias="RAG_EMBED_TIMEOUT")
    embed_max_tokens: int = Field(
        512, ge=32, le=32768, alias="RAG_EMBED_MAX_TOKENS", description="a server model's input limit, sizes chunks"
    )
    embed_backend: EmbedBackend = Field(EmbedBackend.AUTO, alias="RAG_EMBED_BACKEND")
    embed_precision: Literal["auto", "float32", "bfloat16"] = Field("auto", alias="RAG_EMBED_PRECISION")
    cache_dir: Path = Field(
        Path("~/.cache/rag"), alias="RAG_CACHE_DIR", description="ONNX exports and backend measurements"
    )
    hf_offline: bool = Field(True, alias="HF_HUB_OFFLINE", description="never download models at run time")
    embed_batch_size: int = Field(32, ge=1, le=1024, alias="RAG_EMBED_BATCH_SIZE")
    chunk_overlap: int = Field(32, ge=0, le=512, alias="RAG_CHUNK_OVERLAP")
    file_timeout: float = Field(
        300.0, gt=0, alias="RAG_FILE_TIMEOUT", description="seconds to read one file (a scan: one page)"
    )

    # OCR of scanned pages and images
    ocr: OcrMode = Field(OcrMode.AUTO, alias="RAG_OCR")
    ocr_dpi: int = Field(150, ge=72, le=600, alias="RAG_OCR_DPI", description="resolution scanned PDF pages are read at")
    ocr_min_confidence: float = Field(
        0.8, ge=0, le=1, alias="RAG_OCR_MIN_CONFIDENCE", description="pages read with less are flagged, not indexed"
    )
    ocr_max_pixels: int = Field(
        60_000_000, ge=1_000_000, le=170_000_000, alias="RAG_OCR_MAX_PIXELS",
        description="larger images are refused (decompression bombs); Pillow's own limit is about 179 million"
    )
    ocr_workers: int = Field(0, ge=0, le=64, alias="RAG_OCR_WORKERS", description="pages read at once; 0: one per core, up to 4")
    ocr_runtime: OcrRuntime = Field(OcrRuntime.AUTO, alias="RAG_OCR_RUNTIME", description="what runs the OCR models")

    # Answering
    llm: LLMMode = Field(LLMMode.AUTO, alias="RAG_LLM")
    openai_api_key: SecretStr = Field(SecretStr(""), alias="OPENAI_API_KEY")
    openai_base_url: str = Field("", alias="OPENAI_BASE_URL")
    openai_model: str = Field("gpt-4o-mini", alias="RAG_OPENAI_MODEL")
    gguf_path: str = Field("", alias="RAG_GGUF_PATH", description="empty: the packaged SmolLM2-135M-Instruct")
    llm_timeout: float = Field(60.0, gt=0, alias="RAG_LLM_TIMEOUT")
    max_new_tokens: int = Field(256, ge=1, le=8192, alias="RAG_MAX_NEW_TOKENS")
    top_k: int = Field(4, ge=MIN_TOP_K, le=MAX_TOP_K, alias="RAG_TOP_K")
    llm_rerank: int = Field(
        0, ge=0, le=MAX_RERANK, alias="RAG_LLM_RERANK",
        description="search candidates the LLM re-orders before answering; 0: off (needs RAG_LLM openai or local)",
    )
    retrieval_mode: RetrievalMode = Field(RetrievalMode.HYBRID, alias="RAG_RETRIEVAL_MODE")

    # Folders on the server the Documents page may import (none when unset)
    import_root: Path | None = Field(None, alias="RAG_IMPORT_ROOT")

    # Access
    app_password: SecretStr = Field(
        SecretStr(""), alias="RAG_APP_PASSWORD", description="empty: the app is open to whoever reaches it"
    )

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        return validate_collection_name(value)

    @field_validator("import_root", mode="before")
    @classmethod
    def _import_root(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ocr", "ocr_runtime", mode="before")
    @classmethod
    def _ocr_mode(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("vector_index", mode="before")
    @classmethod
    def _index_name(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("vector_index_params", "vector_search_params", mode="before")
    @classmethod
    def _index_params(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else None
            except json.JSONDecodeError:
                value = "not JSON"
        if value is not None and not isinstance(value, dict):
            raise ValueError('must be a JSON object of numbers or words, e.g. {"ef": 128}')
        return value

    @field_validator("milvus_uri")
    @classmethod
    def _milvus_uri(cls, value: str) -> str:
        value = value.strip()
        if value and "://" in value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https", "tcp", "grpc") or not parts.hostname:
                raise ValueError(
                    f"MILVUS_URI {without_credentials(value)!r} is not a Milvus address: use http(s)://host:port "
                    "for a server, or a file path ending in .db for Milvus Lite"
                )
        elif value and not value.endswith(".db"):
            raise ValueError(
                f"MILVUS_URI {value!r}: a Milvus Lite path must end in .db "
                "(or use http(s)://host:port for a server)"
            )
        return value

    @field_validator("openai_base_url", "embed_base_url")
    @classmethod
    def _base_url(cls, value: str, info) -> str:
        value = value.strip().rstrip("/")
        if value and urlsplit(value).scheme not in ("http", "https"):
            name = "OPENAI_BASE_URL" if info.field_name == "openai_base_url" else "RAG_EMBED_BASE_URL"
            raise ValueError(f"{name} {without_credentials(value)!r} must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _llm_consistent(self) -> Settings:
        if self.llm is LLMMode.OPENAI and not (self.openai_api_key.get_secret_value() or self.openai_base_url):
            raise ValueError("RAG_LLM=openai needs OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (a compatible server)")
        if self.llm_rerank and self.llm_mode in (LLMMode.QUOTE, LLMMode.NONE):
            raise ValueError(f"RAG_LLM_RERANK needs a language model: RAG_LLM is {self.llm_mode} "
                             "(set RAG_LLM=openai or local, or RAG_LLM_RERANK=0)")
        if self.embed_provider is EmbedProvider.OPENAI and not (
            self.embed_api_key.get_secret_value() or self.embed_base_url
        ):
            raise ValueError(
                "RAG_EMBED_PROVIDER=openai needs RAG_EMBED_BASE_URL (a compatible server) or RAG_EMBED_API_KEY (OpenAI)"
            )
        return self

    # Derived values -----------------------------------------------------------------

    @property
    def resolved_milvus_uri(self) -> str:
        """The URI handed to pymilvus: a server address as given, or the Lite file's absolute path
        (the data folder's `milvus.db` by default; a relative path is relative to the working folder)."""
        if "://" in self.milvus_uri:
            return self.milvus_uri
        return str(Path(self.milvus_uri or self.data_dir / "milvus.db").expanduser().resolve())

    @property
    def is_milvus_server(self) -> bool:
        return "://" in self.resolved_milvus_uri

    @property
    def milvus_display(self) -> str:
        """Where the vectors live, safe to show: never contains the token or a password."""
        if not self.is_milvus_server:
            return f"Milvus Lite file {self.resolved_milvus_uri}"
        parts = urlsplit(self.resolved_milvus_uri)
        port = f":{parts.port}" if parts.port else ""
        return f"Milvus server {parts.scheme}://{parts.hostname}{port}"

    @property
    def vector_index_configs(self) -> tuple[dict, dict]:
        """(index_config, search_config) for LlamaIndex's MilvusVectorStore: the configured index on a
        server; on Milvus Lite, which searches every vector exhaustively whatever it is told, FLAT."""
        if not self.is_milvus_server:
            return {"index_type": "FLAT"}, {}
        build, search = INDEX_PARAMS[self.vector_index]
        build = build if self.vector_index_params is None else self.vector_index_params
        search = search if self.vector_search_params is None else self.vector_search_params
        return {"index_type": str(self.vector_index), **build}, dict(search)

    @property
    def vector_index_display(self) -> str:
        if not self.is_milvus_server:
            return "FLAT (Milvus Lite searches every vector; RAG_VECTOR_INDEX applies to a server)"
        index, search = self.vector_index_configs
        params = ", ".join(f"{k}={v}" for k, v in {**index, **search}.items() if k != "index_type")
        return f"{self.vector_index}" + (f" ({params})" if params else "") + " for new collections"

    @property
    def llm_mode(self) -> LLMMode:
        """The concrete mode `auto` resolves to."""
        if self.llm is not LLMMode.AUTO:
            return self.llm
        if self.openai_api_key.get_secret_value() or self.openai_base_url:
            return LLMMode.OPENAI
        return LLMMode.QUOTE

    @property
    def embed_display(self) -> str:
        """The embedding model, and where it runs if not here (never a key)."""
        if self.embed_provider is EmbedProvider.LOCAL:
            return self.embed_model
        return f"{self.embed_model} at {without_credentials(self.embed_base_url) or 'OpenAI'}"

    @property
    def password_required(self) -> bool:
        return bool(self.app_password.get_secret_value())

    def password_matches(self, attempt: str) -> bool:
        """Compare digests in constant time: timing says nothing about the password or its length."""
        expected = self.app_password.get_secret_value()
        digest = lambda text: hashlib.sha256(text.encode()).digest()  # noqa: E731
        return bool(expected) and hmac.compare_digest(digest(expected), digest(attempt or ""))

    @cached_property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"


def without_credentials(url: str) -> str:
    """`scheme://user:password@host/...` as `scheme://***@host/...`: safe to repeat in a message."""
    return re.sub(r"(?<=://)[^/@\s]*@", "***@", url)


def validate_collection_name(name: str) -> str:
    """Milvus collection names: a letter or underscore, then letters, digits, underscores."""
    if not COLLECTION_NAME.match(name or ""):
        raise ValueError(
            f"invalid collection name {name!r}: use letters, digits and underscores, "
            "starting with a letter (at most 255 characters)"
        )
    return name


def check_top_k(top_k: int) -> int:
    if not MIN_TOP_K <= top_k <= MAX_TOP_K:
        raise ValueError(f"top-k must be between {MIN_TOP_K} and {MAX_TOP_K}, not {top_k}")
    return top_k


def check_retrieval_mode(mode: str) -> RetrievalMode:
    if mode not in RETRIEVAL_MODES:
        raise ValueError(f"unknown retrieval mode {mode!r}: use one of {', '.join(RETRIEVAL_MODES)}")
    return RetrievalMode(mode)


def setting_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(setting, what is wrong with it) for each error of a `Settings` validation, in plain words."""
    return [
        (".".join(map(str, e["loc"])) or "settings", e["msg"].removeprefix("Value error, "))
        for e in exc.errors()
    ]


def import_pymilvus() -> None:
    """Import pymilvus with `MILVUS_URI` hidden from it; `rag/__init__.py` calls this first.

    pymilvus reads `MILVUS_URI` when it is first imported (from the environment, and from a
    `.env` file it loads itself) and parses it as a server address, so a Milvus Lite path such
    as `data/milvus.db` made the import raise "Illegal uri" (milvus-io/milvus-lite#219). This
    app passes the URI to every client explicitly and never uses pymilvus' default connection.
    """
    if "pymilvus" in sys.modules:
        return
    saved = os.environ.get("MILVUS_URI")
    os.environ["MILVUS_URI"] = ""  # present, so pymilvus' load_dotenv() does not take .env's value
    try:
        import pymilvus  # noqa: F401
    finally:
        if saved is None:
            del os.environ["MILVUS_URI"]
        else:
            os.environ["MILVUS_URI"] = saved
