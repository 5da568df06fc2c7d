"""The pages' own logic through `AppTest`, on a stand-in core: no model, no Milvus.

What is tested here is what the pages decide by themselves: which page the root URL opens, what a
question the core would refuse does on Chat (nothing is asked, nothing enters the history), the
notice when chat settings change, the sidebar's check of a new collection's name. `StandInRag`
implements only what the pages call; the pages get it from `pages.common.get_rag()`, as they get the
real one. The same paths on the real core are tested in test_app_chat.py, test_app_documents.py and test_app_start.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from rag.answering.events import Answer, Citation, Done, Sources
from rag.config import RETRIEVAL_MODES, Settings, validate_collection_name
from rag.conversations import ConversationInfo
from rag.errors import ConfigError, ConversationNotFound
from rag.ingestion.jobs import IngestJobs
from rag.models.llm import llm_info
from rag.options import AskOptions
from rag.retrieval.search import Modes
from rag.service import SystemInfo
from rag.storage.catalog import DocumentRecord
from tests.helpers import APP_VARIABLES, new_app, open_page, plain, texts

pytestmark = pytest.mark.quick

PASSAGE = "The Zephyr pump operates at 4 bar."


class StandInSession:
    """A chat session that answers every question with one passage, and remembers what it was asked."""

    def __init__(self, core: StandInRag, options: AskOptions) -> None:
        self.core, self.options = core, options

    def restore(self, turns) -> None:
        pass

    def stream_chat(self, message: str):
        self.core.asked.append(message)
        citation = Citation(file="manual.pdf", page=2, score=0.9, text=PASSAGE, doc_id="manual.pdf")
        yield Sources([citation])
        yield Done(Answer(message, None if self.options.retrieve_only else f"{PASSAGE} [1]", [citation]))


class StandInConversations:
    """`rag.conversations` of the stand-in: nothing saved before, answers kept in the core."""

    def __init__(self, core: StandInRag) -> None:
        self.core = core

    def list(self, collection: str | None = None) -> list[ConversationInfo]:
        return []

    def get(self, conversation_id: str):
        raise ConversationNotFound("no saved conversation with that id")

    def new(self, collection=None, *, top_k=None, retrieve_only=False, conversation_id=None) -> ConversationInfo:
        collection = collection or self.core.settings.collection
        return ConversationInfo(conversation_id, collection, top_k=top_k, retrieve_only=retrieve_only)

    def save_turn(self, info, turn, seq=None) -> int:
        seq = len(self.core.saved) if seq is None else seq
        self.core.saved[seq] = turn
        return seq


class StandInRag:
    """What the pages call on `Rag`, with documents the test chooses; nothing is stored."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.info = SystemInfo(milvus=settings.milvus_display, embed_model=settings.embed_model, llm=llm_info(settings))
        self.indexed: dict[str, list[str]] = {}  # collection -> indexed documents
        self.asked: list[str] = []  # questions that reached the core
        self.sessions: list[AskOptions] = []  # the options of each chat session the pages opened
        self.saved: dict[int, object] = {}  # the saved answers (`SavedTurn`), by number
        self.library: list[DocumentRecord] | None = None  # documents() returns these, when set

    def collections(self):
        return [SimpleNamespace(name=name) for name in sorted(self.indexed)]

    def create_collection(self, name: str):
        try:
            validate_collection_name(name)
        except ValueError as exc:  # as the core says it
            raise ConfigError(str(exc)) from None
        self.indexed.setdefault(name, [])
        return SimpleNamespace(name=name)

    def documents(self, collection: str | None = None) -> list[DocumentRecord]:
        collection = collection or self.settings.collection
        if self.library is not None:  # a library of the test's own making
            return self.library
        return [DocumentRecord(collection, d, d, chunks=1, status="indexed") for d in self.indexed.get(collection, [])]

    def retrieval_modes(self, collection: str | None = None) -> Modes:
        return Modes(RETRIEVAL_MODES)

    def chat_session(self, options: AskOptions) -> StandInSession:
        self.sessions.append(options)
        return StandInSession(self, options)

    @property
    def conversations(self) -> StandInConversations:
        return StandInConversations(self)

    def start_ingest(self, sources, collection, progress) -> Future:
        raise AssertionError("nothing is uploaded in these tests")


