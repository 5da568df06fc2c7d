"""The embedding model on ONNX Runtime or OpenVINO: exported once from the local model, offline,
then cached.

Why: on CPUs without bfloat16 units, ONNX Runtime is the other way to embed faster than torch's
float32, and its int8 dynamic quantization the fastest of all where it keeps quality. OpenVINO
runs the same export in bfloat16 on CPUs with AMX, faster than torch's bfloat16 there. None is
trusted on speed alone: `rag.models.backends` compares every backend's vectors with float32
torch before `RAG_EMBED_BACKEND=auto` may pick it.

Only models that sentence-transformers builds as Transformer -> Pooling (mean or CLS) ->
optional Normalize are exported; others stay on torch. The export is the transformer alone
(`torch.onnx.export`, TorchScript path, through a wrapper that passes keyword arguments: the
positional order of `BertModel.forward` changed in transformers 5); pooling and normalisation
are done here in NumPy, over the attention mask, as sentence-transformers does them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from rag.errors import ConfigError

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"
OPSET = 17
FLOAT32, INT8, META = "model.onnx", "model-int8.onnx", "export.json"
SHAPE_STEP = 16  # OpenVINO: batches padded to a multiple of this many word pieces (the mask keeps padding out)
RUN_BATCH = 8  # texts per run of the runtime: see `OnnxEmbedding._embed`


class OnnxUnsupported(ConfigError):
    """The model cannot run on ONNX Runtime here (its layout, or a failed export)."""


class OpenVinoUnavailable(OnnxUnsupported):
    """OpenVINO itself cannot run here (not installed, or this CPU): exporting again won't help."""


