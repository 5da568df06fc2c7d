"""Retrieval evaluation: does the right passage come back, and how high?

A question set names, for each question, the file (and for PDFs the 1-based physical page) that
answers it, and optionally an evidence phrase the right passage contains. A retrieved passage is
a hit when its file matches, its page matches (if one is given) and it contains the evidence (if
given; compared without case, punctuation or line breaks). The figures are hit@1, hit@3, hit@k
(the right passage among the first 1, 3 or k) and MRR (the mean of 1/rank, 0 when missed).

A question whose `"file"` is `null` has no answer in the documents: it only counts for the
refusals (`unanswerable_declined` of `unanswerable_total`; `answerable_declined` counts the
others that were wrongly declined). In a hybrid evaluation each right passage is also looked up
in the dense and the BM25 search's own candidates, so a miss says where it was lost (`Stage`).

Parsing and scoring are pure (text in, figures out); `Rag.evaluate` does the retrieval, so the
CLI and the Benchmark page share one implementation.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from rag.answering.events import MAX_QUESTION_CHARS, Citation
from rag.errors import RagError
from rag.status import DocStatus

MAX_QUESTIONS = 1000
MAX_EVIDENCE_CHARS = 1000  # a phrase of the right passage, not the passage (chunks are ~1,000 characters)


class QuestionFileError(RagError):
    """A question file that cannot be used: malformed, or naming files the collection lacks."""


@dataclass(frozen=True)
class Question:
    question: str
    file: str | None  # None: nothing in the documents answers it
    page: int | None = None  # 1-based physical page (PDFs)
    evidence: str = ""


class Stage(StrEnum):
    """Where a right passage was lost, in a hybrid search (or that it was found)."""

    FOUND = "found"  # in the fused top k
    NOT_RETRIEVED = "not retrieved"  # in neither search's candidates
    RANKED_BELOW_K = "ranked below k"  # a search had it, below k in each
    LOST_IN_FUSION = "lost in fusion"  # a search had it in its top k; the fused top k has not


@dataclass(frozen=True)
class Outcome:
    """One question's result: the rank of the first right passage (None: not in the top k)."""

    question: Question
    rank: int | None
    top: str = ""  # what came first: "file, page N"
    dense_rank: int | None = None  # in the dense search's candidates (a hybrid evaluation)
    keyword_rank: int | None = None  # in the BM25 search's candidates
    legs: bool = False  # whether the two searches were looked into
    declined: bool = False  # whether the answer would be "Not in your documents"

    def stage(self, k: int) -> Stage | None:
        """Where its right passage was lost at cutoff k; None without a right passage or legs."""
        if self.question.file is None or not self.legs:
            return None
        if self.rank is not None and self.rank <= k:
            return Stage.FOUND
        legs = [r for r in (self.dense_rank, self.keyword_rank) if r is not None]
        if not legs:
            return Stage.NOT_RETRIEVED
        return Stage.LOST_IN_FUSION if min(legs) <= k else Stage.RANKED_BELOW_K


@dataclass
class Figures:
    questions: int
    hit_at_1: float
    hit_at_3: float
    hit_at_k: float
    mrr: float

    def to_json(self) -> dict[str, Any]:
        return {"questions": self.questions, "hit@1": self.hit_at_1, "hit@3": self.hit_at_3,
                "hit@k": self.hit_at_k, "mrr": self.mrr}


@dataclass
class Report:
    """An evaluation of one collection in one mode at one top-k."""

    collection: str
    mode: str
    top_k: int
    overall: Figures
    per_file: dict[str, Figures]
    outcomes: list[Outcome] = field(default_factory=list)
    note: str = ""

    @property
    def losses(self) -> dict[str, int]:
        """How many right passages were found, and lost at each stage (a hybrid evaluation)."""
        stages = [o.stage(self.top_k) for o in self.outcomes]
        return {stage.value: stages.count(stage) for stage in Stage} if any(stages) else {}

    @property
    def refusals(self) -> dict[str, int]:
        unanswerable = [o for o in self.outcomes if o.question.file is None]
        return {"unanswerable_declined": sum(o.declined for o in unanswerable), "unanswerable_total": len(unanswerable),
                "answerable_declined": sum(o.declined for o in self.outcomes if o.question.file is not None),
                "answerable_total": len(self.outcomes) - len(unanswerable)}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"collection": self.collection, "mode": self.mode, "top_k": self.top_k,
                                **self.overall.to_json(), **self.refusals, "losses": self.losses,
                                "per_file": {f: fig.to_json() for f, fig in self.per_file.items()},
                                "per_question": [{**asdict(o.question), "rank": o.rank, "top": o.top,
                                                  "dense_rank": o.dense_rank, "keyword_rank": o.keyword_rank,
                                                  "stage": o.stage(self.top_k), "declined": o.declined}
                                                 for o in self.outcomes]}
        if self.note:
            data["note"] = self.note
        return data


