"""The Streamlit app through `AppTest`, against the real core on a temporary Milvus Lite.

The app keeps one `Rag` and one job registry per process (`st.cache_resource`); each module-
scoped data folder clears that cache, so the app under test starts the way a fresh server would.
Upload, library, delete, re-index and chat all go through the pages' own widgets.
"""

from __future__ import annotations

import html
import threading
from concurrent.futures import Future

import pytest

from rag.config import Settings
from rag.errors import ConfigError, RagError
from rag.ingestion.jobs import IngestJobs
from rag.ingestion.sources import FileResult, IngestProgress, IngestReport, Source
from rag.ingestion.uploads import MAX_NAME_BYTES, find_upload, safe_file_name, save_upload, stored_path
from rag.options import AskOptions
from tests.docs import FACTS, make_bad_files
from tests.helpers import PUMP, app_environment, button, free_port, library_frame, new_app, open_page, plain, texts, until, upload

# Uploads: safe names, never outside the data folder ------------------------------------------


@pytest.mark.quick
@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("manual.pdf", "manual.pdf"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\notes.md", "notes.md"),
        ("/abs/path/report.docx", "report.docx"),
        ("bad\x00na\x1bme\u202e.txt", "badname.txt"),
        ("..", "upload"),
        ("...pdf", "upload.pdf"),
        (".hidden.md", "hidden.md"),
        ("a<b>c:d|e?.csv", "a_b_c_d_e_.csv"),
        ("  spaced   out  .txt", "spaced out.txt"),
    ],
)
def test_upload_names_are_made_safe(raw, safe):
    assert safe_file_name(raw) == safe


