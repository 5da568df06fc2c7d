"""Importing a folder on the server (Documents page, `RAG_IMPORT_ROOT`): only under the root,
never through a link out of it, and every file accounted for: indexed, or failed with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import ConfigError, RagError
from rag.ingestion.folders import import_folder, scan_folder
from tests.helpers import app_environment, library_frame, new_app, open_page, plain, texts

LIMIT = 200 * 2**20  # the app's upload limit (.streamlit/config.toml), which imports keep too


def make_root(tmp_path: Path) -> Path:
    """A root with one folder of good and bad files, and a secret next to the root."""
    root, lib = tmp_path / "shared", tmp_path / "shared" / "lib"
    (lib / "sub").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("The vault code is 1234.\n")
    (root / "elsewhere.md").write_text("# Elsewhere\n\nThe boathouse is painted green.\n")
    (lib / "good.txt").write_text("The ferry leaves the north harbour at 6:40.\n")
    (lib / "sub" / "deep.md").write_text("# Keys\n\nThe keys hang in the porter's lodge.\n")
    (lib / "empty.txt").write_text("")
    (lib / "binary.txt").write_bytes(bytes(range(256)) * 64)
    with (lib / "huge.txt").open("wb") as f:  # sparse: over the limit without filling the disk
        f.truncate(LIMIT + 1)
    (lib / "secret-link.txt").symlink_to(tmp_path / "secret.txt")
    (lib / "inside-link.md").symlink_to(root / "elsewhere.md")
    (lib / ".hidden.txt").write_text("not listed")
    (lib / "picture.xyz").write_text("not a supported type")
    return root


@pytest.mark.quick
def test_only_folders_under_the_root_can_be_named(tmp_path):
    root = make_root(tmp_path)
    assert import_folder(root, "lib") == (root / "lib").resolve()
    assert import_folder(root, str(root / "lib")) == (root / "lib").resolve()
    for name in ("..", "../", "lib/../..", str(tmp_path), "/etc"):
        with pytest.raises(RagError, match="is outside RAG_IMPORT_ROOT"):
            import_folder(root, name)
    with pytest.raises(RagError, match="no such folder under RAG_IMPORT_ROOT"):
        import_folder(root, "nothing")
    with pytest.raises(RagError, match="name a folder under RAG_IMPORT_ROOT"):
        import_folder(root, "  ")
    with pytest.raises(ConfigError, match="set RAG_IMPORT_ROOT"):
        import_folder(None, "lib")


@pytest.mark.quick
def test_a_scan_lists_every_file_and_refuses_links_out_and_huge_files(tmp_path):
    root = make_root(tmp_path)
    sources = {s.doc_id: s.refusal for s in scan_folder(root / "lib", root=root, max_bytes=LIMIT)}
    assert sources == {
        "binary.txt": "", "empty.txt": "", "good.txt": "", "inside-link.md": "", "sub/deep.md": "",
        "huge.txt": "huge.txt: 200.0 MB, over the 200 MB limit: not read",
        "secret-link.txt": "secret-link.txt: a link to a file outside RAG_IMPORT_ROOT: not read",
    }


@pytest.fixture(scope="module")
def import_app(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("import"))
    yield from app_environment(tmp_path_factory, RAG_IMPORT_ROOT=str(root))


def test_a_folder_is_imported_from_the_page_with_every_bad_file_listed(import_app):
    from pages import common

    at = open_page(new_app("imported"), "documents")
    for name, said in (("", "name a folder under RAG_IMPORT_ROOT"), ("../", "is outside RAG_IMPORT_ROOT")):
        at.text_input(key="import_folder").input(name)
        at.button(key="FormSubmitter:import-Import and index").click().run()
        assert said in plain(texts(at)) and not common.get_jobs().jobs(), "refused, nothing queued"

    at.text_input(key="import_folder").input("lib")
    at.button(key="FormSubmitter:import-Import and index").click().run()
    assert not at.exception, at.exception
    for job in common.get_jobs().jobs():
        common.get_jobs().wait(job.id, 300)
    at.run()
    table = library_frame(at)
    status = dict(zip(table["File"], table["Status"], strict=True))
    notes = dict(zip(table["File"], table["Note"], strict=True))
    assert {f: s for f, s in status.items() if s == "indexed"} == {
        "good.txt": "indexed", "sub/deep.md": "indexed", "inside-link.md": "indexed"}
    assert notes["huge.txt"] == "200.0 MB, over the 200 MB limit: not read"
    assert notes["secret-link.txt"] == "a link to a file outside RAG_IMPORT_ROOT: not read"
    assert "empty" in notes["empty.txt"] and "binary" in notes["binary.txt"]
    answer = import_app.ask("What is the vault code?", _options("imported"))
    assert all(s.file != "secret-link.txt" for s in answer.sources), "nothing of the secret was read"


def _options(collection: str):
    from rag.options import AskOptions

    return AskOptions(collection, top_k=3, retrieve_only=True)
