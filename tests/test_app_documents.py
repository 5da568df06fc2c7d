"""The Documents page through `AppTest`, on the real core and a temporary Milvus Lite: uploads
indexed in the background, the library, re-index and delete, collections, awkward uploads.

The app keeps one `Rag` and one job registry per process (`st.cache_resource`); each module-
scoped data folder clears that cache, so the app under test starts the way a fresh server would."""

from __future__ import annotations

from rag.ingestion.uploads import MAX_NAME_BYTES, find_upload, safe_file_name
from rag.options import AskOptions
from tests.docs import make_bad_files, text_image
from tests.helpers import PUMP, button, library_frame, new_app, open_page, plain, texts, upload

# Each test makes what it relies on: the indexed documents (`app_indexed`), or a collection
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
        **_scans(tmp_path / "scans"),
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
    indexed = {"escape.md", "ctrl[31m.txt", short, "latin1.txt", "tides.png"}
    failed = {"binary.txt", "empty.txt", "scanned.pdf", "corrupt.pdf", "bomb.png", "blank.png", "corrupt.png"}
    assert {n for n, r in rows.items() if r["Status"] == "indexed"} >= indexed
    assert {n for n, r in rows.items() if r["Status"] == "failed"} >= failed and "big.txt" not in rows
    for name in failed:
        assert rows[name]["Note"] and rows[name]["Chunks"] == 0 and app_rag.count_chunks("documents", name) == 0
    for name in indexed:
        assert app_rag.count_chunks("documents", name) == rows[name]["Chunks"] >= 1, "all or nothing"
    assert rows["tides.png"]["OCR"].endswith("%") and rows["escape.md"]["OCR"] is None, "read by OCR, with its confidence"
    assert "RAG_OCR_MAX_PIXELS" in rows["bomb.png"]["Note"] and "blank scan" in rows["blank.png"]["Note"]
    assert "damaged" in rows["corrupt.png"]["Note"]
    [hit] = passages(app_rag, "When does the café of the château open?", 1)
    assert hit.file == "latin1.txt" and "café du château" in hit.text, "legacy encodings are decoded"

    data = app_rag.settings.data_dir.resolve()
    saved = {p for p in data.rglob("*") if p.is_file()}
    assert all(p.is_relative_to(data / "uploads") or p.is_relative_to(data / "milvus.db") or p.parent == data
               or p.parent == data / "scans" for p in saved), "uploads stay in their collections' folders"
    assert (data / "uploads" / "documents" / "escape.md").is_file()
    assert not any((folder / "escape.md").exists() for folder in (data, data.parent, data.parent.parent))


def _scans(folder) -> dict[str, bytes]:
    """A scan that reads, and images that cannot be read: a decompression bomb, a blank page, a cut-off file."""
    from PIL import Image

    folder.mkdir(parents=True)
    text_image(["Tide table", "Spring tides at Pellow Point reach 5.2 metres in March."]).save(folder / "tides.png")
    Image.new("1", (20_000, 20_000), 1).save(folder / "bomb.png", optimize=True)
    Image.new("L", (1275, 1650), 255).save(folder / "blank.png")
    data = {name: (folder / name).read_bytes() for name in ("tides.png", "bomb.png", "blank.png")}
    return {**data, "corrupt.png": data["tides.png"][:300]}


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