@pytest.fixture
def core(monkeypatch, tmp_path) -> Iterator[StandInRag]:
    """The app's settings, core and job registry replaced by the stand-in, for one test."""
    from pages import common

    for name in [k for k in os.environ if k.startswith(APP_VARIABLES)]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray `.env`
    settings = Settings(RAG_DATA_DIR=tmp_path / "data", _env_file=None)
    stand_in = StandInRag(settings)
    jobs = IngestJobs(stand_in.start_ingest)
    monkeypatch.setattr(common, "get_settings", lambda: settings)
    monkeypatch.setattr(common, "get_rag", lambda: stand_in)
    monkeypatch.setattr(common, "get_jobs", lambda: jobs)
    yield stand_in
    jobs.close()


# Routing -------------------------------------------------------------------------------------------


def test_the_root_url_opens_documents_while_nothing_is_indexed_and_chat_after(core):
    at = new_app().run()
    assert not at.exception, at.exception
    assert at.title[0].value.endswith("Documents") and any("Start here" in i.value for i in at.info)

    core.indexed["documents"] = ["manual.pdf"]
    at = new_app().run()
    assert not at.exception, at.exception
    assert at.title[0].value.endswith("Chat") and not at.chat_input[0].proto.disabled


def test_chat_on_an_empty_collection_points_to_documents(core):
    at = open_page(new_app(), "chat")
    assert not at.exception, at.exception
    assert any("no documents" in i.value and "documents" in i.value for i in at.info)
    assert at.chat_input[0].proto.disabled and "Documents" in at.get("page_link")[0].proto.label


# Questions the page refuses ------------------------------------------------------------------------


@pytest.mark.parametrize("question, said", [
    ("   \n\t ", "The question is empty: type a question. Nothing was asked."),
    ("x" * 4001, "The question is 4,001 characters long; the limit is 4,000. Nothing was asked."),
])
def test_a_question_that_cannot_be_asked_never_reaches_the_core(core, question, said):
    core.indexed["documents"] = ["manual.pdf"]
    at = open_page(new_app(), "chat")
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    assert [plain(w.value) for w in at.warning] == [said]
    assert not at.chat_message and core.asked == [] and not core.saved, "not asked, not shown, not saved"
    assert [c.value for c in at.code] == ([question] if len(question) > 4000 else []), "a long text is kept to copy"

    at.chat_input[0].set_value("  At what pressure does the pump operate?  ").run()
    assert [m.name for m in at.chat_message] == ["user", "assistant"] and not at.warning
    assert core.asked == ["  At what pressure does the pump operate?  "]
    [saved] = core.saved.values()
    assert saved.question == core.asked[0] and not saved.stopped and saved.answer == f"{PASSAGE} [1]"
    assert plain(at.chat_message[1].markdown[0].value).startswith(PASSAGE)


# Chat settings ----------------------------------------------------------------------------------------


def test_settings_changed_between_two_questions_are_one_notice_and_a_new_session(core):
    core.indexed["documents"] = ["manual.pdf"]
    at = open_page(new_app(), "chat")
    at.chat_input[0].set_value("pump pressure").run()
    sessions = len(core.sessions)
    assert not any("Settings changed" in c.value for c in at.caption)

    at.slider(key="top_k").set_value(2).run()
    at.toggle(key="retrieve_only").set_value(True).run()
    at.slider(key="top_k").set_value(1).run()
    notices = [c.value for c in at.caption if "Settings changed" in c.value]
    assert notices == [":material/info: Settings changed (top-k 1, retrieval only): the next question starts a fresh memory."]
    assert core.sessions[sessions:] == [AskOptions("documents", 2, False, "hybrid"), AskOptions("documents", 2, True, "hybrid"),
                                        AskOptions("documents", 1, True, "hybrid")], "each change starts a new memory"

    at.chat_input[0].set_value("seal replacement").run()
    assert sum("Settings changed" in c.value for c in at.caption) == 1
    assert "Retrieval only" in at.chat_message[-1].markdown[0].value


# The sidebar ----------------------------------------------------------------------------------------------


def test_a_new_collection_needs_a_valid_name_and_becomes_the_active_one(core):
    at = new_app().run()
    at.sidebar.text_input(key="new_collection_name").set_value("bad name!")
    at.sidebar.button(key="create_collection").click().run()
    assert any("invalid collection name 'bad name!'" in plain(e.value) for e in at.sidebar.error)
    assert "bad name!" not in core.indexed

    at.sidebar.text_input(key="new_collection_name").set_value("contracts")
    at.sidebar.button(key="create_collection").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="collection").value == "contracts" and "contracts" in core.indexed
    assert "contracts" in plain(texts(at)), "the Documents page names the new, empty collection"
