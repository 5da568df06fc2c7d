"""The states things go through, and the words every page and command uses for them.

StrEnums, as LlamaIndex's `VectorStoreQueryMode`: a member is its plain string, so catalog rows
written before (and JSON) keep reading the same, and a typo is an AttributeError, not a silent
mismatch.
"""

from __future__ import annotations

from enum import StrEnum


class DocStatus(StrEnum):
    """A document's row in the catalog."""

    INDEXING = "indexing"  # its chunks are being written (or were, by a process that stopped)
    INDEXED = "indexed"
    FAILED = "failed"


class FileStatus(StrEnum):
    """One file of an ingestion, from waiting in the queue to its outcome."""

    WAITING = "waiting"
    INDEXING = "indexing"
    INDEXED = "indexed"
    REPLACED = "replaced"  # indexed over a previous version
    UNCHANGED = "unchanged"  # the same content was already indexed: nothing to do
    FAILED = "failed"
    SKIPPED = "skipped"  # never reached: the job was cancelled or stopped early

    @property
    def label(self) -> str:
        """The outcome in a user's words (`2 updated`, `manual.pdf: already in the collection`)."""
        return _LABELS[self]

    @property
    def explanation(self) -> str:
        """The label with what it means, where it needs saying."""
        note = _NOTES.get(self)
        return f"{self.label}: {note}" if note else self.label

    @property
    def stored(self) -> bool:
        """The file's chunks are in the collection (written by this ingestion)."""
        return self in (FileStatus.INDEXED, FileStatus.REPLACED)

    @property
    def pending(self) -> bool:
        return self in (FileStatus.WAITING, FileStatus.INDEXING)


_LABELS = {
    FileStatus.WAITING: "waiting",
    FileStatus.INDEXING: "indexing",
    FileStatus.INDEXED: "indexed",
    FileStatus.REPLACED: "updated",
    FileStatus.UNCHANGED: "already in the collection",
    FileStatus.FAILED: "failed",
    FileStatus.SKIPPED: "not indexed",
}
_NOTES = {
    FileStatus.REPLACED: "the previous version was replaced",
    FileStatus.UNCHANGED: "unchanged, not indexed again",
}


class JobState(StrEnum):
    """An ingestion job in the app's background queue."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """Not finished yet: its files are still to be written."""
        return self in (JobState.QUEUED, JobState.RUNNING)
