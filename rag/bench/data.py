"""Synthetic nodes and queries for `python -m rag bench`, made as the async tutorial makes them.

`TextNode(id_=<16 random digits>, text="n{i}_text", embedding=[0.5] * 767 + [random()],
relationships={SOURCE: RelatedNodeInfo("n{i+1}")})`, and one query embedding `[0.5] * 767 + [0.6]`:
the same data as the tutorial, so its published figures compare with ours.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

DIM = 768


def random_id(rng: random.Random | None = None) -> str:
    rng = rng or random
    return "".join(str(rng.randint(0, 9)) for _ in range(16))


def produce_nodes(count: int, dim: int = DIM, rng: random.Random | None = None) -> list:
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    rng = rng or random
    return [
        TextNode(
            id_=random_id(rng),
            text=f"n{i}_text",
            embedding=[0.5] * (dim - 1) + [rng.random()],
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"n{i + 1}")},
        )
        for i in range(count)
    ]


def query_embedding(dim: int = DIM) -> list[float]:
    return [0.5] * (dim - 1) + [0.6]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """`items` cut into consecutive slices of `size` (the last one may be shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]
