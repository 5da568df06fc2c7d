"""The shared core of the document-chat app: settings, Milvus, ingestion, answers.

Pages and the CLI call `rag.service.Rag`; nothing here imports Streamlit.
"""

from rag.config import Settings
from rag.service import ChatSession, Rag

__all__ = ["ChatSession", "Rag", "Settings"]
