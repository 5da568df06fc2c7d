"""Folders on the server, imported whole from the Documents page.

Only folders under `RAG_IMPORT_ROOT` can be named, and nothing is read through a link that
leaves it: the page must not become a way to read the server's other files. A file that is not
to be read (such a link, or one over the size limit) is still listed, failed with its reason,
so that a folder of thousands of files accounts for every one of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from rag.errors import ConfigError, RagError
from rag.ingestion.readers import SUPPORTED_EXTENSIONS
from rag.ingestion.sources import Source


def import_folder(root: Path | None, name: str) -> Path:
    """The folder `name` (relative to the root, or absolute inside it), checked to be under it."""
    if root is None:
        raise ConfigError("importing folders is off: set RAG_IMPORT_ROOT to the folder they may come from")
    base = root.expanduser().resolve()
    if not base.is_dir():
        raise ConfigError(f"RAG_IMPORT_ROOT {str(root)!r} is not a folder")
    if not name.strip():
        raise RagError(f"name a folder under RAG_IMPORT_ROOT ({base}), or . for all of it")
    wanted = (base / name.strip()).resolve()  # an absolute `name` replaces `base`, and is checked alike
    if not wanted.is_relative_to(base):
        raise RagError(f"{name.strip()!r} is outside RAG_IMPORT_ROOT ({base}): only folders under it can be imported")
    if not wanted.is_dir():
        raise RagError(f"{name.strip()!r}: no such folder under RAG_IMPORT_ROOT ({base})")
    return wanted


def scan_folder(folder: Path, *, root: Path, max_bytes: int) -> list[Source]:
    """Every supported file under `folder` (hidden ones aside), ids relative to it; links are
    not followed into folders, and a file that is a link out of `root` or too big is refused."""
    base = root.expanduser().resolve()
    sources = []
    for current, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(current) / name
            if name.startswith(".") or path.suffix.lower() not in SUPPORTED_EXTENSIONS:
                continue
            doc_id = path.relative_to(folder).as_posix()
            sources.append(Source(path, doc_id, _refusal(path, base, max_bytes)))
    return sources


def _refusal(path: Path, base: Path, max_bytes: int) -> str:
    target = path.resolve()
    if not target.is_relative_to(base):
        return f"{path.name}: a link to a file outside RAG_IMPORT_ROOT: not read"
    if not target.is_file():
        return f"{path.name}: a link to nothing that can be read: not read"
    size = target.stat().st_size
    if size > max_bytes:
        return f"{path.name}: {size / 2**20:,.1f} MB, over the {max_bytes / 2**20:,.0f} MB limit: not read"
    return ""
