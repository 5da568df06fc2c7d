"""The real text the ingestion and retrieval benchmarks share, and the throwaway collections
they load it into.

The corpus is the documentation of installed modules, rendered by pydoc into plain-text files
under the data folder (written once, reused). Every collection made here starts with `_rag_bench`
and is dropped before and after use; the user's collections are never touched.
"""

from __future__ import annotations

import gzip
import importlib
import io
import os
import pydoc
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rag.errors import RagError

PREFIX = "_rag_bench"
CHARS_PER_CHUNK = 1200  # about what one of the app's chunks holds: corpus size from a chunk count
EMBED_BATCH = 256  # chunks embedded and inserted at once when loading a search collection

MODULES = (
    "os re json asyncio collections itertools functools pathlib typing datetime decimal fractions statistics "
    "random string textwrap unittest logging argparse subprocess threading socket http.client urllib.request "
    "email.message csv sqlite3 zipfile tarfile shutil tempfile inspect dataclasses enum abc contextlib heapq "
    "bisect array struct io pickle copy pprint operator math cmath hashlib hmac secrets uuid base64 binascii "
    "calendar locale gettext difflib codecs unicodedata xml.etree.ElementTree html.parser configparser queue "
    "sched selectors signal mmap multiprocessing concurrent.futures ssl ftplib smtplib imaplib poplib wave "
    "colorsys pdb timeit trace tracemalloc gc weakref types numbers graphlib zoneinfo ipaddress fnmatch glob "
    "filecmp stat platform errno ctypes doctest zipapp sysconfig builtins warnings traceback atexit ast dis "
    "tokenize keyword symtable compileall py_compile"
).split()

# Past MODULES (about 3,000 chunks): the rest of the standard library, then large packages the
# app already installs, so a 10,000-chunk corpus is still real documentation.
NOT_DOCUMENTED = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "ensurepip", "lib2to3", "pydoc_data"}
MORE_MODULES = tuple(
    name for name in sorted(sys.stdlib_module_names) if not name.startswith("_") and name not in NOT_DOCUMENTED
) + ("numpy", "pandas", "torch", "pydantic", "pymilvus")


# Corpus files ----------------------------------------------------------------------------------


def build_corpus(folder: Path, min_chars: int) -> list[Path]:
    """Plain-text files of real documentation, one per module, until `min_chars` are written."""
    folder.mkdir(parents=True, exist_ok=True)
    files, total = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in dict.fromkeys((*MODULES, *MORE_MODULES)):
            path = folder / f"{name}.txt"
            if not path.exists():
                try:
                    with io.StringIO() as sink, _redirect(sink):
                        text = pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext)
                except (Exception, SystemExit):  # a module missing on this platform (or exiting on import): skip it
                    continue
                path.write_text(text, encoding="utf-8")
            files.append(path)
            total += path.stat().st_size
            if total >= min_chars:
                break
    return files


class _redirect:
    """Silence modules that print on import."""

    def __init__(self, sink: io.StringIO) -> None:
        self._sink = sink

    def __enter__(self) -> None:
        self._old = sys.stdout
        sys.stdout = self._sink

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._old


def render_docs(folder: Path, modules: list[str]) -> list[Path]:
    """One plain-text file per named module (the retrieval questions' own files), written once."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in modules:
        path = folder / f"{name}.txt"
        if not path.exists():
            path.write_text(pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext), encoding="utf-8")
        paths.append(path)
    return paths


# Where Debian installs the documents of the second retrieval question set: PDF manuals, HTML
# guides, Markdown and plain-text specifications, and man pages ("man:NAME", rendered to text).
SYSTEM_DOCS = {
    "libtasn1.pdf": "/usr/share/doc/libtasn1-doc/libtasn1.pdf",
    "shared-mime-info-spec.pdf": "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf",
    "python-policy.html": "/usr/share/doc/python3/python-policy.html",
    "users-and-groups.html": "/usr/share/doc/base-passwd/users-and-groups.html",
    "zlib_how.html": "/usr/share/doc/zlib1g-dev/examples/zlib_how.html",
    "triggers.txt": "/usr/share/doc/dpkg/spec/triggers.txt",
    "ENVIRONMENT.md": "/usr/share/doc/systemd/ENVIRONMENT.md.gz",
    "tar.txt": "man:tar",
    "find.txt": "man:find",
    "sed.txt": "man:sed",
    "curl.txt": "man:curl",
}


class MissingDocuments(RagError):
    """A measurement's documents are not installed on this machine (not a Debian system)."""


def _man_page(name: str) -> Path:
    return Path(f"/usr/share/man/man1/{name}.1.gz")


