"""How long saved conversations take to open and to list (the Chat page does both on load).

    .venv/bin/python scripts/bench_conversations.py [--turns 200] [--conversations 1000] [--uri PATH_OR_URL]

Writes, through `Rag`, one conversation of `--turns` turns (each answer ~600 characters with
4 sources of ~1,000 characters, as quoted answers have) and `--conversations` one-turn
conversations in another collection, into a fresh Milvus Lite file (or the Milvus at `--uri`);
then times opening the long one and listing the many, median of `--repeat` runs each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.answering.events import Citation
from rag.config import Settings
from rag.conversations import SavedTurn
from rag.service import Rag

PASSAGE = ("The pump's seal is checked every 500 hours; a worn seal shows as a drop in outlet pressure. " * 11)[:1000]


def turn(n: int) -> SavedTurn:
    sources = [Citation(file=f"manual-{i}.pdf", page=n % 40 + 1, score=0.6, text=PASSAGE, highlights=((0, 60),))
               for i in range(4)]
    return SavedTurn(question=f"Question {n}: how often is the seal checked?", answer=("Every 500 hours [1]. " * 30)[:600],
                     sources=sources, top_k=4)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--uri", help="a Milvus to use instead of a fresh Lite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"MILVUS_URI": args.uri} if args.uri else {}
        rag = Rag(Settings(RAG_DATA_DIR=Path(tmp), _env_file=None, **env))
        start = time.perf_counter()
        long = rag.conversations.new("bench_long", top_k=4)
        for n in range(args.turns):
            rag.conversations.save_turn(long, turn(n))
        write_long = time.perf_counter() - start
        start = time.perf_counter()
        for n in range(args.conversations):
            rag.conversations.save_turn(rag.conversations.new("bench_many"), turn(n))
        write_many = time.perf_counter() - start

        seconds, saved = timed(lambda: rag.conversations.get(long.id), args.repeat)
        assert len(saved.turns) == args.turns
        print(f"open a conversation of {args.turns} turns: {seconds * 1000:.0f} ms (median of {args.repeat}); "
              f"writing it took {write_long / args.turns * 1000:.1f} ms per turn")
        seconds, listed = timed(lambda: rag.conversations.list("bench_many"), args.repeat)
        assert len(listed) == args.conversations
        print(f"list {args.conversations} conversations: {seconds * 1000:.0f} ms (median of {args.repeat}); "
              f"writing them took {write_many / args.conversations * 1000:.1f} ms per conversation")
        rag.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
