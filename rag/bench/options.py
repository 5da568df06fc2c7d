"""What `python -m rag bench` and the Benchmark page measure: options, their parsing, the plan size.

No I/O: the CLI parses its flags here and the page its fields, so both reject the same inputs with
the same one-line `ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, get_args

from rag.config import ConsistencyLevel
from rag.errors import ConfigError

# The levels the settings accept (`MILVUS_CONSISTENCY_LEVEL`), in the same order.
CONSISTENCY_LEVELS: tuple[str, ...] = get_args(ConsistencyLevel)
DEFAULT_COUNTS = (10, 100, 1000)
DEFAULT_BATCH_SIZE = 100  # LlamaIndex's own default insert batch
DEFAULT_SEARCH_ROWS = 1000
DEFAULT_OVERHEAD_CALLS = 100
MAX_COUNT = 100_000
OPERATIONS = ("add", "search", "overhead")


@dataclass(frozen=True)
class BenchOptions:
    """What to measure. `concurrency=None`: every async call in flight at once (the tutorial)."""

    counts: tuple[int, ...] = DEFAULT_COUNTS
    consistency: tuple[str, ...] = ("Strong",)
    concurrency: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    batched: bool = True  # also the batched insert modes
    operations: tuple[str, ...] = OPERATIONS
    search_rows: int = DEFAULT_SEARCH_ROWS
    overhead_calls: int = DEFAULT_OVERHEAD_CALLS

    def __post_init__(self) -> None:
        if not self.counts:
            raise ConfigError("give at least one count")
        for count in self.counts:
            if not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
                raise ConfigError(f"counts must be whole numbers from 1 to {MAX_COUNT}, not {count!r}")
        if not self.consistency:
            raise ConfigError("give at least one consistency level")
        object.__setattr__(self, "consistency", tuple(parse_consistency(c) for c in self.consistency))
        if self.concurrency is not None and not (isinstance(self.concurrency, int) and self.concurrency >= 1):
            raise ConfigError(f"concurrency must be a whole number >= 1 (or none: unlimited), not {self.concurrency!r}")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= MAX_COUNT:
            raise ConfigError(f"batch size must be a whole number from 1 to {MAX_COUNT}, not {self.batch_size!r}")
        unknown = [op for op in self.operations if op not in OPERATIONS]
        if unknown or not self.operations:
            raise ConfigError(f"operations must be among {', '.join(OPERATIONS)}, not {unknown or 'none'}")
        if not 1 <= self.search_rows <= MAX_COUNT:
            raise ConfigError(f"search rows must be from 1 to {MAX_COUNT}, not {self.search_rows}")
        if not 1 <= self.overhead_calls <= MAX_COUNT:
            raise ConfigError(f"overhead calls must be from 1 to {MAX_COUNT}, not {self.overhead_calls}")


def parse_consistency(value: str) -> str:
    """A level in any case ('strong') as Milvus spells it ('Strong')."""
    for level in CONSISTENCY_LEVELS:
        if value.strip().lower() == level.lower():
            return level
    raise ConfigError(f"unknown consistency level {value!r}: choose from {', '.join(CONSISTENCY_LEVELS)}")


def parse_counts(text: str, label: str = "--counts") -> tuple[int, ...]:
    """'10,100,1000' (or spaces, semicolons) -> (10, 100, 1000), repeats dropped.

    `label` names the input in errors: the CLI option, or the page's field.
    """
    parts = [p for p in re.split(r"[,;\s]+", str(text or "")) if p]
    if not parts:
        raise ConfigError(f"{label} needs at least one count, e.g. 10,100,1000")
    counts = []
    for part in parts:
        try:
            count = int(part.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{label}: {part!r} is not a whole number (e.g. 10,100,1000)") from None
        if not 1 <= count <= MAX_COUNT:
            raise ConfigError(f"{label}: {count} is out of range (1 to {MAX_COUNT:,})")
        counts.append(count)
    return tuple(dict.fromkeys(counts))


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if not minimum <= number <= MAX_COUNT:
        raise ConfigError(f"{name} must be between {minimum} and {MAX_COUNT}, not {number}")
    return number


def options_from_args(
    counts: str | None = None,
    consistency: Iterable[str] | None = None,
    concurrency: str | int | None = None,
    batch_size: str | int | None = None,
) -> BenchOptions:
    """BenchOptions from command-line style strings; ConfigError with a one-line message if bad."""
    levels: list[str] = []
    for item in consistency or ["Strong"]:
        levels += [parse_consistency(part) for part in str(item).split(",") if part.strip()]
    limit = None if concurrency in (None, "") else _positive_int("--concurrency", concurrency, 0)
    return BenchOptions(
        counts=parse_counts(counts) if counts is not None else DEFAULT_COUNTS,
        consistency=tuple(dict.fromkeys(levels)) or ("Strong",),
        concurrency=limit or None,  # 0: unlimited
        batch_size=_positive_int("--batch-size", batch_size) if batch_size not in (None, "") else DEFAULT_BATCH_SIZE,
    )


def planned_measurements(options: BenchOptions) -> int:
    """How many records a full run of `options` emits (for a progress bar)."""
    per_level = 0
    counts = len(options.counts)
    if "add" in options.operations:
        per_level += counts * (4 if options.batched else 2)
    if "search" in options.operations:
        per_level += 2 * counts
    if "overhead" in options.operations:
        per_level += 2
    return per_level * len(options.consistency)
