"""Scanned documents and images, read by OCR as a user meets them: scans drawn from printed
text, the real OCR models, the CLI as a subprocess, a real Milvus Lite file."""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from rag.answering.source_view import render_page
from rag.bench.corpus import missing_system_docs
from rag.bench.ocr import CER_PDFS, _words_as_letters, edit_distance
from rag.config import OcrMode, OcrRuntime, Settings
from rag.errors import ParseError
from rag.ingestion.ocr import (
    OcrCancelled,
    OcrJob,
    OcrLine,
    OcrOptions,
    OcrPage,
    _recognise,
    mend_pages,
    normalise,
    passage_boxes,
)
from rag.ingestion.ocr_engine import engine_pool
from rag.ingestion.ocr_words import mend_texts
from rag.ingestion.readers import read_file
from rag.storage.catalog import DocumentRecord
from tests.docs import make_pdf, make_scanned_pdf, text_image
from tests.helpers import ROOT, clean_environ, until

FERRY = "The Kestrel ferry leaves the north harbour at 6:40 every morning."
TIDE = "Spring tides at Pellow Point reach 5.2 metres in March."
LAMP = "The Corran lamp was lit by paraffin until 1954."
SEAL = "Grey seals pup on the Farne islands in late autumn."
TEXT_PAGE = "The Zephyr pump operates at a pressure of 42 bar."