def missing_system_docs(names: Iterable[str] = SYSTEM_DOCS) -> list[str]:
    """The named SYSTEM_DOCS (or the man and col commands they need) this machine lacks."""
    missing = []
    for name in names:
        source = SYSTEM_DOCS[name]
        if source.startswith("man:"):
            page = _man_page(source.removeprefix("man:"))
            missing += [str(page)] if not page.exists() else []
            missing += [tool for tool in ("man", "col") if not shutil.which(tool) and tool not in missing]
        elif not Path(source).exists():
            missing.append(source)
    return missing


def render_man_page(name: str, path: Path) -> Path:
    """A section-1 man page as plain text, 100 columns wide (as a user would save it)."""
    page = _man_page(name)
    if not page.exists() or not shutil.which("man") or not shutil.which("col"):
        raise MissingDocuments(f"{page} (or the man command) is missing: this measurement uses Debian's documentation")
    env = {**os.environ, "MANWIDTH": "100"}
    text = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, env=env, check=True).stdout
    text = subprocess.run(["col", "-b"], input=text, capture_output=True, text=True, check=True).stdout
    path.write_text(text, encoding="utf-8")
    return path


def system_docs(folder: Path, names: Iterable[str]) -> list[Path]:
    """The named SYSTEM_DOCS copied (unpacked, rendered) into `folder`. MissingDocuments, naming
    every one that is missing, before anything is written."""
    names = list(names)
    missing = missing_system_docs(names)
    if missing:
        raise MissingDocuments(f"{', '.join(missing)} missing: this measurement uses Debian's documentation")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path, source = folder / name, SYSTEM_DOCS[name]
        if source.startswith("man:"):
            render_man_page(source.removeprefix("man:"), path)
        elif source.endswith(".gz"):
            path.write_bytes(gzip.decompress(Path(source).read_bytes()))
        else:
            shutil.copyfile(source, path)
        paths.append(path)
    return paths


def corpus_chunks(rag: Any, folder: Path, chunks: int, min_chars: int | None = None) -> tuple[list[Path], list[list[Any]]]:
    """Corpus files enough for `chunks` of the app's own chunks, and each file's chunks.

    Chunking only (no embedding), which is fast: so the files are picked by what the pipeline will
    make of them. `min_chars`: how much text to render first (default: enough for `chunks`)."""
    files: list[Path] = []
    per_file: list[list[Any]] = []
    for path in build_corpus(folder, min_chars=min_chars or chunks * CHARS_PER_CHUNK):
        files.append(path)
        per_file.append(rag.parts.chunk_file(path, PREFIX))
        if sum(map(len, per_file)) >= chunks:
            break
    return files, per_file


def small_chunks(rag: Any, paths: Iterable[Path], target: int) -> list[Any]:
    """`target` short chunks (96 word pieces) of the files in order: many of them from little text."""
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import Document

    from rag.models.embeddings import count_tokens

    splitter = SentenceSplitter(chunk_size=96, chunk_overlap=0, tokenizer=count_tokens(rag.embed_model))
    nodes: list[Any] = []
    for path in paths:
        doc = Document(text=path.read_text(encoding="utf-8"), metadata={"file_name": path.name})
        nodes.extend(splitter.get_nodes_from_documents([doc]))
        if len(nodes) >= target:
            break
    return nodes[:target]


# Benchmark collections -------------------------------------------------------------------------


async def ingest_fresh(rag: Any, store: Any, files: list[Path], name: str) -> tuple[float, int]:
    """Ingest `files` into an emptied benchmark collection: (seconds, chunks stored).

    A benchmark over a partial ingestion would measure the wrong thing, so any failure stops it."""
    await store.adiscard_collection(name)
    started = time.perf_counter()
    report = await rag.aingest(files, name)
    seconds = time.perf_counter() - started
    if report.aborted or report.failed:
        raise RagError(f"the benchmark ingestion failed: {report.aborted or report.failed[0].error}")
    return seconds, await store.acount_chunks(name)


async def embed_into(rag: Any, vector_store: Any, nodes: list[Any]) -> float:
    """Embed `nodes` (in place) and insert them straight into `vector_store`, without the
    catalog: a search collection is only searched. Returns the seconds it took."""
    from llama_index.core.schema import MetadataMode

    started = time.perf_counter()
    for i in range(0, len(nodes), EMBED_BATCH):
        part = nodes[i : i + EMBED_BATCH]
        vectors = await rag.parts.aembed_texts([n.get_content(metadata_mode=MetadataMode.EMBED) for n in part])
        for node, vector in zip(part, vectors, strict=True):
            node.embedding = vector
        await vector_store.async_add(part)
    return time.perf_counter() - started
