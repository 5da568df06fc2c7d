"""The app in a real Chromium: `streamlit run app.py` on a fresh data folder, driven by Playwright.

One journey, as a user would take it: upload a PDF and a DOCX, watch them being indexed, ask
about the Zephyr pump on Chat and get an answer citing manual.pdf page 2, ask a follow-up,
delete manual.pdf and see it gone from the library and from answers. Screenshots of each page
are saved to docs/screenshots/.

Then two users at once, in two browser sessions: one uploads a batch of 30 files while the other
chats; both keep working, and each sees only its own conversation.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.docs import make_corpus, make_pdf, make_scanned_pdf, text_image
from tests.helpers import ROOT, clean_environ, free_port

pytestmark = pytest.mark.browser

SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
PUMP = "At what pressure does the Zephyr pump operate?"
STARTUP_SECONDS = 120
LONG = 120_000  # ms: indexing and answers on 2 cores, with the models loading on first use


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"streamlit did not start in {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


@contextmanager
def running_app(data: Path, **env: str) -> Iterator[tuple[str, Path]]:
    """`streamlit run app.py` on a free port with its own data folder; yields its URL and log."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium): browser tests skipped")
    log = data / "streamlit.log"
    port = free_port()
    # As a user sets it: a Milvus Lite path in the environment (pymilvus reads MILVUS_URI too).
    environ = clean_environ(RAG_DATA_DIR=str(data), MILVUS_URI=str(data / "app.db"), PYTHONUNBUFFERED="1", **env)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port)],
            cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """The app with the offline defaults."""
    with running_app(tmp_path_factory.mktemp("browser-data"), RAG_MAX_NEW_TOKENS="120") as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser(server):
    """One Chromium for the module; each test opens its own tabs (one Playwright per thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser):
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.set_default_timeout(30_000)
    yield tab
    tab.context.close()


def _settle(page) -> None:
    """Wait until Streamlit has finished running the script."""
    page.wait_for_function(
        "() => document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'", timeout=LONG
    )
    page.wait_for_timeout(300)


def _switch_on(page, scope, label: str) -> None:
    """Turn a toggle on, as a user would: again if a rerun that was starting redrew it unchanged."""
    switch = scope.get_by_role("switch", name=label)
    for _ in range(5):
        _settle(page)
        if switch.is_checked():
            return
        scope.get_by_text(label).click()  # its label: the input itself is hidden under it
        page.wait_for_timeout(1000)
    expect(switch).to_be_checked()


def _open(page, name: str) -> None:
    page.get_by_test_id("stTopNavLink").filter(has_text=name).click()
    page.get_by_role("heading", name=name).wait_for()
    _settle(page)


def _library(page, *present: str, absent: tuple[str, ...] = ()) -> str:
    """The library table's text, once it lists `present` and none of `absent`.

    The grid draws on a canvas; its accessible table, filled in shortly after, holds the cells.
    """
    grid = page.get_by_test_id("stDataFrame")
    for name in present:
        expect(grid).to_contain_text(name, timeout=LONG)
    for name in absent:
        expect(grid).not_to_contain_text(name, timeout=LONG)
    return grid.text_content() or ""


def _ask(page, question: str) -> object:
    """Send a question; return the new answer's chat message once it has finished streaming."""
    answers = page.get_by_test_id("stChatMessage").filter(has=page.get_by_test_id("stChatMessageAvatarAssistant"))
    before = answers.count()
    box = page.get_by_test_id("stChatInputTextArea")
    expect(box).to_be_enabled(timeout=LONG)  # disabled while the page runs (its send button is Stop then)
    box.fill(question)
    box.press("Enter")
    answer = answers.nth(before)
    answer.get_by_text(re.compile(r"^(Sources|Closest passages) · ")).wait_for(timeout=LONG)
    _settle(page)
    return answer


