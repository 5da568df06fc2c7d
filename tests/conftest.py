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
from rag.ingestion.sources import Source  # noqa: E402
from rag.ingestion.uploads import save_upload  # noqa: E402
from rag.service import Rag  # noqa: E402
from tests import docs  # noqa: E402
from tests.helpers import app_environment  # noqa: E402

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


# The Streamlit app (AppTest) on the real core -------------------------------------------------------


@pytest.fixture(scope="module")
def app_rag(tmp_path_factory):
    """The app's own core on a fresh data folder, for one module (see `helpers.app_environment`)."""
    yield from app_environment(tmp_path_factory)


@pytest.fixture
def app_indexed(app_rag, corpus) -> str:
    """manual.pdf and report.docx in the app's default collection, as uploads (a no-op when they are)."""
    sources = [Source(save_upload(app_rag.settings, "documents", n, corpus[n].read_bytes()), n) for n in ("manual.pdf", "report.docx")]
    app_rag.ingest(sources, "documents")
    return "documents"


# Test tiers ---------------------------------------------------------------------------------------

# Fixtures that start a part the middle tier leaves out, and the marker that says so.
TIER_FIXTURES = {"milvus_server": "server", "llm_rag": "llm", "llm_server": "llm"}


def pytest_collection_modifyitems(config, items):
    """Mark every test that uses a server or the LLM through a fixture, so that
    `-m "not browser and not server and not llm"` (the middle tier) leaves it out."""
    for item in items:
        for fixture, marker in TIER_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


# The quick loop (`pytest -m quick`) ---------------------------------------------------------------

HEAVY = ("torch", "sentence_transformers", "transformers", "llama_cpp", "milvus_lite")


def pytest_sessionfinish(session, exitstatus):
    """A quick run that loaded a model or started Milvus Lite fails: some test marked `quick` is not."""
    if session.config.getoption("markexpr", "") != "quick":
        return
    loaded = [name for name in HEAVY if name in sys.modules]
    if loaded:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"the quick subset imported {', '.join(loaded)}: a test marked quick is not", red=True)
