"""`python -m rag` as a user runs it: real subprocesses, a real Milvus Lite file, real files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, clean_environ


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli-data")

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "rag", *args], cwd=ROOT, env=clean_environ(**{"RAG_DATA_DIR": str(data), **env}),
            capture_output=True, text=True, timeout=300
        )

    return run


@pytest.fixture(scope="module")
def default_collection(cli, corpus):
    """The default collection exists, so the errors below are about the input alone."""
    assert cli("ingest", str(corpus["plain.txt"])).returncode == 0


def one_line_error(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], result.stderr


def test_ingest_ask_docs_delete_round_trip(cli, corpus, tmp_path):
    result = cli("ingest", str(corpus["manual.pdf"]), str(corpus["report.docx"]), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {f["doc_id"]: f["status"] for f in report["files"]} == {"manual.pdf": "indexed", "report.docx": "indexed"}

    result = cli("ask", "What is the Aurora project budget?", "--json", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["answer"].startswith("The Aurora project budget is 3.5 million euros for the year. [1]")
    assert answer["found"] is True and answer["sources"][0]["file"] == "report.docx"
    assert set(answer["sources"][0]) == {"file", "page", "score", "score_kind", "text", "highlights"}
    [[start, end]] = answer["sources"][0]["highlights"]
    assert answer["sources"][0]["text"][start:end] == "The Aurora project budget is 3.5 million euros for the year."

    result = cli("ask", "What is the population of Tokyo?", "--json", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["found"] is False and answer["answer"].startswith("Not in your documents")
    assert len(answer["sources"]) == 2, "the closest passages, as such"

    questions = tmp_path / "q.json"
    questions.write_text(json.dumps(["Zephyr pump pressure", "Aurora budget"]))
    result = cli("ask", "--questions-file", str(questions), "--retrieve-only", "--json")
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert [a["answer"] for a in answers] == [None, None]
    assert (answers[0]["sources"][0]["file"], answers[0]["sources"][0]["page"]) == ("manual.pdf", 2)
    assert answers[1]["sources"][0]["file"] == "report.docx"

    result = cli("docs", "--json")
    assert [(d["doc_id"], d["status"]) for d in json.loads(result.stdout)] == [
        ("manual.pdf", "indexed"),
        ("report.docx", "indexed"),
    ]
    assert cli("delete", "manual.pdf").returncode == 0
    assert [d["doc_id"] for d in json.loads(cli("docs", "--json").stdout)] == ["report.docx"]
    assert "documents" in cli("collections").stdout


@pytest.mark.llm
def test_human_output_streams_answer_and_sources(cli, corpus):
    cli("ingest", str(corpus["plain.txt"]), "--collection", "human")
    result = cli("ask", "When does the cafeteria open?", "-c", "human")
    assert result.returncode == 0, result.stderr
    assert "Sources:" in result.stdout and "plain.txt" in result.stdout
    assert "The staff cafeteria opens at 7:15 every weekday morning. [1]" in result.stdout
    assert "Answers quote the sentences of your documents" in result.stderr  # which mode answers

    result = cli("ask", "Who painted the Mona Lisa?", "-c", "human")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Not in your documents") and "Closest passages:" in result.stdout

    result = cli("ask", "When does the cafeteria open?", "-c", "human", RAG_LLM="local")
    assert result.returncode == 0, result.stderr
    assert "SmolLM2-135M is a small model" in result.stderr  # the user is told the local LLM is weak
    assert "Answers:    quotes from your documents (no LLM)" in cli("info").stdout


def test_a_failing_file_is_reported_and_exit_is_nonzero(cli, corpus, tmp_path):
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"not a pdf at all")
    result = cli("ingest", str(bad), str(corpus["notes.md"]), "-c", "mixed")
    assert result.returncode == 1
    assert "failed    broken.pdf: broken.pdf: the PDF is damaged" in result.stdout
    assert "indexed   notes.md" in result.stdout


@pytest.mark.parametrize(
    "args, env, message",
    [
        (("ingest", "/no/such/file.pdf"), {}, "no such file or folder"),
        (("ask", "anything", "-c", "nothing_here"), {}, "no collection named 'nothing_here'"),
        (("ask", "  "), {}, "the question is empty"),
        (("ask", "--questions-file", "/no/such.json"), {}, "no such file"),
        (("docs", "-c", "bad name"), {}, "invalid collection name"),
        (("delete", "ghost.pdf"), {}, "no document 'ghost.pdf'"),
        (("docs",), {"MILVUS_URI": "ftp://nowhere"}, "is not a Milvus address"),
        (("docs",), {"MILVUS_URI": "http://127.0.0.1:1"}, "cannot use Milvus server http://127.0.0.1:1"),
        (("docs",), {"RAG_TOP_K": "0"}, "RAG_TOP_K"),
        (("ask", "pump"), {"RAG_LLM": "local", "RAG_GGUF_PATH": "/no/model.gguf"}, "RAG_GGUF_PATH '/no/model.gguf' does not exist"),
        (("ask", "pump"), {"RAG_EMBED_MODEL": "no-such-org/no-such-model"}, "cannot load embedding model"),
        (("bench-ingest", "--memory", "2"), {}, "--memory must be at least 5 chunks"),
        (("bench-ingest", "--latency", "--embed-chunks", "3"), {}, "embed-chunks at least 10"),
        (("bench-ingest", "--library", "/tmp", "--backends", "fastest"), {}, "--backends takes torch, onnx, onnx-int8 or openvino"),
        (("docs",), {"RAG_EMBED_BACKEND": "fastest"}, "RAG_EMBED_BACKEND"),
        (("docs",), {"RAG_VECTOR_INDEX": "DISKANN"}, "RAG_VECTOR_INDEX"),
        (("ask", "pump"), {"RAG_LLM_RERANK": "10"}, "RAG_LLM_RERANK needs a language model: RAG_LLM is quote"),
        (("ask", "pump"), {"RAG_LLM": "local", "RAG_LLM_RERANK": "50"}, "RAG_LLM_RERANK"),
    ],
)
def test_wrong_input_gives_one_line_error(cli, default_collection, args, env, message):
    one_line_error(cli(*args, **env), message)


@pytest.mark.parametrize("top_k", ["0", "10000", "many"])
def test_bad_top_k_is_a_usage_error(cli, top_k):
    result = cli("ask", "pump", "--top-k", top_k)
    assert result.returncode == 2 and "top-k must be" in result.stderr


def test_bad_questions_file(cli, tmp_path):
    path = tmp_path / "q.json"
    path.write_text('{"not": "a list"}')
    one_line_error(cli("ask", "--questions-file", str(path)), "expected a non-empty JSON list of strings")
    path.write_text("[unterminated")
    one_line_error(cli("ask", "--questions-file", str(path)), "not a JSON file")


def test_bench_ingest_memory_reports_peak_rss_of_both_runs(cli):
    result = cli("bench-ingest", "--memory", "40", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    small, large = report["runs"]
    assert 8 <= small["chunks"] <= large["chunks"] and large["chunks"] >= 40
    assert small["peak_rss_mb"] >= report["rss_before_mb"] > 100, "the app's process, models loaded"
    assert large["milvus_peak_rss_mb"] > 10, "Milvus Lite's own process is measured apart"
    assert report["large_over_small_peak"] == round(large["peak_rss_mb"] / small["peak_rss_mb"], 3)
    assert large["above_start_mb"] == pytest.approx(large["peak_rss_mb"] - report["rss_before_mb"], abs=0.2)
    assert "_rag_bench_memory" not in cli("collections").stdout, "benchmark collections are dropped"


SEED_CHATS = """
import json, sys
from rag.answering.events import Citation
from rag.config import Settings
from rag.conversations import Feedback, SavedTurn
from rag.service import Rag
rag = Rag(Settings(RAG_DATA_DIR=sys.argv[1], _env_file=None))
source = Citation(file="manual.pdf", page=3, score=0.7, text="Check the seal\\nevery 500 hours.")
info = rag.conversations.new("manuals")
rag.conversations.save_turn(info, SavedTurn(question="How often is the seal checked?", answer="Every 500 hours [1].", sources=[source]))
rag.conversations.feedback(info.id, 0, Feedback(1, "right"))
rag.conversations.save_question("manuals", {"question": "Who won the 1998 cup?", "file": None}, info.id, 0)
print(json.dumps([info.id, rag.conversations.new("notes").id]))
"""


def test_chats_are_listed_and_exported(cli, tmp_path):
    data = tmp_path / "chats-data"
    seeded = subprocess.run([sys.executable, "-c", SEED_CHATS, str(data)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert seeded.returncode == 0, seeded.stderr
    first, second = json.loads(seeded.stdout.splitlines()[-1])
    env = {"RAG_DATA_DIR": str(data)}

    result = cli("chats", **env)
    assert result.returncode == 0, result.stderr
    assert first in result.stdout and second in result.stdout and "How often is the seal checked?" in result.stdout
    result = cli("chats", "--collection", "manuals", "--json", **env)
    assert [c["id"] for c in json.loads(result.stdout)] == [first]

    result = cli("chats", "export", first, **env)
    assert result.returncode == 0, result.stderr
    assert "## 1. How often is the seal checked?\n\nEvery 500 hours [1].\n" in result.stdout
    assert "1. **manual.pdf**, page 3\n\n   > Check the seal every 500 hours." in result.stdout
    result = cli("chats", "export", first, "--format", "json", **env)
    data = json.loads(result.stdout)
    assert data["turns"][0]["sources"][0]["page"] == 3 and data["turns"][0]["feedback"]["comment"] == "right"

    one_line_error(cli("chats", "export", "0" * 32, **env), "no conversation")
    one_line_error(cli("chats", "export", "../x", **env), "not a conversation id")
    result = cli("chats", "export", first, "--format", "pdf", **env)
    assert result.returncode != 0 and "invalid choice" in result.stderr

    # The test questions made from feedback print as the question file `eval` reads.
    result = cli("chats", "questions", "-c", "manuals", **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"question": "Who won the 1998 cup?", "file": None}]
    result = cli("chats", "-c", "notes", "questions", **env)
    assert json.loads(result.stdout) == [] and "no test questions in collection 'notes'" in result.stderr


def test_a_folder_is_kept_in_step_with_sync_and_prune(cli, corpus, tmp_path):
    folder = tmp_path / "library"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("The archive opens at nine.\n")
    (folder / "sub" / "b.md").write_text("# Keys\n\nThe keys hang in the porter's lodge.\n")
    (folder / "c.txt").write_text("The boiler is serviced every May.\n")
    uploaded = cli("ingest", str(corpus["plain.txt"]), "-c", "synced")  # not from the folder: never pruned
    assert uploaded.returncode == 0, uploaded.stderr

    first = cli("ingest", str(folder), "--sync", "-c", "synced")
    assert first.returncode == 0, first.stderr
    assert f"sync of {folder}: 3 new, 0 re-indexed, 0 unchanged, 0 failed, 0 removed" in first.stdout

    (folder / "a.txt").write_text("The archive now opens at ten.\n")  # changed
    (folder / "c.txt").unlink()  # gone
    (folder / "d.txt").write_text("The garden gate is locked at dusk.\n")  # new
    second = cli("ingest", str(folder), "--sync", "--prune", "-c", "synced", "--json")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert {f["doc_id"]: f["status"] for f in report["files"]} == {
        "a.txt": "replaced", "d.txt": "indexed", "sub/b.md": "unchanged"}
    assert report["removed"] == ["c.txt"]
    docs = json.loads(cli("docs", "-c", "synced", "--json").stdout)
    assert sorted(d["doc_id"] for d in docs) == ["a.txt", "d.txt", "plain.txt", "sub/b.md"]


def test_a_file_that_takes_too_long_to_read_is_skipped_with_its_reason(cli, tmp_path):
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "big.txt").write_text("A long line about nothing in particular. " * 200_000)  # ~8 MB to read and chunk
    (folder / "small.txt").write_text("The ferry leaves at six.\n")
    result = cli("ingest", str(folder), "-c", "slow", RAG_FILE_TIMEOUT="0.5")
    assert result.returncode == 1
    assert "failed    big.txt: big.txt: took longer than 0.5 s to read (RAG_FILE_TIMEOUT): skipped" in result.stdout
    assert "indexed   small.txt" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("--prune",), "use it with --sync"),
        (("EXTRA", "--sync"), "--sync takes exactly one folder"),
    ],
)
def test_sync_and_prune_refuse_what_they_cannot_do(cli, tmp_path, args, message):
    (tmp_path / "x.txt").write_text("x")
    args = [str(tmp_path / "x.txt") if a == "EXTRA" else a for a in args]
    one_line_error(cli("ingest", str(tmp_path), *args), message)