def _shot(page, name: str, height: int = 1000, folder: Path = SHOTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": height})
    page.wait_for_timeout(500)
    page.screenshot(path=str(folder / name))
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_upload_ask_follow_up_and_delete(page, server, tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    page.goto(server)

    # A fresh data folder opens on Documents, which says to start by uploading.
    page.get_by_text("Start here").wait_for(timeout=LONG)
    assert "OPENAI_API_KEY" in page.get_by_test_id("stSidebar").inner_text()

    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files([corpus["manual.pdf"], corpus["report.docx"]])
    page.get_by_test_id("stFileChip").nth(1).wait_for()
    page.get_by_role("button", name="Upload and index").click()
    page.get_by_text("2 indexed").wait_for(timeout=LONG)  # the job's summary, updated without a click
    _settle(page)
    library = _library(page, "manual.pdf", "report.docx")
    assert library.count("indexed") == 2, library

    # Chat: the answer cites manual.pdf, page 2; a follow-up keeps the conversation.
    _open(page, "Chat")
    answer = _ask(page, PUMP)
    sources = answer.get_by_test_id("stExpander")
    first = sources.first.inner_text()
    assert "[1] manual.pdf" in first and "page 2" in first, first
    written = answer.get_by_test_id("stMarkdownContainer").first.inner_text().strip()
    assert written.startswith("The Zephyr pump operates at a pressure of 42 bar. Never exceed this pressure. [1]"), written
    expect(sources.first.locator("mark")).to_have_text("The Zephyr pump operates at a pressure of 42 bar. Never exceed this pressure.")
    follow = _ask(page, "And how often must its seals be replaced?")
    cited = follow.get_by_test_id("stExpander").all_inner_texts()
    assert any("manual.pdf" in c and "page 3" in c for c in cited), cited  # the seals' page
    expect(follow.get_by_text(re.compile("also searched for"))).to_be_visible()
    assert page.get_by_test_id("stChatMessage").count() == 4
    # The first source in its document: the PDF page, drawn with the passage marked.
    sources.first.click()  # open the first source
    _switch_on(page, sources.first, "Show in the document")
    expect(sources.first.get_by_test_id("stImage")).to_be_visible(timeout=LONG)
    expect(sources.first).to_contain_text("Page 2 of 3 · the passage is marked")
    _settle(page)
    page.get_by_test_id("stChatMessage").first.evaluate("el => el.scrollIntoView({block: 'start'})")
    _shot(page, "chat.png", height=1500)

    # Benchmark: a tiny live run on the app's Milvus Lite, its charts and table.
    _open(page, "Benchmark")
    counts = page.get_by_role("textbox", name="Counts")
    counts.fill("10, 100")
    counts.press("Enter")
    _settle(page)
    page.get_by_role("button", name="Run benchmark").click()
    page.get_by_text(re.compile(r"^Done: 12 measurements")).wait_for(timeout=LONG)
    _settle(page)
    expect(page.get_by_role("button", name="Run benchmark")).to_be_enabled()  # the page redrew when done
    expect(page.get_by_test_id("stVegaLiteChart")).to_have_count(3)
    expect(page.get_by_test_id("stDataFrame")).to_contain_text("async-batch")
    _shot(page, "benchmark.png", height=2000)

    # Documents: the library, then delete manual.pdf.
    _open(page, "Documents")
    _shot(page, "documents.png", height=1020)
    page.get_by_test_id("stMultiSelect").click()
    page.get_by_role("option", name="manual.pdf").click()
    page.keyboard.press("Escape")
    page.get_by_test_id("stPopover").filter(has_text="Delete").get_by_role("button").click()
    page.get_by_role("button", name="Yes, delete").click()
    page.get_by_text("Deleted manual.pdf").wait_for()
    _settle(page)
    _library(page, "report.docx", absent=("manual.pdf",))

    # ... and from answers.
    _open(page, "Chat")
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_test_id("stChatMessage")).to_have_count(0)
    answer = _ask(page, PUMP)
    cited = " ".join(answer.get_by_test_id("stExpander").all_inner_texts())
    assert "manual.pdf" not in cited and "report.docx" in cited
    expect(answer.get_by_text(re.compile("^Not in your documents"))).to_be_visible()  # the pump is gone


def _upload(page, server: str, path: Path) -> None:
    """Index one file through the Documents page (an unchanged one is simply not indexed again)."""
    page.goto(f"{server}/documents")
    page.get_by_role("heading", name="Documents").wait_for(timeout=LONG)
    _settle(page)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files([path])
    page.get_by_test_id("stFileChip").first.wait_for()
    page.get_by_role("button", name="Upload and index").click()
    page.get_by_text(re.compile(rf"^{re.escape(path.name)}: 1 (indexed|updated|already in the collection)")).wait_for(timeout=LONG)
    _settle(page)


def test_a_scan_is_read_cited_and_marked_on_its_page(page, server, tmp_path):
    """A scanned PDF and a photo of a page: read by OCR, listed with their confidence, and a
    cited passage drawn on the scanned page with its lines marked."""
    scan = make_scanned_pdf(tmp_path / "harbour-log.pdf", [
        ["Harbour log, volume one", "The Kestrel ferry leaves the north harbour at 6:40 every morning."],
        ["Harbour log, volume two", "The Corran lamp was lit by paraffin until 1954, then by electricity."],
    ])
    photo = tmp_path / "tide-table.png"
    text_image(["Tide table", "Spring tides at Pellow Point reach 5.2 metres in March."]).save(photo)
    _upload(page, server, scan)
    _upload(page, server, photo)
    library = _library(page, "harbour-log.pdf", "tide-table.png")
    assert re.search(r"harbour-log\.pdf.*indexed\s*9\d%", library, re.S), library  # the OCR column
    _shot(page, "documents-scans.png", height=1020, folder=tmp_path / "shots")

    _open(page, "Chat")
    answer = _ask(page, "Until when was the Corran lamp lit by paraffin?")
    sources = answer.get_by_test_id("stExpander")
    first = sources.first.inner_text()
    assert "[1] harbour-log.pdf" in first and "page 2" in first, first
    assert "volume two The Corran" not in answer.inner_text(), "a heading is not quoted as the start of a sentence"
    sources.first.click()
    _switch_on(page, sources.first, "Show in the document")
    expect(sources.first.get_by_test_id("stImage")).to_be_visible(timeout=LONG)
    expect(sources.first).to_contain_text("Page 2 of 2 · the passage is marked")
    _settle(page)
    _healthy(page)
    answer.evaluate("el => el.scrollIntoView({block: 'start'})")
    _shot(page, "scan-source.png", height=1300)


def test_what_is_typed_in_the_chat_box(page, server, tmp_path):
    """Whitespace is refused before it enters the history; markup shows as typed; a paste over
    the limit is taken, refused with the limit named, and kept to copy."""
    _upload(page, server, make_corpus(tmp_path / "corpus")["report.docx"])
    _open(page, "Chat")
    messages = page.get_by_test_id("stChatMessage")
    before = messages.count()
    box = page.get_by_test_id("stChatInputTextArea")

    expect(box).to_be_enabled(timeout=LONG)
    box.fill("   ")
    box.press("Enter")
    page.get_by_text("The question is empty: type a question. Nothing was asked.").wait_for()
    expect(messages).to_have_count(before)

    long = " ".join(["Aurora budget details."] * 200)  # 4,599 characters, pasted at once
    expect(box).to_be_enabled(timeout=LONG)
    box.focus()
    page.keyboard.insert_text(long)
    expect(box).to_have_value(long)
    box.press("Enter")
    page.get_by_text("The question is 4,599 characters long; the limit is 4,000. Nothing was asked.").wait_for()
    expect(messages).to_have_count(before)
    page.get_by_text("Your text (4,599 characters)").click()
    expect(page.get_by_test_id("stCode")).to_contain_text(long[:200])

    typed = "What is the **Aurora** `budget`? [see](https://example.com) <b>x</b>"
    _ask(page, typed)
    question = messages.nth(before).locator(".typed-text")
    assert question.inner_text() == typed
    expect(question.locator("strong, code, a, b")).to_have_count(0)


# Two sessions at once ------------------------------------------------------------------------------

FERRY = "The Kestrel ferry leaves the north harbour at 6:40 every morning."
FERRY_Q = "When does the Kestrel ferry leave the north harbour?"
SEALS = "How often must the Zephyr pump seals be replaced?"
BATCH = 30
_WORDS = (
    "archive ledger county survey harvest granary meadow orchard barley timber quarry mill canal bridge "
    "parish council market tithe cattle sheep wool weaver loom cottage hearth chimney thatch barn stable "
    "cart wheel road toll inn traveller merchant ledger account receipt rent tenant estate steward clerk "
    "register census baptism marriage burial vestry church bell tower clock river ford weir sluice "
    "drainage dyke marsh fen pasture hedge boundary stone map scale acre furlong rod chain field strip"
).split()


def _make_batch(folder: Path, count: int = BATCH) -> list[Path]:
    """`count` files for one upload: six long ones (about 40 chunks each) so that indexing takes a
    while, and small Markdown and PDF files, one of which states FERRY."""
    rng = random.Random(1234)
    folder.mkdir(parents=True, exist_ok=True)

    def paragraph(n: int) -> str:
        sentences = (" ".join(rng.choices(_WORDS, k=rng.randint(8, 16))).capitalize() + "." for _ in range(n))
        return " ".join(sentences)

    files = []
    for i in range(1, count + 1):
        if i % 5 == 1:  # 6 long files
            path = folder / f"ledger-{i:02d}.txt"
            path.write_text("\n\n".join(paragraph(12) for _ in range(50)))
        elif i == 8:
            path = folder / f"ferry-{i:02d}.md"
            path.write_text(f"# Harbour timetable\n\nNotes from the port office.\n\n{FERRY}\n")
        elif i % 5 == 3:
            path = make_pdf(folder / f"survey-{i:02d}.pdf", [paragraph(6), paragraph(6)], labels=False)
        else:
            path = folder / f"note-{i:02d}.md"
            path.write_text(f"# Note {i}\n\n{paragraph(8)}\n")
        files.append(path)
    return files


def _session(browser):
    tab = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    tab.set_default_timeout(30_000)
    return tab


def _healthy(page) -> None:
    """No exception box and no 'Something went wrong' from the app's safety net."""
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_text("Something went wrong")).to_have_count(0)