@pytest.mark.quick
def test_long_names_are_capped_keeping_the_extension():
    name = safe_file_name("é" * 300 + ".pdf")
    assert name.endswith(".pdf") and len(name.encode()) <= MAX_NAME_BYTES
    assert name[:-4] == "é" * ((MAX_NAME_BYTES - 4) // 2)  # cut between characters, not inside one


@pytest.mark.quick
def test_uploads_stay_in_the_collection_folder(tmp_path):
    settings = Settings(RAG_DATA_DIR=tmp_path, _env_file=None)
    path = save_upload(settings, "docs", "../../../evil.txt", b"hello")
    assert path == (tmp_path / "uploads" / "docs" / "evil.txt").resolve() and path.read_bytes() == b"hello"
    assert find_upload(settings, "docs", "evil.txt") == path
    assert find_upload(settings, "docs", "../../milvus.db") is None
    with pytest.raises(RagError, match="not a valid document name"):
        stored_path(settings, "docs", "../outside.txt")
    with pytest.raises(ConfigError, match="invalid collection name"):
        save_upload(settings, "../x", "a.txt", b"x")
    assert [p.name for p in (tmp_path / "uploads" / "docs").iterdir()] == ["evil.txt"]  # no temp file left


# The job registry, with a stand-in for `Rag.start_ingest` ---------------------------------------


class FakeIngest:
    """Starts 'ingestions' that finish when the test says so, reporting progress like the core."""

    def __init__(self) -> None:
        self.started: list[tuple[list[Source], str]] = []
        self.release: list[threading.Event] = []
        self.futures: list[Future] = []

    def __call__(self, sources, collection, progress):
        future: Future = Future()
        gate = threading.Event()
        self.started.append((list(sources), collection))
        self.release.append(gate)
        self.futures.append(future)

        def run():
            state = IngestProgress(files_total=len(sources))
            state.current = sources[0].name
            progress(state)
            gate.wait(10)
            if future.cancelled():
                return
            results = [FileResult(s.doc_id, "failed", 2, error="bad file") if "bad" in s.doc_id else FileResult(s.doc_id, "indexed", 2)
                       for s in sources]
            state.results.extend(results)
            state.files_done = len(results)
            progress(state)
            future.set_result(IngestReport(collection, results, 0.1))

        threading.Thread(target=run, daemon=True).start()
        return future



@pytest.mark.quick
def test_jobs_run_one_at_a_time_with_live_snapshots(tmp_path):
    fake = FakeIngest()
    jobs = IngestJobs(fake)
    try:
        first = jobs.submit([Source(tmp_path / "a.pdf", "a.pdf"), Source(tmp_path / "bad.txt", "bad.txt")], "c1")
        second = jobs.submit([Source(tmp_path / "b.md", "b.md")], "c2")
        until(lambda: jobs.get(first).files[0].status == "indexing")  # the first progress report
        view = jobs.get(first)
        assert view.state == "running"
        assert [f.status for f in view.files] == ["indexing", "waiting"] and view.label == "a.pdf and 1 more"
        assert jobs.get(second).state == "queued" and len(fake.started) == 1, "jobs are serialised"
        assert jobs.busy("c1") == {"a.pdf", "bad.txt"} and jobs.busy("c2") == {"b.md"}
        fake.release[0].set()
        done = jobs.wait(first, 10)
        assert done.state == "done" and done.summary() == "1 indexed, 1 failed"
        assert done.files[1].error == "bad file" and not done.active
        until(lambda: len(fake.started) == 2)
        assert [v.collection for v in jobs.active()] == ["c2"] and jobs.busy("c1") == set()
        fake.release[1].set()
        assert jobs.wait(second, 10).summary() == "1 indexed"
        jobs.dismiss(first)
        assert [v.id for v in jobs.jobs()] == [second]
    finally:
        for gate in fake.release:
            gate.set()
        jobs.close()


@pytest.mark.quick
def test_jobs_can_be_cancelled_and_failures_are_reported(tmp_path):
    fake = FakeIngest()
    jobs = IngestJobs(fake)
    try:
        running = jobs.submit([Source(tmp_path / "a.pdf", "a.pdf")], "c")
        queued = jobs.submit([Source(tmp_path / "b.pdf", "b.pdf")], "c")
        until(lambda: fake.started)
        assert jobs.cancel(queued) and jobs.get(queued).state == "cancelled"
        assert jobs.cancel(running)
        view = jobs.wait(running, 10)
        assert view.state == "cancelled" and [f.status for f in view.files] == ["skipped"]
        assert len(fake.started) == 1, "a cancelled queued job never starts"

        def refuse(sources, collection, progress):
            raise RagError("collection 'c' was built with another embedding model")

        failing = IngestJobs(refuse)
        job = failing.submit([Source(tmp_path / "a.pdf", "a.pdf")], "c")
        view = failing.wait(job, 10)
        assert view.state == "failed" and "another embedding model" in view.error
        failing.close()
        with pytest.raises(RagError, match="no files"):
            jobs.submit([], "c")
    finally:
        for gate in fake.release:
            gate.set()
        jobs.close()


# The app ---------------------------------------------------------------------------------------------

# Each test below makes what it relies on: the indexed documents (`app_indexed`), or a collection
# of its own for what it uploads and counts. The app's start-up is in test_app_start.py.


def test_upload_indexes_in_the_background_and_fills_the_library(app_rag, corpus, tmp_path):
    bad = make_bad_files(tmp_path)
    at = new_app(collection="first_upload").run()  # an empty collection: the root URL opens Documents
    upload(at, {"manual.pdf": corpus["manual.pdf"].read_bytes(), "report.docx": corpus["report.docx"].read_bytes(),
                "encrypted.pdf": bad["encrypted.pdf"].read_bytes()})
    assert not at.exception
    page = texts(at)
    assert "2 indexed, 1 failed" in page
    assert "password" in page, "the failed file's reason is shown"
    frame = library_frame(at)
    rows = {r["File"]: r for r in frame.to_dict("records")}
    assert set(rows) == {"manual.pdf", "report.docx", "encrypted.pdf"}
    assert rows["manual.pdf"]["Status"] == "indexed" and rows["manual.pdf"]["Pages"] == "3" and rows["manual.pdf"]["Type"] == "PDF"
    assert rows["manual.pdf"]["Chunks"] >= 1 and rows["manual.pdf"]["Size"] == corpus["manual.pdf"].stat().st_size
    assert rows["encrypted.pdf"]["Status"] == "failed" and "password" in rows["encrypted.pdf"]["Note"]
    assert {m.label: m.value for m in at.metric}["Documents"] == "2"
    assert find_upload(app_rag.settings, "first_upload", "manual.pdf") is not None, "uploads are kept for re-indexing"

    # The same file again is recognised, not duplicated.
    chunks = app_rag.count_chunks("first_upload", "manual.pdf")
    upload(at, {"manual.pdf": corpus["manual.pdf"].read_bytes()})
    assert "manual.pdf: 1 already in the collection" in plain(texts(at))
    assert app_rag.count_chunks("first_upload", "manual.pdf") == chunks


def test_a_large_upload_lists_its_files_in_a_table(app_rag):
    at = open_page(new_app(collection="memos"), "documents")  # its own collection: only its own job is listed
    upload(at, {f"memo{i:02d}.txt": f"Memo {i}: the meeting room {i} has {i + 3} chairs.".encode() for i in range(14)})
    assert "14 indexed" in plain(texts(at))
    job_files = at.dataframe[0].value
    assert list(job_files["File"]) == [f"memo{i:02d}.txt" for i in range(14)] and set(job_files["Status"]) == {"indexed"}


def test_chat_retrieval_only_cites_file_and_page(app_indexed):
    at = open_page(new_app(), "chat")
    at.toggle(key="retrieve_only").set_value(True).run()
    at.chat_input[0].set_value(PUMP).run()
    assert not at.exception and not at.error
    answer = at.chat_message[-1]
    assert answer.name == "assistant"
    first = answer.expander[0]
    assert plain(first.label).startswith("[1] manual.pdf · page 2")
    [passage] = first.get("html")
    assert f"<mark>{FACTS['manual.pdf']}</mark>" in passage.proto.body, "the answering sentence is marked"
    assert "Retrieval only" in answer.markdown[0].value

    # Several settings changed between two questions: one line says so.
    at.toggle(key="retrieve_only").set_value(False).run()
    at.slider(key="top_k").set_value(2).run()
    at.toggle(key="retrieve_only").set_value(True).run()
    at.slider(key="top_k").set_value(1).run()
    assert sum("Settings changed" in c.value for c in at.caption) == 1
    at.chat_input[0].set_value("Aurora project budget").run()
    assert len(at.chat_message[-1].expander) == 1
    assert sum("Settings changed" in c.value for c in at.caption) == 1


def test_chat_quotes_the_documents_and_keeps_history(app_indexed):
    at = open_page(new_app(), "chat")
    at.chat_input[0].set_value(PUMP).run()
    assert not at.exception and not at.error and not at.warning
    answer = at.chat_message[-1]
    assert plain(answer.markdown[0].value).startswith(FACTS["manual.pdf"] + " [1]"), "a quote with its source number"
    assert plain(answer.expander[0].label).startswith("[1] manual.pdf · page 2")

    at.chat_input[0].set_value("And how often must its seals be replaced?").run()
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]
    follow_up = at.chat_message[-1]
    assert any(plain(e.label)[4:].startswith("manual.pdf · page 3") for e in follow_up.expander), "the seals' page is cited"
    assert any("also searched for" in c.value and "Zephyr pump" in plain(c.value) for c in follow_up.caption)
    conversation = at.session_state["chats"]["documents"]
    assert [role for role, _ in conversation.session.history] == ["user", "assistant", "user", "assistant"]

    button(at, "New chat").click().run()
    assert len(at.chat_message) == 0 and at.session_state["chats"]["documents"].session.history == []
    assert any(PUMP in str(link.proto) for link in at.get("page_link")), "the old one stays listed"


