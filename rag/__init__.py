"""The shared core of the document-chat app: settings, Milvus, ingestion, answers.

Pages and the CLI call `rag.service.Rag`; nothing here imports Streamlit. Submodules are
imported where used, so `python -m rag` starts fast for commands that need no model.
"""

from rag.config import import_pymilvus

import_pymilvus()  # before anything else imports it: see its docstring
