"""Which backend computes the local embeddings (`RAG_EMBED_BACKEND`): measured, never assumed.

The fastest way to embed depends on the CPU: torch in bfloat16 on CPUs with bf16 units (AMX,
AVX512-BF16), ONNX Runtime, or its int8 quantization elsewhere; and a fast backend can be a
wrong one (a broken export or a lossy quantization still returns vectors). So `auto` runs each
candidate once per model, CPU and library versions, on passages of real text of several lengths
(the standard library's own documentation, present wherever Python is), and keeps the fastest
whose vectors are within cosine `MIN_COSINE` of float32 torch on every passage. The result is
cached next to the ONNX export (`RAG_CACHE_DIR`); set-up measures it once, so the app never
waits for it. On a GPU, torch is used without measuring.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import EmbedBackend
from rag.errors import ConfigError
from rag.models.onnx_embedding import (
    FLOAT32,
    INT8,
    OnnxEmbedding,
    OnnxUnsupported,
    OpenVinoUnavailable,
    export,
    model_layout,
    read_meta,
)

MIN_COSINE = 0.99  # to float32 torch, on every sample passage
SAMPLE_MODULES = ("json", "argparse", "pathlib", "subprocess", "sqlite3", "shutil", "logging", "datetime",
                  "collections", "asyncio")
SAMPLE_SIZE = 64
CHOICE = "choice.json"


@dataclass
class Trial:
    """One backend measured on the sample: its speed, and how close its vectors are to float32."""

    backend: str
    precision: str
    passages_per_s: float
    min_cosine: float
    passed: bool
    note: str = ""


@dataclass
class Choice:
    chosen: str  # an EmbedBackend value, never "auto"
    reason: str
    trials: list[Trial] = field(default_factory=list)
    machine: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def sample_passages(count: int = SAMPLE_SIZE) -> list[str]:
    """Real prose of several lengths: one-line summaries, paragraphs, and chunk-sized passages."""
    import importlib

    docs: list[str] = []
    for name in SAMPLE_MODULES:
        module = importlib.import_module(name)
        for _, member in sorted(inspect.getmembers(module)):
            doc = inspect.getdoc(member) if (inspect.isfunction(member) or inspect.isclass(member)) else None
            if doc and len(doc) > 40 and doc not in docs:
                docs.append(doc)
    sizes = (60, 300, 1100, 2000)  # a question, a paragraph, a chunk, past the model's input limit
    passages = [doc[: sizes[i % len(sizes)]] for i, doc in enumerate(docs)]
    return passages[:count]


def machine_key() -> str:
    """CPU model and features, and the versions that compute: a change of any means measure again."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        cpu = next((line for line in cpuinfo.splitlines() if line.startswith("model name")), "")
        flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    except OSError:
        cpu, flags = platform.processor(), ""
    versions = [f"{p}={_version(p)}" for p in ("torch", "onnxruntime", "openvino", "transformers", "sentence-transformers")]
    digest = hashlib.sha256(f"{cpu}|{flags}|{os.cpu_count()}|{versions}".encode()).hexdigest()[:16]
    return f"{cpu.split(':', 1)[-1].strip()} x{os.cpu_count()} [{digest}]"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def export_folder(cache_dir: Path, model_path: str) -> Path:
    """One folder per model (by its path and weights' size and date) under `cache_dir/embeddings`."""
    path = Path(model_path)
    stamp = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in sorted(path.glob("*.safetensors"))] \
        if path.is_dir() else []
    digest = hashlib.sha256(f"{path.resolve() if path.exists() else model_path}|{stamp}".encode()).hexdigest()[:12]
    return cache_dir.expanduser() / "embeddings" / f"{path.name or 'model'}-{digest}"


def threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_onnx(model_path: str, folder: Path, *, int8: bool, batch_size: int, torch_model: Any,
              runtime: str = "onnxruntime") -> OnnxEmbedding:
    """The ONNX model, exported first if needed, run by `runtime` (onnxruntime, openvino); an
    export that does not load is made again once."""
    model_layout(Path(model_path))  # refuse unsupported layouts before spending an export on them
    for attempt in (1, 2):
        if not (folder / FLOAT32).exists() or not (folder / INT8).exists():
            st_model = torch_model()
            try:
                export(st_model, folder)
            except Exception as exc:  # torch's tracer, onnx, a full disk or a read-only cache: all "cannot export"
                raise OnnxUnsupported(f"the export to {folder} failed ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0][:200] if str(exc) else 'no message'})") from exc
        try:
            meta = read_meta(folder)
            return OnnxEmbedding(model_dir=model_path, onnx_path=str(folder / (INT8 if int8 else FLOAT32)),
                                 embed_batch_size=batch_size, threads=threads(), runtime=runtime, **meta)
        except OpenVinoUnavailable:
            raise
        except OnnxUnsupported:
            if attempt == 2:
                raise
            shutil.rmtree(folder, ignore_errors=True)  # truncated by a crash, or foreign: export again
    raise AssertionError("unreachable")


def _measure(model: Any, passages: list[str], reference: np.ndarray | None) -> tuple[float, float, np.ndarray]:
    model.get_text_embedding_batch(passages)  # warm-up: first calls allocate, and OpenVINO plans each input shape
    started = time.perf_counter()
    vectors = np.asarray(model.get_text_embedding_batch(passages), dtype=np.float32)
    speed = len(passages) / (time.perf_counter() - started)
    if reference is None:
        return speed, 1.0, vectors
    cosine = (vectors * reference).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
    return speed, float(cosine.min()), vectors


def calibrate(candidates: dict[str, Any], reference_model: Any, passages: list[str]) -> Choice:
    """Measure each candidate (name -> zero-argument loader) against float32 torch; pick the fastest that passes."""
    _, _, reference = _measure(reference_model, passages, None)
    trials = []
    for name, load in candidates.items():
        try:
            model = load()
        except (ConfigError, OSError, RuntimeError, ValueError) as exc:
            trials.append(Trial(name, "-", 0.0, 0.0, False, f"unavailable: {exc}"))
            continue
        speed, cosine, _ = _measure(model, passages, reference)
        passed = cosine >= MIN_COSINE
        note = "" if passed else f"vectors drift from float32 (cosine {cosine:.4f} < {MIN_COSINE})"
        trials.append(Trial(name, getattr(model, "precision", "float32"), round(speed, 1), round(cosine, 5), passed,
                            note))
    passing = [t for t in trials if t.passed]
    if not passing:
        return Choice(EmbedBackend.TORCH, "no candidate passed: float32 torch", trials, machine_key())
    best = max(passing, key=lambda t: t.passages_per_s)
    return Choice(best.backend, f"fastest within cosine {MIN_COSINE} of float32", trials, machine_key())


def cached_choice(folder: Path) -> Choice | None:
    """The choice measured on this machine with these versions, if any."""
    try:
        data = json.loads((folder / CHOICE).read_text())
        choice = Choice(data["chosen"], data["reason"], [Trial(**t) for t in data["trials"]], data["machine"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return choice if choice.machine == machine_key() and choice.chosen in set(EmbedBackend) else None


def save_choice(folder: Path, choice: Choice) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{CHOICE}.{os.getpid()}.tmp"
    partial.write_text(json.dumps(choice.to_json(), indent=1))
    os.replace(partial, folder / CHOICE)