@pytest.mark.parametrize("question, said", [
    ("   \n\t ", "The question is empty: type a question. Nothing was asked."),
    ("x" * 4001, "The question is 4,001 characters long; the limit is 4,000. Nothing was asked."),
])
def test_questions_the_core_refuses_stay_out_of_the_history(app_indexed, question, said):
    at = open_page(new_app(), "chat")
    at.toggle(key="retrieve_only").set_value(True).run()
    at.chat_input[0].set_value(question).run()
    assert not at.exception and not at.chat_message, "no bubble for a question that was not asked"
    assert [plain(w.value) for w in at.warning] == [said]
    assert at.chat_input[0].proto.max_chars == 0, "the browser takes any paste; the page says what the limit is"
    assert "up to 4,000 characters" in at.chat_input[0].proto.placeholder
    if len(question) > 4000:
        assert at.code[0].value == question, "a long text is kept, to shorten and send again"
    at.chat_input[0].set_value("Aurora project budget").run()
    assert [m.name for m in at.chat_message] == ["user", "assistant"] and not at.warning


def test_questions_are_shown_as_typed(app_indexed):
    at = open_page(new_app(), "chat")
    at.toggle(key="retrieve_only").set_value(True).run()
    typed = "What is **the** `budget`?\n[link](javascript:alert(1)) <b>x</b> & $5"
    at.chat_input[0].set_value(typed).run()
    [shown] = at.chat_message[0].get("html")
    assert shown.proto.body == f'<div class="typed-text" style="white-space: pre-wrap">{html.escape(typed)}</div>'
    assert not at.chat_message[0].markdown, "never parsed as markdown"


