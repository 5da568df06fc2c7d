"""Benchmark: a placeholder until the benchmark issue fills it in."""

from __future__ import annotations

import streamlit as st

from pages import common

common.require_shell()

st.title(":material/speed: Benchmark", anchor=False)
st.info("Coming soon: this page is being built.", icon=":material/construction:")
st.markdown(
    "The benchmark will measure how well and how fast the app answers over a collection: "
    "a set of questions with known answers is run through retrieval and the language model, "
    "and the page reports retrieval hit rate, answer quality, latency per stage and ingestion "
    "throughput, so configurations (embedding model, top-k, LLM, Milvus deployment) can be "
    "compared side by side."
)
st.caption("Until then, `python -m rag bench-ingest` measures ingestion speed from the command line.")
