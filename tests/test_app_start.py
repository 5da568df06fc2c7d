"""The app's start-up through `AppTest`: each test on a data folder and environment of its own
(bad settings, a Milvus that cannot be reached, a first visit to an empty data folder)."""

from __future__ import annotations

import pytest

from tests.helpers import app_environment, free_port, new_app, open_page, plain


@pytest.mark.quick  # the core is never started
def test_bad_settings_are_one_readable_message(tmp_path_factory):
    for _ in app_environment(tmp_path_factory, start=False, MILVUS_URI="vectors", RAG_TOP_K="0"):
        at = new_app().run()
        assert not at.exception
        [error] = at.error
        assert "The configuration is invalid" in error.value
        assert "MILVUS_URI 'vectors': a Milvus Lite path must end in .db" in plain(error.value)
        assert "RAG_TOP_K: Input should be greater than or equal to 1" in plain(error.value)
        assert not at.title and not at.sidebar.children, "nothing else is shown"


@pytest.mark.quick  # no model is loaded, no Milvus is reached
def test_an_unreachable_milvus_is_one_readable_message(tmp_path_factory):
    port = free_port()
    for _ in app_environment(tmp_path_factory, MILVUS_URI=f"http://127.0.0.1:{port}"):
        at = new_app().run()
        assert not at.exception
        [error] = at.error
        assert f"cannot use Milvus server http://127.0.0.1:{port}" in plain(error.value) and "MILVUS_URI" in plain(error.value)
        assert not at.title, "no page is drawn without Milvus"
        assert "Milvus server" in at.sidebar.markdown[0].value, "the sidebar still says what the app uses"


def test_a_fresh_data_folder_leads_to_the_documents_page(tmp_path_factory):
    for _ in app_environment(tmp_path_factory):
        at = new_app().run()
        assert not at.exception
        assert at.title[0].value.endswith("Documents")
        assert any("Start here" in i.value for i in at.info)
        sidebar = "\n".join(m.value for m in at.sidebar.markdown)
        assert "Milvus Lite file" in sidebar and "all\\-MiniLM\\-L6\\-v2" in sidebar
        assert "**Answers**  \nquotes from your documents \\(no LLM\\)" in sidebar, "the sidebar says which mode answers"
        assert any("OPENAI_API_KEY" in i.value for i in at.sidebar.info), "the note says how to configure an LLM"
        assert at.selectbox(key="collection").value == "documents"
        uploader = at.file_uploader[0]
        assert uploader.accept_multiple_files and {".pdf", ".docx", ".md"} <= set(uploader.allowed_type)
        assert "200 MB" in at.caption[0].value

        open_page(at, "chat")
        assert not at.exception
        assert any("no documents" in i.value for i in at.info)
        link = at.get("page_link")[0].proto
        assert "Documents" in link.label
        assert at._registered_pages[link.page_script_hash]["url_pathname"] == "documents"
        assert at.chat_input[0].proto.disabled