def test_a_source_opens_in_its_document(app_rag, app_indexed):
    """The cited PDF page drawn with the passage marked, its neighbours, the original to download;
    a Word passage in its surrounding lines; a damaged original says so and the answer stays."""
    at = open_page(new_app(), "chat")
    at.chat_input[0].set_value(PUMP).run()
    turn = at.session_state["chats"]["documents"].turns[-1]
    at.toggle(key=f"{turn.id}-view-0").set_value(True).run()
    assert not at.exception and not at.warning
    [image] = at.get("image")
    assert image.proto.imgs[0].caption == "Page 2 of 3 · the passage is marked"
    assert "Download the original" in [b.proto.label for b in at.get("download_button")]
    at.number_input(key=f"{turn.id}-view-0-page").set_value(3).run()
    assert at.get("image")[0].proto.imgs[0].caption == "Page 3 of 3", "the next page, unmarked"

    at.chat_input[0].set_value("Aurora project budget").run()
    turn = at.session_state["chats"]["documents"].turns[-1]
    assert turn.citations[0].file == "report.docx"
    at.toggle(key=f"{turn.id}-view-0").set_value(True).run()
    lines = [h.proto.body for h in at.get("html") if "source-lines" in h.proto.body]
    assert lines and html.escape(FACTS["report.docx"]) in lines[0] and "#fff3bf" in lines[0]

    upload_copy = find_upload(app_rag.settings, "documents", "report.docx")
    saved = upload_copy.read_bytes()
    upload_copy.write_bytes(b"not a docx any more")
    try:
        at.run()
        assert not at.exception
        assert any("cannot be read any more" in plain(w.value) for w in at.warning)
        assert plain(at.chat_message[-1].markdown[0].value).startswith(FACTS["report.docx"]), "the answer stays"
    finally:
        upload_copy.write_bytes(saved)


def test_a_question_the_documents_do_not_answer_is_declined_on_the_page(app_indexed):
    at = open_page(new_app(), "chat")
    at.chat_input[0].set_value("What is the population of Tokyo?").run()
    answer = at.chat_message[-1]
    assert [plain(i.value) for i in answer.info][0].startswith("Not in your documents")
    assert any("Closest passages" in c.value for c in answer.caption)
    assert not answer.markdown, "nothing is written as an answer"


