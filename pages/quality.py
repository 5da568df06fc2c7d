"""The Benchmark page's "Retrieval quality" part: which search settings work for these documents.

A question file (uploaded, the test questions made from feedback on the Chat page, or the shipped
sample) is evaluated on the active collection for
several modes and top-k values at once (one search per question and mode, at the largest k);
the scoring is `rag.evaluation`, the same as `python -m rag eval`.
"""

from __future__ import annotations

import json
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from pages import common, formatting
from rag.errors import RagError
from rag.evaluation import comparison_rows, parse_questions, questions_file, rows_to_csv

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample-questions.json"
TOP_KS = (1, 3, 5, 10, 20)
RESULT_KEY = "quality_result"
FEEDBACK_FILE = "feedback-questions.json"


def question_text(rag, collection: str) -> tuple[str, str] | None:
    """(text, name) of the question file to use: an upload, else the test questions made from
    feedback in this collection, else the shipped sample; None when there is none."""
    upload = st.file_uploader("Question file (JSON list or CSV of question, file, page, evidence)",
                              type=["json", "csv"], key="quality_upload")
    saved = feedback_questions(rag, collection)
    if upload is not None:
        return upload.getvalue().decode("utf-8", errors="replace"), upload.name
    if saved:
        st.caption(f"No file uploaded: using the {len(saved)} test question{'s' if len(saved) != 1 else ''} "
                   "made from feedback in this collection (below).")
        return questions_file(q for _, q in saved), FEEDBACK_FILE
    if SAMPLE.exists():
        st.caption(f"No file uploaded: using the sample set `{SAMPLE.name}` (questions about `data/samples`).")
        return SAMPLE.read_text(encoding="utf-8"), SAMPLE.name
    return None


def feedback_questions(rag, collection: str) -> list:
    """The test questions made from thumbs-down answers (Chat page), listed with a download and
    a way to remove them; [] when there are none or the store cannot be read (said so)."""
    try:
        saved = rag.conversations.questions(collection)
    except RagError as exc:
        st.caption(f"Test questions from feedback cannot be read now: {formatting.escape_markdown(str(exc))}")
        return []
    if not saved:
        return []
    with st.expander(f"Test questions from feedback · {len(saved)}", icon=":material/thumb_down:"):
        frame = pd.DataFrame([{"Question": q.question, "File": q.file or "(not in the documents)", "Page": q.page,
                               "Evidence": q.evidence} for _, q in saved]).astype({"Page": "Int64"})
        st.dataframe(frame, hide_index=True, key="feedback_questions", placeholder="—")
        cols = st.columns(2)
        cols[0].download_button("Download as a question file (JSON)", questions_file(q for _, q in saved),
                                FEEDBACK_FILE, "application/json", icon=":material/download:")
        labels = {origin: f"{n}. {q.question[:80]}" for n, (origin, q) in enumerate(saved, 1)}
        gone = cols[1].multiselect("Remove", list(labels), format_func=labels.get, key="feedback_remove",
                                   placeholder="questions to remove", label_visibility="collapsed")
        if gone and cols[1].button(f"Remove {len(gone)}", icon=":material/delete:"):
            try:
                for origin in gone:
                    rag.conversations.delete_question(collection, origin)
            except RagError as exc:
                st.error(formatting.escape_markdown(str(exc)), icon=":material/error:")
            else:
                st.rerun()
    return saved


def run(rag, collection: str, text: str, name: str, modes: list[str], ks: list[int]) -> None:
    try:
        questions = parse_questions(text, name)
        reports = [r for mode in modes for r in rag.evaluate(questions, collection, mode, tuple(ks))]
    except RagError as exc:
        st.session_state[RESULT_KEY] = {"error": str(exc)}
        return
    st.session_state[RESULT_KEY] = {
        "collection": collection, "file": name, "rows": comparison_rows(reports),
        "reports": [r.to_json() for r in reports],
    }


def chart(rows: list[dict]) -> alt.Chart:
    data = pd.DataFrame(rows)
    data["top-k"] = data["top_k"].map(lambda k: f"top-{k}")
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X("mode:N", title=None), y=alt.Y("hit@k:Q", title="hit@k (share of questions)", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("mode:N", legend=None), tooltip=["mode", "top_k", "hit@1", "hit@3", "hit@k", "mrr"],
    )
    labels = bars.mark_text(dy=-6, fontSize=11).encode(text=alt.Text("hit@k:Q", format=".2f"), color=alt.value("#333"))
    column = alt.Column("top-k:N", title=None, sort=[f"top-{k}" for k in TOP_KS])
    return (bars + labels).properties(width=140, height=220).facet(column=column)


