"""Shared fixtures: real Milvus Lite in a temporary folder, the real model, real files."""

from __future__ import annotations

import itertools
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", message=".*pkg_resources.*")

from rag.config import Settings  # noqa: E402
from rag.service import Rag  # noqa: E402
from tests import docs  # noqa: E402

_names = itertools.count()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    return Settings(RAG_DATA_DIR=data_dir, _env_file=None)


@pytest.fixture(scope="session")
def rag(settings: Settings) -> Rag:
    """One core for the session (as the app has one per process); tests use their own collections."""
    instance = Rag(settings)
    yield instance
    instance.close()


@pytest.fixture(scope="session")
def llm_rag(data_dir: Path) -> Rag:
    """The same data answered by the local LLM (SmolLM2 via llama.cpp) instead of quotes."""
    instance = Rag(Settings(RAG_DATA_DIR=data_dir, RAG_LLM="local", _env_file=None))
    yield instance
    instance.close()


@pytest.fixture
def collection() -> str:
    """A fresh collection name per test, so tests never see each other's documents."""
    return f"t{next(_names)}"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """One real file of every supported kind, with known facts in known places."""
    return docs.make_corpus(tmp_path_factory.mktemp("corpus"))