def test_document_text_is_shown_as_text(app_rag, tmp_path):
    markup = "# Heading\n\n**Gravel** policy: <b>bold</b> <script>alert(1)</script> [link](http://example.com) $5 and $6"
    at = open_page(new_app(), "documents")
    upload(at, {"markup.md": markup.encode()})
    at = open_page(at, "chat")
    at.toggle(key="retrieve_only").set_value(True).run()
    at.chat_input[0].set_value("gravel policy").run()
    passage = at.chat_message[-1].expander[0]
    assert plain(passage.label).startswith("[1] markup.md")
    [shown] = passage.get("html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.proto.body and "**Gravel**" in shown.proto.body
    assert "<script>" not in shown.proto.body and not passage.markdown, "document text is escaped, never markdown"


@pytest.mark.quick
def test_answer_markup_is_escaped():
    from pages.formatting import escape_markdown, safe_markdown

    shown = safe_markdown("Costs $5 <img src=x onerror=alert(1)> ![t](http://x/y.png)")
    assert "<img" not in shown and "&lt;img" in shown and r"\$5" in shown and r"!\[t]" in shown
    assert escape_markdown("*a*_b_[c](d).md") == r"\*a\*\_b\_\[c\]\(d\)\.md"


def test_reindex_and_delete_from_the_library(app_rag, app_indexed):
    at = open_page(new_app(), "documents")
    at.multiselect(key="selected_docs").set_value(["report.docx"]).run()
    button(at, "Re-index").click().run()
    assert not at.exception
    assert any("Re-indexing 1 document" in m.value for m in at.success)
    from pages import common

    for job in common.get_jobs().active("documents"):
        common.get_jobs().wait(job.id, 120)
    at.run()
    assert "re-index report.docx: 1 indexed" in plain(texts(at)), "indexed again, not skipped as unchanged"
    assert {d.doc_id: d.status for d in app_rag.documents("documents")}["report.docx"] == "indexed"

    at.multiselect(key="selected_docs").set_value(["manual.pdf"]).run()
    at.button(key="confirm_delete").click().run()
    assert not at.exception
    files = set(library_frame(at)["File"])
    assert "manual.pdf" not in files and "report.docx" in files
    assert any("Deleted" in s.value for s in at.success)
    assert find_upload(app_rag.settings, "documents", "manual.pdf") is None
    answer = app_rag.ask(PUMP, AskOptions("documents", retrieve_only=True))
    assert all(s.file != "manual.pdf" for s in answer.sources)


def test_collections_are_created_and_switched_from_the_sidebar(app_rag):
    at = new_app().run()
    at.sidebar.text_input(key="new_collection_name").set_value("bad name!")
    at.sidebar.button(key="create_collection").click().run()
    assert any("invalid collection name 'bad name!'" in plain(e.value) for e in at.sidebar.error)
    at.sidebar.text_input(key="new_collection_name").set_value("contracts")
    at.sidebar.button(key="create_collection").click().run()
    assert not at.exception
    assert at.selectbox(key="collection").value == "contracts"
    assert "contracts" in at.selectbox(key="collection").options
    at = open_page(at, "chat")
    assert any("no documents" in i.value and "contracts" in i.value for i in at.info)
    at = open_page(at, "documents")
    assert "contracts" in at.caption[0].value and not at.dataframe



# Awkward uploads ---------------------------------------------------------------------------------


def passages(rag, question: str, top_k: int):
    return rag.ask(question, AskOptions("documents", top_k=top_k, retrieve_only=True)).sources


def test_every_awkward_upload_gets_its_own_outcome_and_nothing_leaves_the_data_folder(app_rag, tmp_path):
    from streamlit import config

    bad = make_bad_files(tmp_path)
    long_name = "q" * 296 + ".txt"
    files = {
        "../../escape.md": b"The escape hatch key is kept in drawer 7.",
        "ctrl\x07\x1b[31m.txt": b"Control characters: the bell rings at noon.",
        long_name: b"A very long file name about the lighthouse keeper.",
        "latin1.txt": "Le caf\xe9 du ch\xe2teau ouvre \xe0 7 heures.".encode("latin-1"),
        "binary.txt": bad["binary.txt"].read_bytes(),
        "empty.txt": b"",
        "scanned.pdf": bad["scanned.pdf"].read_bytes(),
        "corrupt.pdf": bad["corrupt.pdf"].read_bytes(),
        "big.txt": b"x" * (2 * 2**20),
    }
    at = open_page(new_app(), "documents")  # a fresh session: in the default collection, though "contracts" exists
    limit = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)  # MB: the same check, without a 200 MB file
    try:
        said = upload(at, files)
    finally:
        config.set_option("server.maxUploadSize", limit)
    assert not at.exception
    assert "**big.txt** is 2.0 MB, over the 1 MB limit: not uploaded." in said
    rows = {r["File"]: r for r in library_frame(at).to_dict("records")}
    short = safe_file_name(long_name)
    assert len(short.encode()) <= MAX_NAME_BYTES and short.endswith(".txt")
    indexed = {"escape.md", "ctrl[31m.txt", short, "latin1.txt"}
    failed = {"binary.txt", "empty.txt", "scanned.pdf", "corrupt.pdf"}
    assert {n for n, r in rows.items() if r["Status"] == "indexed"} >= indexed
    assert {n for n, r in rows.items() if r["Status"] == "failed"} >= failed and "big.txt" not in rows
    for name in failed:
        assert rows[name]["Note"] and rows[name]["Chunks"] == 0 and app_rag.count_chunks("documents", name) == 0
    for name in indexed:
        assert app_rag.count_chunks("documents", name) == rows[name]["Chunks"] >= 1, "all or nothing"
    [hit] = passages(app_rag, "When does the café of the château open?", 1)
    assert hit.file == "latin1.txt" and "café du château" in hit.text, "legacy encodings are decoded"

    data = app_rag.settings.data_dir.resolve()
    saved = {p for p in data.rglob("*") if p.is_file()}
    assert all(p.is_relative_to(data / "uploads") or p.is_relative_to(data / "milvus.db") or p.parent == data
               for p in saved), "uploads stay in their collections' folders"
    assert (data / "uploads" / "documents" / "escape.md").is_file()
    assert not any((folder / "escape.md").exists() for folder in (data, data.parent, data.parent.parent))