def letters(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def assert_read(text: str, sentence: str) -> None:
    """OCR may differ from the print in spacing and punctuation, never in the letters."""
    assert letters(sentence) in letters(text), text


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scans")
    files: dict[str, Path] = {}
    # A mixed PDF: page 1 has a text layer, page 2 is a scan.
    text = make_pdf(folder / "text-part.pdf", [TEXT_PAGE], labels=False)
    scan = make_scanned_pdf(folder / "scan-part.pdf", [["Harbour notes", FERRY]])
    writer = PdfWriter()
    writer.append(PdfReader(text))
    writer.append(PdfReader(scan))
    files["mixed.pdf"] = folder / "mixed.pdf"
    writer.write(files["mixed.pdf"])
    files["tides.png"] = folder / "tides.png"
    text_image(["Tide tables", TIDE]).save(files["tides.png"])
    files["tides.jpg"] = folder / "tides.jpg"
    text_image(["Tide tables", TIDE]).save(files["tides.jpg"], quality=85)
    files["tides.webp"] = folder / "tides.webp"
    text_image(["Tide tables", TIDE]).save(files["tides.webp"], quality=90)
    files["lamps.tiff"] = folder / "lamps.tiff"
    first, second = text_image(["Coast lights, part one", SEAL]), text_image(["Coast lights, part two", LAMP])
    first.save(files["lamps.tiff"], save_all=True, append_images=[second], compression="tiff_lzw")
    files["upside-down.png"] = folder / "upside-down.png"
    text_image(["Fed the wrong way round", SEAL]).rotate(180).save(files["upside-down.png"])
    return files


@pytest.fixture(scope="module")
def bad_scans(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-scans")
    files: dict[str, Path] = {}
    files["bomb.png"] = folder / "bomb.png"  # 20,000 x 20,000 px in a few kilobytes
    Image.new("1", (20_000, 20_000), 1).save(files["bomb.png"], optimize=True)
    files["huge.png"] = folder / "huge.png"  # 81 megapixels: over RAG_OCR_MAX_PIXELS, under Pillow's own guard
    Image.new("1", (9_000, 9_000), 1).save(files["huge.png"], optimize=True)
    files["corrupt.png"] = folder / "corrupt.png"
    good = folder / "good.png"
    text_image([TIDE]).save(good)
    files["corrupt.png"].write_bytes(good.read_bytes()[:400])  # cut short
    good.unlink()
    files["blank.png"] = folder / "blank.png"
    Image.new("L", (1275, 1650), 255).save(files["blank.png"])
    files["not-an-image.jpg"] = folder / "not-an-image.jpg"
    files["not-an-image.jpg"].write_text("this is text with an image's name")
    scan = make_scanned_pdf(folder / "scan.pdf", [[FERRY]])
    writer = PdfWriter(clone_from=PdfReader(scan))
    writer.encrypt(user_password="secret", owner_password="owner")
    files["locked-scan.pdf"] = folder / "locked-scan.pdf"
    writer.write(files["locked-scan.pdf"])
    scan.unlink()
    return files


def test_a_mixed_pdf_keeps_its_text_layer_and_reads_its_scanned_page(scans):
    job = OcrJob(OcrOptions())
    sections = read_file(scans["mixed.pdf"], job)
    assert [s.page for s in sections] == [1, 2]
    assert TEXT_PAGE in sections[0].text, "a page with a text layer keeps it, word for word"
    assert_read(sections[1].text, FERRY)
    summary = job.summary()
    assert summary["pages"] == 1 and summary["flagged"] == [] and summary["confidence"] > 0.9, summary
    [page] = job.pages
    assert page.page == 2 and all(0 <= v <= 1 for line in page.lines for v in line.box)

    forced = OcrJob(OcrOptions(mode=OcrMode.FORCE))
    read_file(scans["mixed.pdf"], forced)
    assert [p.page for p in forced.pages] == [1, 2], "force reads every page, text layer or not"
    off = read_file(scans["mixed.pdf"], OcrJob(OcrOptions(mode=OcrMode.OFF)))
    assert [s.page for s in off] == [1], "with OCR off the scanned page is left out"


@pytest.mark.parametrize("name", ["tides.png", "tides.jpg", "tides.webp"])
def test_an_image_is_one_document_of_one_page(scans, name):
    job = OcrJob(OcrOptions())
    [section] = read_file(scans[name], job)
    assert section.page == 1
    assert_read(section.text, TIDE)
    assert job.summary()["confidence"] > 0.9


def test_a_multi_page_tiff_has_pages_and_an_upside_down_scan_is_turned(scans):
    sections = read_file(scans["lamps.tiff"], OcrJob(OcrOptions()))
    assert [s.page for s in sections] == [1, 2]
    assert_read(sections[0].text, SEAL)
    assert_read(sections[1].text, LAMP)
    job = OcrJob(OcrOptions())
    [section] = read_file(scans["upside-down.png"], job)
    assert_read(section.text, SEAL)
    [line] = [x for x in job.pages[0].lines if "seals" in x.text.lower()]
    assert line.box[1] > 0.5, "boxes are where the text is on the file as it is (upside down: low on the page)"


@pytest.mark.quick
def test_openvino_sends_nothing():
    """OpenVINO comes without openvino-telemetry, which on `import openvino` starts a process to
    send usage data (it also broke the CLI's one-line errors with gRPC's fork warning)."""
    code = ("import os, sys\ndef refuse():\n    sys.exit('a process was forked')\nos.fork = refuse\n"
            "import openvino\nopenvino.Core()\nimport importlib.util\n"
            "sys.exit('openvino_telemetry is installed' if importlib.util.find_spec('openvino_telemetry') else 0)")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_openvino_reads_what_onnx_runtime_reads():
    """The models run on OpenVINO by default (2.8x faster here); its readings must be ONNX
    Runtime's, but for the rare character that a bfloat16 recogniser reads otherwise."""
    _, engines, runtime = engine_pool(1, OcrRuntime.AUTO)
    assert runtime == "openvino", "the pinned OpenVINO loads on this CPU"
    _, fallback, used = engine_pool(1, OcrRuntime.ONNXRUNTIME)
    assert used == "onnxruntime"
    image = text_image(["Harbour notes", FERRY, TIDE, LAMP, SEAL, "asn1_der_decoding(&definitions, der, len, errors);"])
    fast, reference = _recognise(engines, 1, image), _recognise(fallback, 1, image)
    assert len(fast.lines) == len(reference.lines) == 6
    assert difflib.SequenceMatcher(None, fast.text, reference.text).ratio() > 0.98, (fast.text, reference.text)
    assert abs(fast.confidence - reference.confidence) < 0.02
    for sentence in (FERRY, TIDE, LAMP, SEAL):
        assert_read(fast.text, sentence)


def test_pages_are_scaled_for_the_detector_in_float32_as_rapidocr_would_in_float64():
    import numpy as np

    _, engines, _ = engine_pool(1, OcrRuntime.AUTO)
    engine = engines.get()
    try:
        page = np.asarray(text_image(["Harbour notes", FERRY]).convert("RGB"))
        ours = engine.text_det.get_preprocess(max(page.shape[:2]))
        theirs = type(ours)(ours.limit_side_len, ours.limit_type)  # RapidOCR's own, in float64
        assert ours.normalize(page).dtype == np.float32
        assert np.allclose(ours(page), theirs(page), atol=1e-6)
    finally:
        engines.put(engine)


def test_reading_can_be_cancelled_between_pages(tmp_path):
    pdf = make_scanned_pdf(tmp_path / "long.pdf", [[f"Page {n}: {FERRY}"] for n in range(1, 7)])
    seen = []

    def on_page(done: int, total: int) -> None:
        seen.append(done)
        if done >= 1:
            job.cancel()

    job = OcrJob(OcrOptions(workers=1), on_page=on_page)
    with pytest.raises(OcrCancelled):
        read_file(pdf, job)
    assert max(seen) < 6, "the pages after the cancel are never read"


def test_bad_images_get_one_reason_each_and_no_memory_blow_up(bad_scans):
    reasons = {}
    for name, path in bad_scans.items():
        with pytest.raises(ParseError) as error:
            read_file(path, OcrJob(OcrOptions()))
        reasons[name] = str(error.value)
    assert "decompression bomb" in reasons["bomb.png"] and "RAG_OCR_MAX_PIXELS" in reasons["bomb.png"]
    assert "9,000 x 9,000 px (81 MP)" in reasons["huge.png"] and "RAG_OCR_MAX_PIXELS (60 MP)" in reasons["huge.png"]
    assert "damaged" in reasons["corrupt.png"]
    assert "damaged or not an image" in reasons["not-an-image.jpg"]
    assert "no text" in reasons["blank.png"] and "blank" in reasons["blank.png"]
    assert "password" in reasons["locked-scan.pdf"]
    assert all(r.startswith(f"{name}: ") for name, r in reasons.items()), reasons
    # In a process of its own (this one holds the models): refusing the huge images costs no memory.
    # VmHWM, not ru_maxrss: the latter keeps the peak of the process it was forked from.
    code = ("import re, sys\nfrom pathlib import Path\nfrom rag.errors import ParseError\n"
            "from rag.ingestion.ocr import OcrJob, OcrOptions\nfrom rag.ingestion.readers import read_file\n"
            "for name in sys.argv[1:]:\n    try:\n        read_file(Path(name), OcrJob(OcrOptions()))\n"
            "    except ParseError:\n        pass\n"
            "print(re.search(r'VmHWM:\\s+(\\d+) kB', Path('/proc/self/status').read_text()).group(1))")
    run = subprocess.run([sys.executable, "-c", code, str(bad_scans["bomb.png"]), str(bad_scans["huge.png"])],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) < 600_000, "KiB: neither image was decoded (a 400-megapixel RGB page would be 1.2 GB)"


def test_normalise_turns_full_width_forms_into_ascii():
    assert normalise("-o，--output （file）  name") == "-o, --output (file) name"
    assert normalise("ＡＳＮ．１") == "ASN.1"


@pytest.mark.quick
def test_misread_words_are_mended_from_the_words_the_document_prints_most():
    page = ["ASN1 and ASCII are printed here, ASN1 again, ASCII again and asn1 asn1 asn1 of the file",
            "a line read as AsCll and libtasnl, libtasn1 libtasn1 libtasn1",
            "it MUsT be AUToMATIC, sUCCESS succEss SUCCESS SUCCESS and 1oo bytes",
            "thefirst bytes ofthefile for the user, the first of the file"]
    mended = mend_texts([page])[0]
    assert "ASCII and libtasn1," in mended[1]
    assert "it MUST be AUTOMATIC, SUCCESS SUCCESS SUCCESS SUCCESS and 100 bytes" == mended[2]
    assert mended[3].startswith("the first bytes of the file for the user")


@pytest.mark.quick
def test_a_mixed_pdf_mends_its_scanned_pages_by_the_words_of_its_text_pages():
    scanned = [["Call asnl_der_decoding on the buffer, then asnl_der_decoding again."]]
    text_layer = ["asn1_der_decoding reads DER. asn1_der_decoding checks it. asn1_der_decoding returns."]
    assert mend_texts(scanned)[0] == scanned[0], "read twice the same way, and nothing else to go by"
    assert mend_texts(scanned, text_layer)[0] == ["Call asn1_der_decoding on the buffer, then asn1_der_decoding again."]
    assert text_layer == ["asn1_der_decoding reads DER. asn1_der_decoding checks it. asn1_der_decoding returns."]


@pytest.mark.quick
def test_a_run_of_words_read_as_one_is_parted_and_its_misread_word_mended():
    text = ["Note: Checking thefirst 128 bytes ofthefileforASCllcontrolcharacters is a good way",
            "thefile is read so thefile and thefile, but the file, the file, the file, the file, the file",
            "the file, the file, the file, the file and control characters, control characters"]
    mended = mend_texts([text])[0]
    assert mended[0] == "Note: Checking the first 128 bytes of the file for ASCII control characters is a good way"
    assert mended[1].startswith("the file is read so the file and the file,")


@pytest.mark.quick
def test_a_word_joined_to_an_article_is_parted_when_printed_apart_as_often():
    """After "the" or "an", read joined 4 times and printed apart 4: parted. After another
    function word ("isfile"), it takes three times as often apart: a name may start so."""
    text = ["thefile and thefile, thefile, thefile; the file, the file, the file, the file",
            "isfile and isfile, isfile, isfile; is file, is file, is file, is file"]
    assert mend_texts([text])[0] == ["the file and the file, the file, the file; the file, the file, the file, the file",
                                     text[1]]


@pytest.mark.quick
def test_mending_leaves_words_it_cannot_be_sure_of():
    text = ["Clone the IPv4 APIs in 2 GiB, the oidValue and oidValue and oidValue, an oidvalue",
            "the filename and mimetype, a plugin to init the inode; maybe sizeof(x), sizeof, sizeof or strlen",
            "file name file name file name mime type mime type mime type size of size of size of",
            "plug in plug in in it in it in ode in ode may be may be"]
    mended = mend_texts([text])[0]
    assert mended[0] == "Clone the IPv4 APIs in 2 GiB, the oidValue and oidValue and oidValue, an oidValue"
    assert mended[1:] == text[1:]


@pytest.mark.quick
def test_a_word_broken_by_a_stray_space_is_made_whole_and_boxes_still_match():
    assert mend_texts([["SEQUENCE SEQUENCE and SEQUENC E", "in it is"]]) == [["SEQUENCE SEQUENCE and SEQUENCE", "in it is"]]
    page = OcrPage(1, (OcrLine("a SEQUENC E of ofthe values", (0.1, 0.1, 0.9, 0.2), 0.9),
                       OcrLine("SEQUENCE of the SEQUENCE", (0.1, 0.3, 0.9, 0.4), 0.9)))
    (mended,) = mend_pages([page])
    assert mended.lines[0].text == "a SEQUENCE of of the values" and mended.lines[0].box == page.lines[0].box
    assert passage_boxes(mended, "a SEQUENCE of of the values") == [page.lines[0].box]


@pytest.mark.quick
def test_the_benchmark_counts_characters_and_words_wrong():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3
    read, truth = _words_as_letters("the fle of the  file", "the file of the file")
    assert edit_distance(read, truth) == 1  # one word replaced, however many letters


# As a user runs it: the CLI, settings from the environment --------------------------------------

@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    data = tmp_path_factory.mktemp("ocr-data")

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "rag", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
            env=clean_environ(**{"RAG_DATA_DIR": str(data), **env}),
        )

    run.data = data
    return run


def test_cli_indexes_scans_lists_bad_files_and_cites_the_scanned_page(cli, scans, bad_scans, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for path in [scans["mixed.pdf"], scans["lamps.tiff"], scans["tides.png"], *bad_scans.values()]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "note.md").write_text("# Note\n\nThe tide gauge at Pellow Point was rebuilt in 2019.\n")
    started = time.monotonic()
    result = cli("ingest", str(folder), "--json", "--collection", "scans")
    assert result.returncode == 1, result.stderr  # some files failed
    files = {f["doc_id"]: f for f in json.loads(result.stdout)["files"]}
    indexed = {name for name, f in files.items() if f["status"] == "indexed"}
    assert indexed == {"mixed.pdf", "lamps.tiff", "tides.png", "note.md"}, files
    assert files["lamps.tiff"]["pages"] == 2 and files["lamps.tiff"]["note"].startswith("OCR: 2 pages, confidence")
    assert files["mixed.pdf"]["note"].startswith("OCR: 1 page,"), "only the scanned page was read by OCR"
    assert files["note.md"]["note"] == ""
    for name in bad_scans:
        assert files[name]["status"] == "failed" and files[name]["error"].startswith(f"{name}: "), files[name]
    assert "RAG_OCR_MAX_PIXELS" in files["bomb.png"]["error"] and "RAG_OCR_MAX_PIXELS" in files["huge.png"]["error"]
    assert time.monotonic() - started < 300

    result = cli("ask", "When was the Corran lamp lit by paraffin?", "--json", "--collection", "scans", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    source = json.loads(result.stdout)["sources"][0]
    assert (source["file"], source["page"]) == ("lamps.tiff", 2), source

    docs = {d["doc_id"]: d for d in json.loads(cli("docs", "--json", "--collection", "scans").stdout)}
    assert docs["lamps.tiff"]["ocr"]["pages"] == 2 and docs["lamps.tiff"]["ocr"]["confidence"] > 0.9
    assert docs["note.md"]["ocr"] is None
    assert docs["bomb.png"]["status"] == "failed"

    # The cited passage is marked on the scanned page, from the boxes OCR kept.
    settings = Settings(RAG_DATA_DIR=cli.data)
    records = {name: DocumentRecord(**d) for name, d in docs.items()}
    record = records["lamps.tiff"]
    image = render_page(settings, record, scans["lamps.tiff"], 2, source["text"])
    assert image.marked and (image.page, image.pages) == (2, 2)
    assert not render_page(settings, record, scans["lamps.tiff"], 1, source["text"]).marked, "only where it is"
    mixed = records["mixed.pdf"]
    assert render_page(settings, mixed, scans["mixed.pdf"], 2, FERRY).marked
    assert render_page(settings, mixed, scans["mixed.pdf"], 1, TEXT_PAGE).marked, "the text page: from its text layer"

    saved = cli.data / "scans" / f"{record.content_hash}.json"
    assert saved.is_file()
    assert cli("delete", "lamps.tiff", "--collection", "scans").returncode == 0
    assert not saved.exists(), "a deleted document's lines and boxes go with it"


def test_ocr_settings_from_the_environment(cli, scans, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("tides.png", "mixed.pdf"):
        (inbox / name).write_bytes(scans[name].read_bytes())
    result = cli("ingest", str(inbox), "--json", "--collection", "ocr_off", RAG_OCR="off")
    assert result.stdout, result.stderr
    files = {f["doc_id"]: f for f in json.loads(result.stdout)["files"]}
    assert "OCR, which is off; set RAG_OCR=auto" in files["tides.png"]["error"]
    assert files["mixed.pdf"]["status"] == "indexed" and files["mixed.pdf"]["note"] == "", "its text page only"

    result = cli("ingest", str(inbox / "tides.png"), "--json", "--collection", "ocr_strict", RAG_OCR_MIN_CONFIDENCE="0.9999")
    [file] = json.loads(result.stdout)["files"]
    assert file["status"] == "failed" and "could not be read reliably" in file["error"], file
    assert "RAG_OCR_MIN_CONFIDENCE" in file["error"]

    result = cli("ingest", str(inbox / "tides.png"), "--json", "--collection", "ocr_tiny", RAG_OCR_MAX_PIXELS="1000000")
    [file] = json.loads(result.stdout)["files"]
    assert file["status"] == "indexed", "1 megapixel is enough for this strip: 1275 x 420"

    result = cli("ingest", str(inbox / "tides.png"), RAG_OCR="sometimes")
    assert result.returncode != 0 and "RAG_OCR" in result.stderr and "Traceback" not in result.stderr, result.stderr
    result = cli("ingest", str(inbox / "tides.png"), "--json", "--collection", "ocr_ort", RAG_OCR_RUNTIME="onnxruntime")
    [file] = json.loads(result.stdout)["files"]
    assert file["status"] == "indexed" and file["chunks"] == 1, file
    result = cli("ingest", str(inbox / "tides.png"), RAG_OCR_RUNTIME="gpu")
    assert result.returncode != 0 and "RAG_OCR_RUNTIME" in result.stderr and "Traceback" not in result.stderr, result.stderr
    result = cli("ingest", str(inbox / "tides.png"), RAG_OCR_DPI="20")
    assert result.returncode != 0 and "RAG_OCR_DPI" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_without_openvino_the_defaults_fall_back_and_say_so(cli, scans, tmp_path):
    """A machine where OpenVINO does not load (removed, or a CPU it refuses): on the defaults
    (`auto`), scans are read by ONNX Runtime and passages embedded by torch, each with a warning;
    where a user asked for OpenVINO by name, the error names the setting."""
    shadow = tmp_path / "no-openvino" / "openvino"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("OpenVINO is not installed on this machine")\n')
    path = str(shadow.parent) + (":" + sys_path if (sys_path := clean_environ().get("PYTHONPATH")) else "")
    (tmp_path / "tides.png").write_bytes(scans["tides.png"].read_bytes())

    result = cli("ingest", str(tmp_path / "tides.png"), "--json", "--collection", "no_openvino", PYTHONPATH=path)
    assert result.returncode == 0, result.stderr
    [file] = json.loads(result.stdout)["files"]
    assert file["status"] == "indexed" and file["chunks"] == 1, file
    assert "OCR runs on ONNX Runtime: OpenVINO did not load (OpenVINO is not installed" in result.stderr, result.stderr
    result = cli("ask", "How high do spring tides reach at Pellow Point?", "--collection", "no_openvino", PYTHONPATH=path)
    assert result.returncode == 0 and "5.2 metres" in result.stdout, result.stdout + result.stderr

    result = cli("ingest", str(tmp_path / "tides.png"), "--json", "--collection", "openvino_asked", PYTHONPATH=path,
                 RAG_OCR_RUNTIME="openvino", RAG_EMBED_BACKEND="torch")
    [file] = json.loads(result.stdout)["files"]
    assert file["status"] == "failed" and "set RAG_OCR_RUNTIME=auto or onnxruntime" in file["error"], file
    result = cli("ask", "How high do spring tides reach?", "--collection", "no_openvino", PYTHONPATH=path,
                 RAG_EMBED_BACKEND="openvino")
    assert result.returncode != 0 and "RAG_EMBED_BACKEND=openvino" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


# In the pipeline: a time limit per page, and cancel mid-document ---------------------------------

SHIPS = ["Alder", "Birch", "Cedar", "Damson", "Elder", "Fir", "Gorse", "Hazel", "Ivy", "Juniper", "Kale", "Larch"]


def _logbook(path: Path) -> Path:
    """A 12-page scan, one ship per page (no line repeats, so none is taken for a running header)."""
    return make_scanned_pdf(path, [[f"Logbook entry {i + 1}", f"The {ship} sailed from Pellow Point with {i + 3} crew."]
                                   for i, ship in enumerate(SHIPS)])


def test_the_file_time_limit_is_per_page_of_a_scan(data_dir, collection, tmp_path):
    from rag.service import Rag

    logbook = _logbook(tmp_path / "logbook.pdf")
    dense = tmp_path / "dense.png"
    text_image([f"Line {n}: {FERRY} {TIDE}" for n in range(40)], size=(1275, 1650)).save(dense)
    with Rag(Settings(RAG_DATA_DIR=data_dir, RAG_FILE_TIMEOUT=3, _env_file=None)) as rag:
        report = rag.ingest([logbook], collection)
        [result] = report.results
        assert result.status == "indexed" and result.pages == 12, result
        assert report.seconds > 3, "the whole scan took longer than the limit: the limit is per page"
    with Rag(Settings(RAG_DATA_DIR=data_dir, RAG_FILE_TIMEOUT=0.2, _env_file=None)) as rag:
        [result] = rag.ingest([dense], collection).results
        assert result.status == "failed" and "longer than 0.2 s to read (RAG_FILE_TIMEOUT)" in result.error, result


def test_cancelling_a_job_stops_reading_the_scan_and_keeps_nothing_of_it(rag, collection, tmp_path):
    from rag.ingestion.jobs import IngestJobs
    from rag.ingestion.sources import Source

    logbook = _logbook(tmp_path / "logbook.pdf")
    jobs = IngestJobs(rag.start_ingest)
    try:
        job = jobs.submit([Source(logbook, "logbook.pdf")], collection)
        until(lambda: jobs.get(job).progress.pages_read >= 2, timeout=120)
        view = jobs.get(job)
        assert view.progress.pages_total == 12 and view.progress.current == "logbook.pdf"
        cancelled = time.monotonic()
        assert jobs.cancel(job)
        view = jobs.wait(job, 30)
        assert view.state == "cancelled" and time.monotonic() - cancelled < 10
        [file] = view.files
        assert file.status in ("failed", "skipped") and "cancelled" in file.error, file
    finally:
        jobs.close()
    assert "logbook.pdf" not in {d.doc_id for d in rag.documents(collection)}


@pytest.mark.skipif(bool(missing_system_docs(CER_PDFS)), reason="Debian's text PDFs are not installed here")
def test_cli_ocr_benchmark_reports_error_rates_as_kept_and_as_read(cli):
    run = cli("bench-ocr", "--pages", "1", "--dpi", "150", "--skip-retrieval", "--json")
    assert run.returncode == 0, run.stderr
    (row,) = json.loads(run.stdout)["cer"]
    assert row["pages"] == 1 and row["chars"] >= 800 and row["words"] > 100
    assert 0 <= row["cer"] <= row["cer_as_read"] + 0.01 < 0.2 and 0 <= row["wer"] <= row["wer_as_read"] + 0.01 < 0.5
    bad = cli("bench-ocr", "--dpi", "20")
    assert bad.returncode != 0 and "--dpi" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("bench-ocr", "--library-pages", "-3")
    assert bad.returncode != 0 and "--library-pages" in bad.stderr and "Traceback" not in bad.stderr