def diagnosis(reports: list[dict]) -> None:
    """Per question, where the right passage was: in the dense search, the BM25 search and the
    fused result (a hybrid evaluation at its largest k), and whether the answer declined."""
    hybrid = [r for r in reports if r["losses"]]
    if not hybrid:
        return
    report = max(hybrid, key=lambda r: r["top_k"])
    k, lost = report["top_k"], report["losses"]
    st.subheader(f"Where right passages were lost (hybrid, top-{k})", anchor=False)
    st.caption(f"Found {lost['found']} · not retrieved by either search {lost['not retrieved']} · retrieved but "
               f"ranked below {k} {lost['ranked below k']} · lost in fusion {lost['lost in fusion']} · declined: "
               f"{report['unanswerable_declined']} of {report['unanswerable_total']} unanswerable, "
               f"{report['answerable_declined']} of {report['answerable_total']} answerable")
    rows = [{"Question": q["question"], "File": q["file"] or "(unanswerable)", "Fused": q["rank"],
             "Dense": q["dense_rank"], "BM25": q["keyword_rank"], "Stage": q["stage"], "Declined": q["declined"]}
            for q in report["per_question"]]
    frame = pd.DataFrame(rows).astype({"Fused": "Int64", "Dense": "Int64", "BM25": "Int64"})
    st.dataframe(frame, hide_index=True, key="quality_questions", placeholder="—",
                 column_config={"Fused": st.column_config.NumberColumn(help=f"rank in the top {k} (— : not there)"),
                                "Dense": st.column_config.NumberColumn(help="rank among the dense search's candidates"),
                                "BM25": st.column_config.NumberColumn(help="rank among the BM25 search's candidates")})


def show(rag, collection: str) -> None:
    st.header("Retrieval quality", anchor=False)
    st.markdown(
        "Does the right passage come back, and how high? Upload questions with the file (and page, or an "
        "evidence phrase) that answers each, and compare search modes and top-k on "
        f"**{formatting.escape_markdown(collection)}**: hit@k is the share of questions whose right passage is "
        "among the first k, MRR the mean of 1/rank."
    )
    picked = question_text(rag, collection)
    modes_available = common.retrieval_modes(rag, collection)
    cols = st.columns(2)
    modes = cols[0].multiselect("Modes", modes_available.modes, default=list(modes_available.modes), key="quality_modes")
    ks = cols[1].multiselect("Top-k values", TOP_KS, default=[1, 5, 10], key="quality_ks")
    if modes_available.why_not:
        st.caption(f"Only dense search: {formatting.escape_markdown(modes_available.why_not)}.")
    ready = common.has_indexed(rag, collection)
    if st.button("Evaluate retrieval", icon=":material/fact_check:", disabled=not (picked and modes and ks and ready)):
        with st.spinner("Searching for every question…"):
            run(rag, collection, picked[0], picked[1], modes, sorted(ks))
    if not ready:
        st.caption("Index documents into this collection first.")
    result = st.session_state.get(RESULT_KEY)
    if not result:
        return
    if "error" in result:
        st.error(formatting.escape_markdown(result["error"]), icon=":material/error:")
        return
    st.altair_chart(chart(result["rows"]))
    refusals = {key: key.replace("_", " ") for key in result["rows"][0] if key.endswith(("_declined", "_total"))}
    table = pd.DataFrame(result["rows"]).rename(columns={"top_k": "top-k", "mrr": "MRR", **refusals})
    st.dataframe(table, hide_index=True, key="quality_table", placeholder="—")
    diagnosis(result["reports"])
    best = max(result["rows"], key=lambda r: (r["mrr"], r["hit@k"]))
    st.caption(f"Best MRR here: **{best['mode']}** (MRR {best['mrr']:.3f}) on "
               f"{formatting.escape_markdown(result['file'])}, collection {formatting.escape_markdown(result['collection'])}.")
    downloads = st.columns(2)
    downloads[0].download_button("Download CSV", rows_to_csv(result["rows"]), "retrieval-quality.csv", "text/csv")
    downloads[1].download_button("Download JSON", json.dumps(result["reports"], indent=2), "retrieval-quality.json",
                                 "application/json")