def _questions(page) -> list[str]:
    """The user's questions shown in this session's chat, in order."""
    users = page.get_by_test_id("stChatMessage").filter(has=page.get_by_test_id("stChatMessageAvatarUser"))
    return [text.strip() for text in users.locator(".typed-text").all_inner_texts()]


def _metric(scope, label: str):
    """The value of the metric labelled `label` in a page or a part of it."""
    metric = scope.get_by_test_id("stMetric").filter(has_text=re.compile("^" + re.escape(label)))
    return metric.get_by_test_id("stMetricValue")


def _library_rows(page, names: set[str] = frozenset(), passes: int = 3) -> dict[str, str]:
    """The whole library as {file: status}. The grid's accessible table holds only the rows in
    view, so the grid is scrolled from top to bottom; again (up to `passes` times) while any of
    `names` was not seen, since on a loaded machine the table can lag behind a scroll."""
    rows: dict[str, str] = {}
    for _ in range(passes):
        rows |= _scroll_rows(page)
        if names <= rows.keys():
            break
    return rows


def _scroll_rows(page) -> dict[str, str]:
    grid = page.get_by_role("heading", name="Library", exact=True).locator(
        "xpath=following::*[@data-testid='stDataFrame'][1]"
    )
    expect(grid.locator("th", has_text="Status")).to_be_attached(timeout=LONG)  # filled in after drawing
    scroller = grid.locator(".dvn-scroller")
    scroller.evaluate("el => { el.scrollTop = 0; }")
    rows: dict[str, str] = {}
    shown = None
    while True:
        # The table follows the scroll a few frames later, later still on a loaded machine: wait
        # until the rows in view change (or 5 s pass, at the very end of the table).
        deadline = time.monotonic() + 5
        while True:
            page.wait_for_timeout(200)
            table = grid.evaluate("el => [...el.querySelectorAll('tr')].map(r => [...r.children].map(c => c.textContent))")
            if table != shown or time.monotonic() > deadline:
                break
        shown = table
        header = next(r for r in table if "File" in r and "Status" in r)
        for cells in table:
            if cells is not header and len(cells) == len(header):
                rows[cells[header.index("File")]] = cells[header.index("Status")]
        if scroller.evaluate("el => el.scrollTop + el.clientHeight >= el.scrollHeight - 1"):
            return rows
        scroller.evaluate("el => { el.scrollTop += el.clientHeight / 2; }")


