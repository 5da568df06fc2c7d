"""LlamaIndex's Hugging Face embedding, able to compute in bfloat16 (imports torch: load lazily)."""

from __future__ import annotations

from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from pydantic import PrivateAttr


class LocalEmbedding(HuggingFaceEmbedding):
    """HuggingFaceEmbedding that can compute in bfloat16 on CPUs built for it."""

    _bf16: bool = PrivateAttr(default=False)

    def _embed(self, inputs, prompt_name=None):  # type: ignore[override]
        if not self._bf16:
            return super()._embed(inputs, prompt_name)
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super()._embed(inputs, prompt_name)

    @property
    def precision(self) -> str:
        return "bfloat16" if self._bf16 else "float32"
