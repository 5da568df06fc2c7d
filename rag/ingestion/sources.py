"""What an ingestion takes and what it reports: the files to index (`Source`, found by
`collect_sources`), each file's outcome (`FileResult`), live progress (`IngestProgress`) and
the final `IngestReport`. No I/O beyond listing folders and hashing files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import RagError
from rag.ingestion.readers import SUPPORTED_EXTENSIONS
from rag.status import FileStatus


@dataclass(frozen=True)
class Source:
    """A file to ingest and the id its document gets in the collection."""

    path: Path
    doc_id: str
    refusal: str = ""  # why the file is not to be read at all (a link out of the import root, too big)

    @property
    def name(self) -> str:
        return Path(self.doc_id).name


@dataclass
class FileResult:
    doc_id: str
    status: FileStatus  # an outcome: indexed, replaced, unchanged or failed
    chunks: int = 0
    pages: int | None = None
    error: str = ""
    note: str = ""  # how a scan was read ("OCR: 3 pages, confidence 96%; ...")

    def __post_init__(self) -> None:
        self.status = FileStatus(self.status)


ETA_MIN_FRACTION = 0.10  # of the bytes: before that, a time left extrapolates from too little
ETA_MIN_SECONDS = 10.0  # and the first seconds (model warm-up, first parse) say little about the rate


@dataclass
class IngestProgress:
    """A snapshot for progress displays: files, chunks and bytes done, all measured.

    Only `chunks_total` is a guess (chunks per byte so far, applied to the files not yet parsed):
    it scales the command line's bar and is never to be shown as a count.
    """

    files_total: int
    files_done: int = 0
    chunks_done: int = 0
    chunks_total: int = 0  # an estimate, see above
    bytes_total: int = 0
    bytes_done: float = 0.0  # finished files, plus the inserted share of each file in the pipeline
    elapsed: float = 0.0  # seconds since the ingestion started, when this snapshot was taken
    current: str = ""  # the file being parsed
    pages_read: int = 0  # of a scan being read by OCR: pages done, of pages_total (0: no scan)
    pages_total: int = 0
    results: list[FileResult] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        """Share of the work done, by file size (by file count when sizes are unknown)."""
        if self.bytes_total:
            return min(self.bytes_done / self.bytes_total, 1.0)
        return self.files_done / self.files_total if self.files_total else 0.0

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Time left at this snapshot, from the rate at which bytes were done; None until the
        rate rests on enough work (`ETA_MIN_FRACTION`) and time (`ETA_MIN_SECONDS`)."""
        done = self.fraction
        if done < ETA_MIN_FRACTION or self.elapsed < ETA_MIN_SECONDS:
            return None
        return self.elapsed * (1 - done) / done


@dataclass
class IngestReport:
    collection: str
    results: list[FileResult]
    seconds: float
    aborted: str = ""  # why the ingestion stopped early (Milvus down), if it did

    @property
    def chunks(self) -> int:
        return sum(r.chunks for r in self.results if r.status.stored)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status is FileStatus.FAILED]


ProgressCallback = Callable[[IngestProgress], None]


def collect_sources(paths: Iterable[str | Path]) -> list[Source]:
    """Files as given, folders expanded to their supported files (ids relative to the folder)."""
    sources: list[Source] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = file.relative_to(path)
                if file.suffix.lower() in SUPPORTED_EXTENSIONS and not any(part.startswith(".") for part in rel.parts):
                    sources.append(Source(file, rel.as_posix()))
        elif path.is_file():
            sources.append(Source(path, path.name))
        else:
            raise RagError(f"{raw}: no such file or folder")
    return sources


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
