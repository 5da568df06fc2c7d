"""RAG_EMBED_BACKEND: the local model on ONNX Runtime, and `auto`'s choice, measured for real.

One ONNX export of the packaged model (20-40 s on 2 cores) is made into a temporary cache and
shared by the module; the CLI runs as a subprocess with the settings as a user sets them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import ConfigError
from rag.models import backends
from rag.models.embeddings import load_backend, load_embed_model, resolve_model_folder
from rag.models.onnx_embedding import FLOAT32, OnnxEmbedding
from tests.helpers import ROOT, clean_environ

MODEL = "all-MiniLM-L6-v2"


def settings(cache, **env) -> Settings:
    return Settings(_env_file=None, RAG_CACHE_DIR=cache, **env)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache folder holding the ONNX export of the packaged model (exported here, once)."""
    folder = tmp_path_factory.mktemp("rag-cache")
    load_backend(settings(folder), "onnx")
    return folder


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rag", *args], cwd=ROOT, env=clean_environ(**env),
                          capture_output=True, text=True, timeout=600)


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_export_gives_float32_vectors_and_token_counts(cache):
    """A faithful export: every sample passage (a line to past the input limit) at cosine >= 0.999."""
    onnx = load_backend(settings(cache), "onnx")
    torch32 = load_embed_model(MODEL, precision="float32")
    assert isinstance(onnx, OnnxEmbedding) and onnx.precision == "float32"
    passages = backends.sample_passages()
    assert len({len(p) for p in passages}) >= 4 and max(len(p) for p in passages) >= 2000
    assert cosines(onnx.get_text_embedding_batch(passages), torch32.get_text_embedding_batch(passages)).min() > 0.999
    question = "How do I remove a directory tree?"
    assert cosines([onnx.get_query_embedding(question)], [torch32.get_query_embedding(question)])[0] > 0.999
    assert (onnx.dimension(), onnx.chunk_tokens) == (torch32.dimension(), torch32.chunk_tokens) == (384, 256)
    assert all(onnx.count_tokens(p) == torch32.count_tokens(p) for p in passages[:8])


def test_auto_measures_every_backend_and_refuses_one_that_drifts(cache):
    """`embed-backends` as a user runs it: each backend measured against float32 on real passages;
    int8 weights move this model's vectors too far (cosine ~0.97), so auto never picks them here."""
    result = cli("embed-backends", "--json", RAG_CACHE_DIR=str(cache))
    assert result.returncode == 0, result.stderr
    choice = json.loads(result.stdout)
    trials = {t["backend"]: t for t in choice["trials"]}
    assert set(trials) == {"torch", "onnx", "onnx-int8", "openvino"}
    assert trials["onnx"]["passed"] and trials["onnx"]["min_cosine"] > 0.999
    assert trials["openvino"]["passed"] and trials["openvino"]["min_cosine"] > 0.995, "bfloat16 here, float32 elsewhere"
    int8 = trials["onnx-int8"]
    assert int8["precision"] == "int8" and int8["min_cosine"] < backends.MIN_COSINE and not int8["passed"]
    assert "drift" in int8["note"]
    passing = [t for t in choice["trials"] if t["passed"]]
    assert choice["chosen"] == max(passing, key=lambda t: t["passages_per_s"])["backend"]
    assert all(t["passages_per_s"] > 0 for t in choice["trials"])

    info = cli("info", RAG_CACHE_DIR=str(cache))
    assert f"backend: auto: {choice['chosen']}" in info.stdout, info.stdout
    unmeasured = cli("info", RAG_CACHE_DIR=str(cache / "elsewhere"))
    assert "backend: auto: not measured on this machine yet" in unmeasured.stdout


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_cli_ingests_and_answers_on_onnx(cache, corpus, tmp_path, backend):
    env = {"RAG_CACHE_DIR": str(cache), "RAG_EMBED_BACKEND": backend, "RAG_DATA_DIR": str(tmp_path)}
    assert f"backend: {backend} (RAG_EMBED_BACKEND)" in cli("info", **env).stdout
    result = cli("ingest", str(corpus["report.docx"]), str(corpus["notes.md"]), **env)
    assert result.returncode == 0, result.stderr
    result = cli("ask", "What is the Aurora project budget?", "--json", "--top-k", "2", **env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["found"] and answer["sources"][0]["file"] == "report.docx"
    assert "3.5 million euros" in answer["answer"]
    # The same collection searched on torch: the backends' vectors are interchangeable.
    result = cli("ask", "What is the Aurora project budget?", "--json", "--top-k", "2",
                 **{**env, "RAG_EMBED_BACKEND": "torch"})
    assert json.loads(result.stdout)["sources"][0]["file"] == "report.docx"


def test_a_damaged_export_is_made_again(cache, tmp_path):
    """A model.onnx cut short (a crash while writing, a full disk) is exported again, not loaded."""
    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)
    folder = backends.export_folder(tmp_path, str(resolve_model_folder(MODEL, True)))
    data = (folder / FLOAT32).read_bytes()
    (folder / FLOAT32).write_bytes(data[: len(data) // 3])
    model = load_backend(settings(tmp_path), "onnx")
    assert (folder / FLOAT32).stat().st_size == len(data)
    vector = model.get_text_embedding("the pump operates at 4 bar")
    reference = load_embed_model(MODEL, precision="float32").get_text_embedding("the pump operates at 4 bar")
    assert cosines([vector], [reference])[0] > 0.999


def test_unsupported_model_or_value_is_a_clear_error(cache, tmp_path, corpus):
    """A model with layers the export does not cover is refused by name, with the setting that
    works; a backend name that does not exist is refused before anything loads."""
    model = tmp_path / "with-dense"
    shutil.copytree(resolve_model_folder(MODEL, True), model)
    modules = json.loads((model / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (model / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="are not Transformer, Pooling.*set RAG_EMBED_BACKEND=torch"):
        load_backend(settings(cache, RAG_EMBED_MODEL=str(model)), "onnx")

    result = cli("ingest", str(corpus["notes.md"]), RAG_CACHE_DIR=str(cache), RAG_EMBED_BACKEND="fastest",
                 RAG_DATA_DIR=str(tmp_path / "data"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: invalid setting RAG_EMBED_BACKEND") and "onnx-int8" in lines[0]


def test_an_unwritable_cache_falls_back_to_torch_and_loses_nothing(corpus, tmp_path):
    """RAG_CACHE_DIR that cannot be written (here: a file): auto measures, cannot export or save,
    keeps torch and indexes; RAG_EMBED_BACKEND=onnx says in one line why it cannot run."""
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("")
    env = {"RAG_CACHE_DIR": str(blocked), "RAG_DATA_DIR": str(tmp_path / "data")}
    result = cli("embed-backends", "--json", **env)
    assert result.returncode == 0, result.stderr
    choice = json.loads(result.stdout)
    trials = {t["backend"]: t for t in choice["trials"]}
    assert choice["chosen"] == "torch" and trials["torch"]["passed"]
    assert not trials["onnx"]["passed"] and "the export to" in trials["onnx"]["note"], trials["onnx"]
    assert "cannot save the embedding backend's measurement" in result.stderr

    result = cli("ingest", str(corpus["notes.md"]), **env)
    assert result.returncode == 0 and "indexed   notes.md" in result.stdout, result.stdout + result.stderr

    result = cli("ingest", str(corpus["report.docx"]), **{**env, "RAG_EMBED_BACKEND": "onnx"})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: RAG_EMBED_BACKEND=onnx: the export to") and "set RAG_EMBED_BACKEND=torch" in lines[0]
