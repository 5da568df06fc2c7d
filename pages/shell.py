"""The shell around every page: sign-in, navigation, sidebar, and a safety net for errors.

`app.py` runs it; each page calls `require_shell()` first, for the one case where Streamlit
runs a page file on its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from pages import access, common, formatting, sidebar
from rag.errors import RagError

log = logging.getLogger("rag.app")


def main() -> None:
    """The shell around every page: configuration, sidebar, navigation, then the page itself."""
    with shell_run():
        access.require_password(common.settings_or_stop(), _pages())
        rag = common.rag_or_stop()
        common.keep_widget_state("top_k", "retrieve_only")  # chat settings survive a visit to Documents
        names = sidebar.collections_or_stop(rag)
        page = st.navigation(_pages(), position="top")
        # Before the sidebar: switching page after its collection picker is drawn leaves that
        # widget with a stale value (the first collection instead of the active one).
        if page.url_path == "":  # the root URL
            _route_home(rag)
        if page.url_path == "chat":
            common.collection_from_address(names)
        sidebar.show(rag, names, poll=page.url_path != "chat")
        # One call per run: answers read best in a narrow column, the library needs the width.
        st.set_page_config(layout="centered" if page.title == "Chat" else "wide")
        try:
            page.run()
        except RagError as exc:  # a user-ready message: say it, and nothing else
            st.error(formatting.escape_markdown(str(exc)), icon=":material/error:")
        except Exception as exc:  # a bug: the traceback goes to the server log, the user gets one line
            log.exception("page %s failed", page.title)
            what = formatting.escape_markdown(f"Something went wrong ({type(exc).__name__}: {exc}).")
            st.error(f"{what} The details are in the server log.", icon=":material/error:")


def _pages() -> list:
    """Every page has its own URL, so a deep link or a reload opens exactly that page. The root
    URL (`/`) is a hidden page that only routes: to Chat, or to Documents while nothing is indexed."""
    return [
        st.Page(common.DOCUMENTS_PAGE, title="Documents", icon=":material/folder_open:", url_path="documents"),
        st.Page(common.CHAT_PAGE, title="Chat", icon=":material/forum:", url_path="chat"),
        st.Page(common.BENCHMARK_PAGE, title="Benchmark", icon=":material/speed:", url_path="benchmark"),
        st.Page(_home, title="Document chat", url_path="home", default=True, visibility="hidden"),
    ]


def _home() -> None:
    """The root URL's page: never drawn, `main` routes away from it first."""


def _route_home(rag) -> None:
    """The root URL: Chat, or Documents when the active collection has nothing indexed yet."""
    try:
        empty = not common.has_indexed(rag, common.active_collection())
    except RagError:  # Milvus cannot be reached: Chat says so
        empty = False
    st.switch_page(common.DOCUMENTS_PAGE if empty else common.CHAT_PAGE)


_shell = threading.local()  # one script run is one thread: is app.py's shell running in it?


@contextmanager
def shell_run() -> Iterator[None]:
    _shell.active = True
    try:
        yield
    finally:
        _shell.active = False


def require_shell() -> None:
    """Make sure a page runs inside app.py's shell (sidebar, navigation); called first by each page.

    Because this folder is called `pages/`, Streamlit starts in its legacy mode, where each file
    here is a page of its own, and only leaves it when `st.navigation` is first called. If the
    very first request after start-up is a page URL (`/chat`), that page file runs alone; then
    the shell is run here, which calls `st.navigation` and renders the requested page inside.
    """
    if getattr(_shell, "active", False):
        return
    main()
    st.stop()
