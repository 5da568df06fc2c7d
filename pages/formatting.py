"""Text for the page: what users and documents wrote stays text, figures read as words."""

from __future__ import annotations

import html
import re
from datetime import datetime

import streamlit as st

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$])")


def escape_markdown(text: str) -> str:
    """Backslash-escape markdown so a file name like `*notes*.md` shows as typed."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


def show_typed(text: str) -> None:
    """Show what a user typed exactly as typed: HTML-escaped, never parsed as markdown (where
    even escaped URLs are turned into links), line breaks kept."""
    st.html(f'<div class="typed-text" style="white-space: pre-wrap">{html.escape(text.strip())}</div>')


def safe_markdown(text: str) -> str:
    """Answer text for `st.markdown`: formatting kept, but no HTML, images or LaTeX.

    An answer may echo a document, and a document may hold `<script>`, a remote image that
    would be fetched, or dollar amounts Streamlit would typeset as math.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("$", r"\$").replace("![", r"!\[")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def local_time(iso: str) -> datetime | None:
    """A catalog timestamp (UTC, ISO) as naive local time for the table."""
    try:
        return datetime.fromisoformat(iso).astimezone().replace(tzinfo=None) if iso else None
    except ValueError:
        return None
