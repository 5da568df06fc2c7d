"""The OCR engines: RapidOCR's pre- and post-processing, with its models run on OpenVINO.

RapidOCR (`rapidocr-onnxruntime`) carries the PP-OCRv4 models and everything around them (image
preparation, line boxes, the characters' positions), and runs the models on ONNX Runtime. The
engines keep RapidOCR and replace only its two inference sessions: OpenVINO runs the same ONNX
files much faster on this app's CPUs. Measured with `python -m rag bench-ocr` on 2 cores (dense
150-dpi manual pages; hit@5 of the Debian questions on 101 scanned pages):

| models on | pages/s | CER | WER | hit@5 on scans |
|---|---:|---:|---:|---:|
| ONNX Runtime, two engines of one thread | 0.30 | 0.97% | 7.50% | 0.95 |
| OpenVINO, float32, four streams | 0.60 | 0.97% | 7.50% | 0.95 |
| OpenVINO, recogniser at the CPU's default (bfloat16 with AMX), four streams | 0.86 | 0.97% | 7.48% | 0.95 |
| the same, two streams (the default on 2 cores: one per core) | 0.83 | 0.97% | 7.48% | 0.95 |
| OpenVINO, both in bfloat16, four streams | 1.06 | 0.97% | 7.43% | 0.84 |

Float32 reads exactly what ONNX Runtime reads. The detector stays in float32: in bfloat16 its
line boxes moved enough to lose two questions' passages. Two compiled models do not run at once
(two engines of one thread: 0.39 pages/s), so each model is compiled once per pool with one
stream per page read at once. More streams than cores gained nothing that a rerun could tell
from noise and held more memory (reading 12 pages with four: peak 2.8 GB, with two: 2.3 GB).

Lines are recognised in batches whose width is widened to a multiple of 64 pixels
(`REC_WIDTH_STEP`). OpenVINO makes and keeps a plan for each input shape it meets (~50 ms
each), and lines come in every width: unwidened, reading 120 pages took 111 s and left the
process at 5.5 GB, still growing (7.1 GB after a 300-page library); widened, 96 s and 2.6 GB,
flat. The widening moves a few readings (CER 0.97% -> 0.96%, WER 7.48% -> 7.36%); RapidOCR's
scaling of each page for the detector runs in float32 instead of float64 (the same readings).

`RAG_OCR_RUNTIME`: `auto` (OpenVINO, or ONNX Runtime with a warning where OpenVINO cannot load),
`openvino`, `onnxruntime`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rag.config import OcrRuntime
from rag.errors import ParseError

log = logging.getLogger(__name__)

DETECTION, RECOGNITION = "ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"

REC_STRIDE = 8  # the recogniser's output has a column per 8 pixels of the line (rounded up)
REC_WIDTH_STEP = 64  # line batches widened to a multiple of this many pixels (see the module's docstring)
_POOLS: dict[tuple[int, OcrRuntime], tuple[ThreadPoolExecutor, queue.Queue, str]] = {}
_POOLS_LOCK = threading.Lock()


class _OpenVinoSession:
    """Stands in for RapidOCR's ONNX Runtime session: called with a batch, returns the outputs.
    Its own inference request on a model compiled once for the pool; an engine is used by one
    thread at a time."""

    def __init__(self, session: Any, compiled: Any, width_step: int = 1) -> None:
        self._session = session  # still answers RapidOCR's other questions (the character list)
        self._request = compiled.create_infer_request()
        self._step = width_step

    def __call__(self, batch: Any) -> list[Any]:
        width = batch.shape[-1]
        padded = -(-width // self._step) * self._step
        if padded == width:
            return [self._request.infer([batch])[0]]
        import numpy as np

        batch = np.pad(batch, ((0, 0), (0, 0), (0, 0), (0, padded - width)))  # zeros, as RapidOCR pads a line
        return [self._request.infer([batch])[0][:, : -(-width // REC_STRIDE)]]  # the columns the line had

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def engine_pool(size: int, runtime: OcrRuntime) -> tuple[ThreadPoolExecutor, queue.Queue, str]:
    """`size` threads and `size` engines, made once per process: (threads, engines, the runtime
    they run on). On OpenVINO each model is compiled once with one stream per engine, so pages
    are read in parallel; on ONNX Runtime each engine has its share of the cores."""
    with _POOLS_LOCK:
        if (size, runtime) not in _POOLS:
            cores = os.cpu_count() or 1
            compiled, used = None, OcrRuntime.ONNXRUNTIME
            if runtime != OcrRuntime.ONNXRUNTIME:
                try:
                    compiled, used = _compile(size, cores), OcrRuntime.OPENVINO
                except Exception as exc:  # ImportError, or OpenVINO's RuntimeError on this CPU
                    if runtime == OcrRuntime.OPENVINO:
                        raise ParseError(f"OCR cannot run on OpenVINO ({exc}): set RAG_OCR_RUNTIME=auto or onnxruntime") from None
                    log.warning("OCR runs on ONNX Runtime: OpenVINO did not load (%s)", exc)
            engines: queue.Queue = queue.Queue()
            for _ in range(size):
                engines.put(_engine(compiled, max(1, cores // size)))
            _POOLS[(size, runtime)] = (ThreadPoolExecutor(size, thread_name_prefix="ocr"), engines, str(used))
        return _POOLS[(size, runtime)]


def _models() -> Path:
    try:
        import rapidocr_onnxruntime
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ParseError(f"OCR is not installed ({exc}): run scripts/setup.sh (requirements-nodeps.txt), "
                         "or set RAG_OCR=off") from None
    return Path(rapidocr_onnxruntime.__file__).parent / "models"


def _compile(streams: int, cores: int) -> dict[str, Any]:
    """Detection compiled by OpenVINO in float32, recognition at the CPU's default precision."""
    import openvino

    core = openvino.Core()
    config = {"NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": cores}
    return {DETECTION: core.compile_model(str(_models() / DETECTION), "CPU", {**config, "INFERENCE_PRECISION_HINT": "f32"}),
            RECOGNITION: core.compile_model(str(_models() / RECOGNITION), "CPU", config)}


def _engine(compiled: dict[str, Any] | None, threads: int) -> Any:
    _models()  # a clear error where OCR is not installed
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(use_cls=False, intra_op_num_threads=threads, inter_op_num_threads=1)
    _normalise_in_float32(engine.text_det)
    if compiled is not None:
        engine.text_det.infer = _OpenVinoSession(engine.text_det.infer, compiled[DETECTION])
        engine.text_rec.session = _OpenVinoSession(engine.text_rec.session, compiled[RECOGNITION], REC_WIDTH_STEP)
    return engine


def _normalise_in_float32(detector: Any) -> None:
    """RapidOCR scales each page for the detector in float64 (its mean and std are float64
    arrays), about 8% of a page's time on 2 cores; float32 gives the model the same input to within rounding."""
    import numpy as np

    made = detector.get_preprocess

    def preprocess(max_side: int) -> Any:
        op = made(max_side)
        std = np.asarray(op.std, np.float32)
        scale, shift = np.float32(op.scale) / std, np.asarray(op.mean, np.float32) / std
        op.normalize = lambda image: image.astype(np.float32) * scale - shift
        return op

    detector.get_preprocess = preprocess