def test_two_different_files_with_one_name(app_rag):
    at = open_page(new_app(), "documents")
    said = upload(at, {"notes.txt": b"First notes: the boiler is serviced in May.",
                       "sub/notes.txt": b"Second notes: the boiler is serviced in October."})
    assert "**notes.txt** was chosen twice: indexing the last one." in said
    [hit] = passages(app_rag, "When is the boiler serviced?", 1)
    assert hit.file == "notes.txt" and "October" in hit.text
    chunks = app_rag.count_chunks("documents", "notes.txt")

    upload(at, {"notes.txt": b"Third notes: the boiler is now serviced in March."})  # a later, different file
    assert "notes.txt: 1 updated" in plain(texts(at))
    hits = passages(app_rag, "When is the boiler serviced?", 5)
    texts_found = " ".join(h.text for h in hits if h.file == "notes.txt")
    assert "March" in texts_found and "October" not in texts_found, "the old version is gone, not duplicated"
    assert app_rag.count_chunks("documents", "notes.txt") == chunks == 1


def test_without_a_password_set_the_app_is_open(app_rag):
    at = new_app().run()
    assert all(t.label != "Password" for t in at.text_input) and at.title[0].value.endswith(("Documents", "Chat"))
    assert at.selectbox(key="collection").value == "documents", "the sidebar is there"
    assert not any(b.label == "Sign out" for b in at.sidebar.button)


# An LLM that cannot be reached ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_llm_rag(tmp_path_factory, corpus, app_rag):
    # Depends on app_rag so its module-wide environment is torn down after this one.
    env = {"RAG_LLM": "openai", "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1", "RAG_LLM_TIMEOUT": "5"}
    for rag in app_environment(tmp_path_factory, **env):
        rag.ingest([corpus["manual.pdf"]], "documents")
        yield rag


def test_an_unreachable_llm_is_a_readable_warning_with_the_passages(broken_llm_rag):
    at = open_page(new_app(), "chat")
    assert any("(OpenAI-compatible)" in plain(c.value) for c in at.caption)
    at.chat_input[0].set_value(PUMP).run()
    assert not at.exception and not at.error
    answer = at.chat_message[-1]
    assert any("cannot reach the LLM server" in plain(w.value) for w in answer.warning)
    assert plain(answer.expander[0].label).startswith("[1] manual.pdf · page 2"), "passages are still shown"


# The optional password ---------------------------------------------------------------------------

SECRET = "correct horse battery staple"
TOKEN = "root:tok-3d8e1a"
KEY = "sk-key-6c2b9f"


@pytest.fixture(scope="module")
def locked_app(tmp_path_factory):
    yield from app_environment(tmp_path_factory, RAG_APP_PASSWORD=SECRET, MILVUS_TOKEN=TOKEN, OPENAI_API_KEY=KEY,
                                OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")


def test_with_a_password_nothing_is_shown_before_it_is_given(locked_app):
    at = new_app().run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Password"]
    assert not at.sidebar.children, "no collection, Milvus or model details before signing in"
    assert "Knowledge base" not in texts(at) and not at.file_uploader and not at.chat_input
    at.switch_page("pages/documents.py").run()  # a page's URL does not get round the form
    assert [t.label for t in at.text_input] == ["Password"] and not at.file_uploader and not at.sidebar.children


def test_a_wrong_password_is_refused_and_the_right_one_opens_the_app(locked_app):
    at = new_app().run()
    at.text_input[0].input("guess")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."]
    assert not at.sidebar.children and not at.file_uploader
    at.text_input[0].input(SECRET)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert at.title[0].value.endswith("Documents") and at.file_uploader, "signed in: the app itself"
    for page in ("documents", "benchmark", "chat"):
        shown = texts(open_page(at, page)) + "\n".join(m.value for m in at.sidebar.markdown)
        assert "OpenAI-compatible" in plain(shown) and not at.exception
        assert SECRET not in shown and TOKEN not in shown and KEY not in shown and "tok-3d8e1a" not in shown
    [sign_out] = [b for b in at.sidebar.button if b.label == "Sign out"]
    sign_out.click().run()
    assert [t.label for t in at.text_input] == ["Password"] and not at.file_uploader


def test_each_session_signs_in_on_its_own(locked_app):
    first = new_app().run()
    first.text_input[0].input(SECRET)
    first.button[0].click().run()
    assert first.file_uploader
    second = new_app().run()
    assert [t.label for t in second.text_input] == ["Password"] and not second.file_uploader

