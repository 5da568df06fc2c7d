"""Uploaded files, kept under `settings.uploads_dir/<collection>/` so a document can be re-indexed.

A browser sends whatever name the user's file has (`../../etc/passwd`, control characters,
300-character names). The saved name is made safe here, and it is also the document id, so the
library shows the name the user knows.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import BinaryIO

from rag.config import Settings, validate_collection_name
from rag.errors import ConfigError, RagError

MAX_NAME_BYTES = 200  # well under the 255-byte limit of common file systems
FALLBACK_STEM = "upload"
_UNSAFE = re.compile(r'[<>:"|?*\\/]')  # path separators, and what Windows refuses in a name
_SPACES = re.compile(r"\s+")


def safe_file_name(name: str) -> str:
    """The last path part of `name`, without control characters, at most MAX_NAME_BYTES (UTF-8).

    The extension is kept when the name is shortened, since it decides which reader parses
    the file. Leading dots go, so the result is never hidden, `.` or `..`.
    """
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # control, format, ...
    name = _SPACES.sub(" ", _UNSAFE.sub("_", name)).strip()
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ext = _truncate(ext.strip(), 16)
    suffix = f".{ext}" if ext else ""
    stem = stem.strip().lstrip(".").strip()
    stem = _truncate(stem, MAX_NAME_BYTES - len(suffix.encode())).strip() or FALLBACK_STEM
    return stem + suffix


def _truncate(text: str, max_bytes: int) -> str:
    """Cut `text` to at most `max_bytes` of UTF-8, never inside a character."""
    return text.encode()[:max_bytes].decode(errors="ignore")


def collection_dir(settings: Settings, collection: str) -> Path:
    """Where a collection's uploads live (the name is validated, so it cannot hold a path)."""
    try:
        validate_collection_name(collection)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return settings.uploads_dir / collection


def stored_path(settings: Settings, collection: str, doc_id: str) -> Path:
    """The saved copy of a document, refusing any id that would point outside the uploads folder."""
    folder = collection_dir(settings, collection).resolve()
    path = (folder / doc_id).resolve()
    if not doc_id or path == folder or not path.is_relative_to(folder):
        raise RagError(f"{doc_id!r} is not a valid document name")
    return path


def save_upload(settings: Settings, collection: str, name: str, data: bytes | BinaryIO) -> Path:
    """Write an upload under the collection's folder with a safe name; return its path.

    Written to a temporary file first and renamed into place, so a job still reading an older
    upload of the same name never sees half a file.
    """
    path = stored_path(settings, collection, safe_file_name(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(data, bytes | bytearray | memoryview):
                out.write(data)
            else:
                shutil.copyfileobj(data, out, 1 << 20)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def find_upload(settings: Settings, collection: str, doc_id: str) -> Path | None:
    """The saved copy of a document, or None when it was not uploaded through the app."""
    try:
        path = stored_path(settings, collection, doc_id)
    except RagError:
        return None
    return path if path.is_file() else None


def remove_upload(settings: Settings, collection: str, doc_id: str) -> None:
    """Forget the saved copy of a deleted document (nothing to do if there is none)."""
    path = find_upload(settings, collection, doc_id)
    if path is not None:
        path.unlink(missing_ok=True)