def parse_questions(text: str, name: str = "questions") -> list[Question]:
    """A JSON list of objects, or a CSV with a header, of question/file/page?/evidence?."""
    stripped = text.lstrip("\ufeff").strip()
    if not stripped:
        raise QuestionFileError(f"{name}: the file is empty")
    if stripped[0] in "[{":
        try:
            rows = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(f"{name}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(rows, list):
            raise QuestionFileError(f"{name}: expected a JSON list of {{\"question\", \"file\", ...}} objects")
    else:
        rows = list(csv.DictReader(io.StringIO(stripped)))
        if rows and not {"question", "file"} <= set(rows[0]):
            raise QuestionFileError(f"{name}: a CSV question file needs the columns question and file (and page, evidence)")
    if not rows:
        raise QuestionFileError(f"{name}: no questions in the file")
    if len(rows) > MAX_QUESTIONS:
        raise QuestionFileError(f"{name}: {len(rows)} questions; the limit is {MAX_QUESTIONS}")
    return [_question(row, i, name) for i, row in enumerate(rows, 1)]


def question_from(row: Any, where: str) -> Question:
    """One question from its JSON object, checked as in a question file (`where` names it in errors)."""
    return _question(row, where=where)


def question_json(question: Question) -> dict[str, Any]:
    """A question as a question file writes it: `file` null when nothing answers it, no empty keys."""
    data: dict[str, Any] = {"question": question.question, "file": question.file}
    if question.page is not None:
        data["page"] = question.page
    if question.evidence:
        data["evidence"] = question.evidence
    return data


def questions_file(questions: Iterable[Question]) -> str:
    """A question file (JSON) that `parse_questions`, `rag eval` and the Benchmark page read."""
    return json.dumps([question_json(q) for q in questions], indent=2, ensure_ascii=False) + "\n"


def _question(row: Any, number: int = 0, name: str = "", where: str = "") -> Question:
    where = where or f"{name}: question {number}"
    if not isinstance(row, dict):
        raise QuestionFileError(f"{where} is not an object with \"question\" and \"file\"")
    question, file = str(row.get("question") or "").strip(), str(row.get("file") or "").strip()
    unanswerable = "file" in row and row["file"] is None  # JSON null: nothing answers it
    if not question or not (file or unanswerable):
        raise QuestionFileError(f"{where} needs a non-empty \"question\" and \"file\" (null: unanswerable)")
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionFileError(f"{where} is {len(question):,} characters long; the limit is {MAX_QUESTION_CHARS:,}")
    evidence = str(row.get("evidence") or "").strip()
    if len(evidence) > MAX_EVIDENCE_CHARS:
        raise QuestionFileError(f"{where}: the evidence phrase is {len(evidence):,} characters long; "
                                f"the limit is {MAX_EVIDENCE_CHARS:,} (a phrase the right passage contains)")
    page = row.get("page")
    if page in (None, ""):
        page = None
    else:
        try:
            page = int(page)
        except (TypeError, ValueError):
            raise QuestionFileError(f"{where}: page must be a whole number (1-based), not {page!r}") from None
        if page < 1:
            raise QuestionFileError(f"{where}: page must be 1 or more (the first page is 1), not {page}")
    return Question(question, None if unanswerable else file, page, evidence)


def document_names(documents: Iterable[Any]) -> list[str]:
    """What a question may name as its file: an indexed document's id or file name."""
    return [n for d in documents if d.status is DocStatus.INDEXED for n in (d.doc_id, d.file_name)]


def check_files(questions: Sequence[Question], known: Iterable[str], collection: str) -> None:
    """Refuse a question set that names files the collection does not hold."""
    names = set(known)
    unknown = sorted({q.file for q in questions if q.file is not None and q.file not in names})
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise QuestionFileError(f"the questions name files that collection {collection!r} does not hold: {shown}")


def _plain(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def is_hit(question: Question, citation: Citation) -> bool:
    if question.file is None or question.file not in (citation.file, citation.doc_id):
        return False
    if question.page is not None and citation.page != question.page:
        return False
    return not question.evidence or _plain(question.evidence) in _plain(citation.text)


def rank_of(question: Question, citations: Sequence[Citation]) -> int | None:
    """The 1-based rank of the first right passage, or None."""
    return next((i for i, c in enumerate(citations, 1) if is_hit(question, c)), None)


def outcome(question: Question, citations: Sequence[Citation]) -> Outcome:
    top = ""
    if citations:
        first = citations[0]
        top = first.file + (f", page {first.page}" if first.page is not None else "")
    return Outcome(question, rank_of(question, citations), top)


def figures(outcomes: Sequence[Outcome], k: int) -> Figures:
    """hit@1, hit@3, hit@k and MRR at cutoff k (a rank past k counts as a miss), over the
    questions that have an answer."""
    ranks = [o.rank if o.rank is not None and o.rank <= k else None for o in outcomes if o.question.file is not None]
    n = len(ranks) or 1
    hit = lambda cut: round(sum(r is not None and r <= cut for r in ranks) / n, 4)  # noqa: E731
    return Figures(len(ranks), hit(1), hit(3), hit(k), round(sum(1 / r for r in ranks if r) / n, 4))


def report(collection: str, outcomes: Sequence[Outcome], *, mode: str, k: int, note: str = "") -> Report:
    """Figures overall and per file, at cutoff k (outcomes may come from a deeper search)."""
    files = sorted({o.question.file for o in outcomes if o.question.file is not None})
    per_file = {f: figures([o for o in outcomes if o.question.file == f], k) for f in files}
    cut = [replace(o, rank=o.rank if o.rank is not None and o.rank <= k else None) for o in outcomes]
    return Report(collection, mode, k, figures(outcomes, k), per_file, cut, note)


def comparison_rows(reports: Sequence[Report]) -> list[dict[str, Any]]:
    """One row per (mode, top-k): for a table, a chart, a CSV. Where right passages were lost
    (hybrid only) and the refusals come along."""
    stages = {stage.value: None for stage in Stage if stage is not Stage.FOUND}
    return [{"mode": r.mode, "top_k": r.top_k, **r.overall.to_json(),
             **{key: r.losses.get(key) for key in stages}, **r.refusals} for r in reports]


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
