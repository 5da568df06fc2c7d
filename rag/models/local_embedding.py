"""LlamaIndex's Hugging Face embedding, able to compute in bfloat16 (imports torch: load lazily)."""

from __future__ import annotations

import copy
from typing import Any

from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from pydantic import PrivateAttr


class LocalEmbedding(HuggingFaceEmbedding):
    """HuggingFaceEmbedding that can compute in bfloat16 on CPUs built for it."""

    _bf16: bool = PrivateAttr(default=False)
    _counter: Any = PrivateAttr(default=None)

    def _embed(self, inputs, prompt_name=None):  # type: ignore[override]
        if not self._bf16:
            return super()._embed(inputs, prompt_name)
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super()._embed(inputs, prompt_name)

    @property
    def precision(self) -> str:
        return "bfloat16" if self._bf16 else "float32"

    def dimension(self) -> int:
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(get_dim())

    @property
    def chunk_tokens(self) -> int:
        return int(self._model.max_seq_length)

    def count_tokens(self, text: str) -> list[int]:
        """Word pieces of `text`, with a copy of the tokenizer: files are parsed in worker threads
        while the model embeds, and a fast tokenizer used from two threads can lose the padding
        setting of a batch ("Unable to create tensor ..."), which fails the ingestion."""
        if self._counter is None:  # the fast tokenizer itself: no Python layer around each call
            counter = copy.deepcopy(self._model.tokenizer.backend_tokenizer)
            counter.no_truncation()
            counter.no_padding()
            self._counter = counter
        return self._counter.encode(text, add_special_tokens=False).ids
