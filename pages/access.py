"""The optional app password (`RAG_APP_PASSWORD`): sign in before any page runs, sign out."""

from __future__ import annotations

import logging
import threading
import time

import streamlit as st

from rag.config import Settings

log = logging.getLogger("rag.app")

FAILED_SIGN_IN_DELAY = 1.0  # seconds: makes guessing slow without bothering a user who mistyped
_failed_sign_ins = threading.Lock()  # one wrong attempt per delay for the whole process, not per session


def require_password(settings: Settings, pages: list) -> None:
    """With `RAG_APP_PASSWORD` set, a session sees nothing but the sign-in form until it gives it.

    The pages are registered, so any page URL resolves (and is shown once signed in), but none
    of them runs before that.
    """
    if not settings.password_required or st.session_state.get("signed_in"):
        return
    st.navigation(pages, position="hidden")
    _sign_in(settings)
    st.stop()


def _sign_in(settings: Settings) -> None:
    st.title(":material/lock: Document chat", anchor=False)
    with st.form("sign-in", clear_on_submit=True, enter_to_submit=True):
        attempt = st.text_input("Password", type="password", placeholder="The password set in RAG_APP_PASSWORD")
        submitted = st.form_submit_button("Sign in", icon=":material/login:", type="primary")
    if not submitted:
        return
    if settings.password_matches(attempt):
        st.session_state["signed_in"] = True
        st.rerun()
    log.warning("a wrong app password was entered (from %s)", st.context.ip_address or "unknown address")
    with _failed_sign_ins:  # many sessions guessing in parallel still wait their turn
        time.sleep(FAILED_SIGN_IN_DELAY)
    st.error("Wrong password.", icon=":material/key_off:")


def sign_out() -> None:
    for value in list(st.session_state.values()):  # work this session started (a benchmark run) stops
        stop = getattr(value, "stop_event", None)
        if isinstance(stop, threading.Event):
            stop.set()
    for key in list(st.session_state.keys()):  # history and choices go too: the next person starts from nothing
        del st.session_state[key]
    st.session_state["signed_in"] = False
