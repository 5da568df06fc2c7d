"""Background ingestion jobs, shared by every browser session of one app process.

A Streamlit script run lasts a fraction of a second, and a user may leave the Documents page
while a large upload is indexed. So jobs live here, in one registry held by the process (the
app keeps it in `st.cache_resource`), and pages only read snapshots of it.

Jobs run one at a time, in submission order, on a worker thread: the embedding model has one
thread anyway, and two jobs touching the same document at once could race. Progress arrives
from the event loop's thread (`IngestProgress` callbacks) and is copied under a lock.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field, replace

from rag.errors import RagError, first_line
from rag.ingestion.sources import FileResult, IngestProgress, IngestReport, ProgressCallback, Source
from rag.status import FileStatus, JobState

log = logging.getLogger(__name__)

StartIngest = Callable[[Sequence[Source], str, ProgressCallback], "Future[IngestReport]"]

KEEP_FINISHED = 20  # finished jobs remembered per registry, newest kept


@dataclass(frozen=True)
class FileState:
    """One file of a job, as the progress panel shows it."""

    doc_id: str
    status: FileStatus
    chunks: int = 0
    pages: int | None = None
    error: str = ""
    note: str = ""  # how a scan was read

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", FileStatus(self.status))


@dataclass(frozen=True)
class JobView:
    """A consistent snapshot of one job: safe to read from any thread, never changes."""

    id: str
    collection: str
    label: str
    state: JobState
    files: tuple[FileState, ...]
    progress: IngestProgress
    report: IngestReport | None
    error: str
    submitted_at: float
    finished_at: float | None
    started_at: float | None = None  # when the worker took it up: elapsed time counts from here
    updated_at: float | None = None  # when `progress` arrived

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", JobState(self.state))

    @property
    def active(self) -> bool:
        return self.state.active

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the job started, up to now (read at render time, so it ticks between
        progress reports) or to its end."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else (time.time() if now is None else now)
        return max(end - self.started_at, 0.0)

    def eta(self, now: float | None = None) -> float | None:
        """Time left: the last report's estimate, counted down since; None while it would be a guess."""
        left = self.progress.eta_seconds
        if left is None or self.state is not JobState.RUNNING:
            return None
        since = (time.time() if now is None else now) - (self.updated_at or self.submitted_at)
        return max(left - since, 0.0)

    def count(self, *statuses: FileStatus) -> int:
        return sum(f.status in statuses for f in self.files)

    def summary(self) -> str:
        """`2 indexed, 1 already in the collection, 1 failed`: what the job did, in words."""
        outcomes = (FileStatus.INDEXED, FileStatus.REPLACED, FileStatus.UNCHANGED, FileStatus.FAILED, FileStatus.SKIPPED)
        parts = [(self.count(status), status.label) for status in outcomes]
        return ", ".join(f"{n} {what}" for n, what in parts if n) or "nothing to do"


@dataclass
class _Job:
    id: str
    collection: str
    label: str
    sources: list[Source]
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    updated_at: float | None = None
    state: JobState = JobState.QUEUED
    progress: IngestProgress | None = None
    report: IngestReport | None = None
    error: str = ""
    finished_at: float | None = None
    future: Future[IngestReport] | None = None
    cancel_requested: bool = False

    def view(self) -> JobView:
        progress = self.progress or IngestProgress(files_total=len(self.sources))
        return JobView(
            id=self.id,
            collection=self.collection,
            label=self.label,
            state=self.state,
            files=tuple(self._file_states(progress)),
            progress=progress,
            report=self.report,
            error=self.error,
            submitted_at=self.submitted_at,
            finished_at=self.finished_at,
            started_at=self.started_at,
            updated_at=self.updated_at,
        )

    def _file_states(self, progress: IngestProgress) -> list[FileState]:
        """Finished files from the results; the rest are waiting, or in the pipeline.

        Files are parsed in order, so every file up to the one being parsed (`current`) that has
        no result yet is somewhere between parsing and its last inserted chunk.
        """
        results = {r.doc_id: r for r in (self.report.results if self.report else progress.results)}
        names = [s.name for s in self.sources]
        reached = names.index(progress.current) if self.state is JobState.RUNNING and progress.current in names else -1
        states = []
        for i, source in enumerate(self.sources):
            result = results.get(source.doc_id)
            if result is not None:
                states.append(_from_result(result))
            elif self.state.active:
                states.append(FileState(source.doc_id, FileStatus.INDEXING if i <= reached else FileStatus.WAITING))
            else:
                states.append(FileState(source.doc_id, FileStatus.SKIPPED, error=self.error or FileStatus.SKIPPED.label))
        return states


def _from_result(result: FileResult) -> FileState:
    return FileState(result.doc_id, result.status, result.chunks, result.pages, result.error, result.note)


def _snapshot(progress: IngestProgress) -> IngestProgress:
    """A copy the loop thread will not mutate afterwards (the pipeline reuses its object)."""
    snap = copy.copy(progress)
    snap.results = list(progress.results)
    return snap


