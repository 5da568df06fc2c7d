"""The browser app: `streamlit run app.py`. Navigation, sidebar, and a safety net for errors.

The pages are thin; the work is done by `rag` (one `Rag` and one job registry per process,
see `pages/common.py`).
"""

from __future__ import annotations

import streamlit as st

from pages import common
from rag.errors import RagError


def main() -> None:
    """The shell around every page: configuration, sidebar, navigation, then the page itself."""
    with common.shell_run():
        st.set_page_config(page_title="Document chat", page_icon=":material/forum:", layout="wide")
        rag = common.rag_or_stop()
        common.keep_widget_state("top_k", "retrieve_only")  # chat settings survive a visit to Documents
        common.sidebar(rag)
        page = st.navigation(_pages(rag), position="top")
        try:
            page.run()
        except RagError as exc:  # a user-ready message: say it, and nothing else
            st.error(str(exc), icon=":material/error:")
        except Exception as exc:  # a bug: the traceback goes to the server log, the user gets one line
            common.log.exception("page %s failed", page.title)
            st.error(f"Something went wrong ({type(exc).__name__}: {exc}). The details are in the server log.",
                     icon=":material/error:")


def _pages(rag) -> list:
    # A new visitor with nothing indexed lands on Documents; once there are documents, on Chat.
    # Decided once per browser session, so the page does not change under the user's feet.
    if "start_page" not in st.session_state:
        st.session_state["start_page"] = "chat" if common.has_indexed(rag, common.active_collection()) else "documents"
    start = st.session_state["start_page"]
    return [
        st.Page(common.DOCUMENTS_PAGE, title="Documents", icon=":material/folder_open:", url_path="documents",
                default=start == "documents"),
        st.Page(common.CHAT_PAGE, title="Chat", icon=":material/forum:", url_path="chat", default=start == "chat"),
        st.Page(common.BENCHMARK_PAGE, title="Benchmark", icon=":material/speed:", url_path="benchmark"),
    ]


if __name__ == "__main__":  # Streamlit runs this file as __main__; pages import it (see common.require_shell)
    main()