def model_layout(model_dir: Path) -> tuple[str, bool]:
    """(pooling, normalize) of a sentence-transformers folder, or OnnxUnsupported with the reason."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        kinds = [m["type"] for m in modules]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OnnxUnsupported(f"{model_dir} is not a sentence-transformers folder ({type(exc).__name__})") from None
    if kinds not in ([TRANSFORMER, POOLING], [TRANSFORMER, POOLING, NORMALIZE]):
        raise OnnxUnsupported(f"the model's layers {kinds} are not Transformer, Pooling[, Normalize]")
    pooling_dir = next(m["path"] for m in modules if m["type"] == POOLING)
    config = json.loads((model_dir / pooling_dir / "config.json").read_text())
    modes = [mode for mode in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens",
                               "lasttoken") if config.get(f"pooling_mode_{mode}")]
    if modes not in (["mean_tokens"], ["cls_token"]):
        raise OnnxUnsupported(f"pooling {modes} is not exported (mean or CLS only)")
    return modes[0], len(kinds) == 3


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    """Drop onnxruntime's "Please consider to run pre-processing before quantization" advice (to the
    root logger, on every export): it is about image models, and the export is checked anyway."""
    return "pre-processing before quantization" not in record.getMessage()


def export(st_model: Any, folder: Path) -> Path:
    """Write the float32 export and its int8 quantization into `folder` (each file atomically).

    `st_model` is the loaded SentenceTransformer (float32, CPU). Returns the float32 file.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    transformer = st_model[0].auto_model.eval()
    sample = st_model.tokenizer(["an example passage", "a second, longer example passage"], padding=True,
                                return_tensors="pt")
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]

    class ByKeyword(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = transformer

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, tensors, strict=True))).last_hidden_state

    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    float_path, int8_path = folder / FLOAT32, folder / INT8
    partial = folder / f".{FLOAT32}.{os.getpid()}.tmp"
    # The tracer warns about Python branches it freezes (padding, causal masks): none apply to an
    # encoder traced with dynamic batch and length axes, and the fidelity check in backends.py
    # proves the export against float32 torch anyway.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ByKeyword(), tuple(sample[n] for n in names), str(partial), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
    os.replace(partial, float_path)
    partial = folder / f".{INT8}.{os.getpid()}.tmp"
    # Weights of the dense layers only, per output channel: the variant that keeps most quality.
    root = logging.getLogger()
    root.addFilter(_no_preprocessing_advice)
    try:
        quantize_dynamic(str(float_path), str(partial), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    finally:
        root.removeFilter(_no_preprocessing_advice)
    os.replace(partial, int8_path)
    # What the ONNX file cannot carry: the prompts LlamaIndex gave the model, and its input limit.
    meta = {"prompts": {k: v for k, v in (st_model.prompts or {}).items() if v}, "max_length": st_model.max_seq_length}
    (folder / META).write_text(json.dumps(meta))
    return float_path


def read_meta(folder: Path) -> dict[str, Any]:
    """The export's prompts and input limit; OnnxUnsupported when the export is incomplete."""
    try:
        meta = json.loads((folder / META).read_text())
        return {"prompts": dict(meta["prompts"]), "max_length": int(meta["max_length"])}
    except (OSError, ValueError, KeyError, TypeError):
        raise OnnxUnsupported(f"the export in {folder} is incomplete") from None


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a truncated or foreign file: onnxruntime raises its own classes
        raise OnnxUnsupported(f"cannot load {path.name}: {str(exc).splitlines()[0][:200]}") from exc


class _OpenVinoSession:
    """The export compiled by OpenVINO, answering as an ONNX Runtime session does (`run`,
    `get_inputs`), at OpenVINO's default precision for the CPU: bfloat16 where it has AMX or
    AVX512-BF16, float32 elsewhere. An inference request per thread: one is not thread-safe."""

    def __init__(self, path: Path, threads: int) -> None:
        from types import SimpleNamespace

        try:
            import openvino

            self._compiled = openvino.Core().compile_model(
                str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
        except Exception as exc:  # not installed, or OpenVINO's RuntimeError on this CPU or file
            raise OpenVinoUnavailable(f"OpenVINO cannot run {path.name}: {str(exc).splitlines()[0][:200]}") from exc
        self._inputs = [SimpleNamespace(name=i.get_any_name()) for i in self._compiled.inputs]
        self._local = threading.local()
        hint = str(self._compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
        self.precision = "bfloat16" if "bf" in hint else "float16" if "f16" in hint else "float32"

    def get_inputs(self) -> list[Any]:
        return self._inputs

    def run(self, _outputs: None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return [request.infer(feed)[0]]


class OnnxEmbedding(BaseEmbedding):
    """LlamaIndex's embedding interface over an exported model on ONNX Runtime, or on OpenVINO
    (`runtime`), on the CPU."""

    model_dir: str  # the sentence-transformers folder: tokenizer and layout
    onnx_path: str
    max_length: int = 256
    prompts: dict[str, str] = {}  # what LlamaIndex prepends to a "query" or a "text"
    runtime: str = "onnxruntime"  # or "openvino"

    _session: Any = PrivateAttr()
    _inputs: list[str] = PrivateAttr()
    _tokenizer: Any = PrivateAttr()  # truncating, for embedding; never reconfigured after __init__
    _counter: Any = PrivateAttr()  # not truncating, for sizing chunks
    _pooling: str = PrivateAttr()
    _normalize: bool = PrivateAttr()
    _dim: int = PrivateAttr()

    def __init__(self, *, threads: int, **data: Any) -> None:
        from tokenizers import Tokenizer

        super().__init__(**data)
        folder = Path(self.model_dir)
        self._pooling, self._normalize = model_layout(folder)
        path = Path(self.onnx_path)
        self._session = _OpenVinoSession(path, threads) if self.runtime == "openvino" else _session(path, threads)
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)
        self._dim = len(self._embed(["dimension"])[0])

    @classmethod
    def class_name(cls) -> str:
        return "OnnxEmbedding"

    @property
    def precision(self) -> str:
        if self.runtime == "openvino":
            return self._session.precision
        return "int8" if self.onnx_path.endswith(INT8) else "float32"

    def dimension(self) -> int:
        return self._dim

    @property
    def chunk_tokens(self) -> int:
        return self.max_length

    def count_tokens(self, text: str) -> list[int]:
        return self._counter.encode(text, add_special_tokens=False).ids

    def _embed(self, texts: Sequence[str], prompt: str = "") -> list[list[float]]:
        """Runs of `RUN_BATCH` texts of like length (less padding), pooled over the mask, in the
        callers' order.

        Why runs of 8 rather than LlamaIndex's batch of 32: a run's activations (its attention is
        texts x heads x length^2) then stay in the CPU's caches, and texts of like length pad little.
        Measured on 2 cores with a library's chunks (median 234 word pieces), 32 at a time: 26-32%
        more passages/s on OpenVINO, ONNX Runtime float32 and int8 alike (README, "Embedding
        backends"); torch's bfloat16 does not change, so only this class runs that way."""
        encodings = self._tokenizer.encode_batch([prompt + t for t in texts])
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        vectors = np.zeros((len(texts), 0), dtype=np.float32)
        for start in range(0, len(order), RUN_BATCH):
            batch = [encodings[i] for i in order[start:start + RUN_BATCH]]
            width = max(len(e.ids) for e in batch)
            if self.runtime == "openvino":  # a few widths, each prepared once: a new input shape costs OpenVINO a plan
                width = min(-(-width // SHAPE_STEP) * SHAPE_STEP, max(self.max_length, width))
            feed = {name: np.zeros((len(batch), width), dtype=np.int64) for name in self._inputs}
            for row, e in enumerate(batch):
                n = len(e.ids)
                feed["input_ids"][row, :n] = e.ids
                if "attention_mask" in feed:
                    feed["attention_mask"][row, :n] = e.attention_mask
                if "token_type_ids" in feed:
                    feed["token_type_ids"][row, :n] = e.type_ids
            hidden = self._session.run(None, feed)[0]
            mask = feed.get("attention_mask", np.ones_like(feed["input_ids"]))[..., None].astype(np.float32)
            pooled = hidden[:, 0] if self._pooling == "cls_token" else (hidden * mask).sum(1) / np.clip(
                mask.sum(1), 1e-9, None)
            if self._normalize:
                pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            if vectors.shape[1] == 0:
                vectors = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            vectors[order[start:start + RUN_BATCH]] = pooled
        return vectors.tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query], self.prompts.get("query", ""))[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text], self.prompts.get("text", ""))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts, self.prompts.get("text", "")) if texts else []