class IngestJobs:
    """A thread-safe queue of ingestion jobs with live progress, for all sessions of a process."""

    def __init__(self, start: StartIngest, keep_finished: int = KEEP_FINISHED) -> None:
        """`start(sources, collection, progress)` begins an ingestion: `Rag.start_ingest`."""
        self._start = start
        self._keep = keep_finished
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[str] = deque()
        self._ids = itertools.count(1)
        self._worker: threading.Thread | None = None
        self._closed = False

    # Submitting and controlling -----------------------------------------------------------

    def submit(self, sources: Sequence[Source], collection: str, label: str = "") -> str:
        """Queue an ingestion of `sources` into `collection`; returns the job id at once."""
        sources = list(sources)
        if not sources:
            raise RagError("no files to index")
        with self._lock:
            if self._closed:
                raise RagError("the app is shutting down: try again in a moment")
            job = _Job(f"job-{next(self._ids)}", collection, label or _label(sources), sources)
            self._jobs[job.id] = job
            self._queue.append(job.id)
            self._ensure_worker()
            self._wakeup.notify_all()
        return job.id

    def cancel(self, job_id: str) -> bool:
        """Stop a job: a queued one never starts; a running one stops and undoes its half-done file."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not job.state.active:
                return False
            job.cancel_requested = True
            if job.state is JobState.QUEUED:
                self._queue.remove(job_id)
                self._finish(job, JobState.CANCELLED, "cancelled before it started")
                return True
            future = job.future
        if future is not None:
            future.cancel()
        return True

    def dismiss(self, job_id: str) -> None:
        """Forget a finished job (a running one stays)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and not job.state.active:
                del self._jobs[job_id]

    def clear_finished(self, collection: str | None = None) -> None:
        with self._lock:
            for job in list(self._jobs.values()):
                if not job.state.active and collection in (None, job.collection):
                    del self._jobs[job.id]

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything and stop the worker (for tests and shutdown)."""
        with self._lock:
            self._closed = True
            ids = list(self._jobs)
            self._wakeup.notify_all()
        for job_id in ids:
            self.cancel(job_id)
        if self._worker is not None:
            self._worker.join(timeout)

    # Reading ---------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobView | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.view() if job is not None else None

    def jobs(self, collection: str | None = None) -> list[JobView]:
        """Jobs of a collection (all if None), oldest first."""
        with self._lock:
            return [j.view() for j in self._jobs.values() if collection in (None, j.collection)]

    def active(self, collection: str | None = None) -> list[JobView]:
        return [j for j in self.jobs(collection) if j.active]

    def busy(self, collection: str) -> set[str]:
        """Document ids a queued or running job will write: not to be deleted meanwhile."""
        with self._lock:
            return {
                s.doc_id
                for j in self._jobs.values()
                if j.collection == collection and j.state.active
                for s in j.sources
            }

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """Block until a job has finished (tests and scripts; pages poll instead)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while (job := self._jobs[job_id]).state.active:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{job_id} still {job.state} after {timeout} s")
                self._wakeup.wait(left)
            return job.view()

    # The worker --------------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="rag-ingest-jobs", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._wakeup.wait()
                if self._closed and not self._queue:
                    return
                job = self._jobs[self._queue.popleft()]
                job.state, job.started_at = JobState.RUNNING, time.time()
            self._process(job)

    def _process(self, job: _Job) -> None:
        def progress(state: IngestProgress) -> None:
            snap = _snapshot(state)
            with self._lock:
                job.progress, job.updated_at = snap, time.time()

        try:
            future = self._start(job.sources, job.collection, progress)
            with self._lock:
                job.future = future
                cancelled = job.cancel_requested
            if cancelled:
                future.cancel()
            report = future.result()
        except CancelledError:
            with self._lock:
                self._finish(job, JobState.CANCELLED, "cancelled")
            return
        except RagError as exc:
            with self._lock:
                self._finish(job, JobState.FAILED, str(exc))
            return
        except Exception as exc:  # a bug or a broken dependency: keep the worker alive, say what broke
            log.exception("ingestion job %s failed", job.id)
            with self._lock:
                self._finish(job, JobState.FAILED, f"indexing stopped ({type(exc).__name__}: {first_line(exc)})")
            return
        with self._lock:
            job.report = report
            job.progress = replace(_snapshot(job.progress or IngestProgress(len(job.sources))), results=list(report.results))
            job.progress.files_done = len(report.results)
            self._finish(job, JobState.FAILED if report.aborted else JobState.DONE, report.aborted)

    def _finish(self, job: _Job, state: JobState, error: str = "") -> None:
        """Mark a job finished (lock held) and forget the oldest finished ones beyond the limit."""
        job.state, job.error, job.finished_at, job.future = state, error, time.time(), None
        finished = [j for j in self._jobs.values() if not j.state.active]
        for old in finished[: max(len(finished) - self._keep, 0)]:
            del self._jobs[old.id]
        self._wakeup.notify_all()


def _label(sources: Sequence[Source]) -> str:
    first = sources[0].name
    return first if len(sources) == 1 else f"{first} and {len(sources) - 1} more"