def test_two_sessions_upload_batch_while_chatting(browser, server, tmp_path):
    """Two browser sessions on one server: A uploads a large batch and watches it being indexed
    while B chats about a document it indexed first. Both keep working, B is answered while the
    batch is still indexing, and each session sees only its own conversation."""
    manual = make_corpus(tmp_path / "corpus")["manual.pdf"]
    batch = _make_batch(tmp_path / "batch")
    shots = tmp_path / "shots"  # looked at by hand when this test is changed; not kept in docs/
    a, b = _session(browser), _session(browser)
    try:
        # B indexes one small document, then opens Chat.
        _upload(b, server, manual)
        _open(b, "Chat")
        expect(b.get_by_test_id("stChatMessage")).to_have_count(0)

        # A uploads the batch, and B asks at once: the question is answered while the batch indexes
        # (ingestion yields the CPU to questions), so the batch is still running when it is done.
        a.goto(f"{server}/documents")
        a.get_by_role("heading", name="Documents").wait_for(timeout=LONG)
        _settle(a)
        before = int(_metric(a, "Documents").inner_text().replace(",", ""))
        a.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(batch)
        a.get_by_test_id("stFileChip").first.wait_for()
        started = time.monotonic()
        a.get_by_role("button", name="Upload and index").click()
        running = a.get_by_test_id("stExpander").filter(has_text=f"Indexing {batch[0].name} and {BATCH - 1} more")
        expect(running).to_be_visible(timeout=LONG)
        box = b.get_by_test_id("stChatInputTextArea")
        expect(box).to_be_enabled(timeout=LONG)
        box.fill(PUMP)
        box.press("Enter")

        # A's progress is live: files, chunks and elapsed time change without a click.
        expect(_metric(running, "Files")).to_have_text(re.compile(rf"^\d+ / {BATCH}$"))
        expect(_metric(running, "Chunks")).to_have_text(re.compile(r"^[\d,]+$"), timeout=LONG)
        bar = running.get_by_test_id("stProgress")
        expect(bar).to_contain_text("elapsed")
        shown = bar.inner_text()
        expect(bar).not_to_have_text(shown, timeout=LONG)
        _healthy(a)
        _shot(a, "a-indexing.png", height=1200, folder=shots)

        # B's answer: streamed, citing manual.pdf page 2, while A's batch is still indexing.
        answers = b.get_by_test_id("stChatMessage").filter(has=b.get_by_test_id("stChatMessageAvatarAssistant"))
        answer = answers.first
        answer.get_by_text(re.compile(r"^(Sources|Closest passages) · ")).wait_for(timeout=LONG)
        answered = time.monotonic() - started
        expect(running).to_be_visible(timeout=1_000)  # the batch has not finished
        _settle(b)
        cited = answer.get_by_test_id("stExpander").first.inner_text()
        assert "manual.pdf" in cited and "page 2" in cited, cited
        assert answer.get_by_test_id("stMarkdownContainer").first.inner_text().strip(), "an answer was written"
        follow = _ask(b, SEALS)
        assert follow.get_by_test_id("stExpander").count() >= 1
        assert _questions(b) == [PUMP, SEALS]
        expect(answers).to_have_count(2)
        _healthy(b)
        _shot(b, "b-chat.png", height=1400, folder=shots)

        # A's batch finishes: every file is in the library, indexed.
        a.get_by_text(f"{batch[0].name} and {BATCH - 1} more: {BATCH} indexed").wait_for(timeout=3 * LONG)
        indexed_in = time.monotonic() - started
        _settle(a)
        _healthy(a)
        expect(_metric(a, "Documents")).to_have_text(str(before + BATCH))
        expect(_metric(a, "Failed")).to_have_text("0")
        rows = _library_rows(a, {path.name for path in batch} | {"manual.pdf"})
        assert {path.name: rows.get(path.name) for path in batch} == {path.name: "indexed" for path in batch}, rows
        assert rows.get("manual.pdf") == "indexed", rows
        _shot(a, "a-library.png", height=1200, folder=shots)

        # A chats too: a fresh conversation, with only its own question in it.
        _open(a, "Chat")
        expect(a.get_by_test_id("stChatMessage")).to_have_count(0)
        ferry = _ask(a, FERRY_Q)
        cited = " ".join(ferry.get_by_test_id("stExpander").all_inner_texts())
        assert next(p.name for p in batch if p.name.startswith("ferry")) in cited, cited  # found in the batch
        assert _questions(a) == [FERRY_Q]
        expect(a.get_by_test_id("stChatMessage")).to_have_count(2)
        _healthy(a)
        _shot(a, "a-chat.png", height=1000, folder=shots)

        # B's conversation, redrawn from its session after a visit to Documents, is still only B's.
        _open(b, "Documents")
        _open(b, "Chat")
        assert _questions(b) == [PUMP, SEALS]
        expect(answers).to_have_count(2)
        _healthy(b)
        print(f"B answered after {answered:.0f} s; the batch was indexed in {indexed_in:.0f} s")
    finally:
        a.context.close()
        b.context.close()
