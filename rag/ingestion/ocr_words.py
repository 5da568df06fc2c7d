"""OCR's misread words mended from the document's own words.

The recogniser (PP-OCRv4, trained on Chinese and English) confuses glyphs that look alike in
print: l, I and 1; O and 0; and the small and capital forms of c, o, s, u, v, w, x, z, k, p
("AsCll" for ASCII, "MUsT", "deScription", "B00LEAN"); and it drops the space between two
words ("ofthe", "afile"). A question then misses the passage for the one word it is about:
BM25 and the quoted answers need that word as printed.

There is no dictionary offline that knows a document's identifiers, but the document itself
usually prints each word right most of the times it occurs. So a word changes only into a form
the same document prints more often, or by a rule that needs no guess:

- A look-alike form (any of the confusions above; the case of a first letter alone never counts,
  so a capital at the start of a sentence stays) that the document prints at least twice and
  more often than the word as read replaces it ("asnl" -> "asn1", "AsCll" -> "ASCII" where
  ASCII is printed; "oidValue" stays, since "oidvalue" is rarer).
- A word of four letters or more, read at most twice so, with at least two capitals and only
  look-alike small letters, is in capitals ("AUToMATIC", "FiNiSH", "AsCll"); an acronym's
  plural ("APIs") and short ones ("GiB", "IPv4") are left alone.
- Digits with o or O among them are digits ("1oo" -> "100").
- A word the document hardly knows (printed at most twice, not English) is parted into the
  likeliest run of words it does know, when every break is next to a function word ("afile" ->
  "a file", "MUsTmatch" -> "MUST match") or it is a run of several words of a sentence; a word
  it prints more often but that is not English only where it prints the two words apart three
  times as often, or after "the" or "an" as often ("thefile"). Compounds ("filename") and
  affixes ("in|ode") are never parted.
  English here is the whole words of the embedding model's vocabulary.
- Two neighbours, one of them a fragment the document does not know, that it prints joined at
  least twice are joined ("SEQUENC E" -> "SEQUENCE": a stray space put in from the pixels).

Words read wrong every time ("deflatelnit" on every page) have no right form to go by and stay
as read. Only letters change or a space is added or removed, so a passage found in the text is
still found on the page's lines (`passage_boxes` compares letters and digits only).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import cache
from itertools import pairwise, product
from pathlib import Path

WORD = re.compile(r"[A-Za-z0-9]+")
BROKEN_END = re.compile(r"([A-Za-z]+)([^A-Za-z0-9]*)")
LOOK_ALIKE_CASE = "cosuvwxzkp"
LOOK_ALIKE = {"l": "I1", "I": "l1", "1": "lI", "O": "0o", "0": "Oo"}
for _small in LOOK_ALIKE_CASE:
    LOOK_ALIKE[_small] = LOOK_ALIKE.get(_small, "") + _small.upper()
    LOOK_ALIKE[_small.upper()] = LOOK_ALIKE.get(_small.upper(), "") + _small
SMALL_IN_CAPITALS = set(LOOK_ALIKE_CASE) | {"i", "l"}
MAX_VARIANTS = 256  # a long word with many look-alike letters is left alone
MIN_WORD = 3
MIN_SPLIT = 4
MAX_PART = 24
SPACED_SHARE = 3
ARTICLES = frozenset({"the", "an"})
MIN_RUN = 4  # parts of a run of prose, which may hold a word read wrong
FUNCTION_WORDS = frozenset("""a about above after all also an and any are as at be because been being between both but by
can could did do does each either for from had has have he her his how i if in into is it its may might more most must
no nor not of on one only or other our out over should so some such than that the their them then there these they
this those through to under up upon was we were what when where whether which while who will with within without
would you your""".split())
# Function words that also begin or end other words: no break after a prefix ("in|ode") or before a suffix ("plug|in")
PREFIXES = frozenset({"i", "in", "on", "be", "over", "under", "out", "up", "do", "no"})
SUFFIXES = frozenset({"a", "i", "in", "on", "up", "out", "it", "or", "no", "if", "as", "is", "so", "do", "be", "all", "one"})


def mend_texts(pages: Sequence[Sequence[str]], known: Sequence[str] = ()) -> list[list[str]]:
    """Each page's lines with misread words mended (same shape as `pages`). `known`: more of the
    document's text, not read by OCR (a mixed PDF's pages with a text layer): its words count
    as the document's, and are not changed."""
    lines = [WORD.findall(line) for page in pages for line in page] + [WORD.findall(text) for text in known]
    document = Document(Counter(w for words in lines for w in words),
                        Counter(f"{a} {b}".lower() for words in lines for a, b in pairwise(words)))
    fixes = {word: fixed for word in document.words if (fixed := document.mend(word)) != word}
    return [[WORD.sub(lambda m: fixes.get(m.group(0), m.group(0)), document.join(line)) for line in page] for page in pages]


class Document:
    """A document's words as read, and how often each is printed."""

    def __init__(self, words: Counter[str], pairs: Counter[str] | None = None) -> None:
        self.words = words
        self.pairs = pairs or Counter()  # two neighbouring words, in small letters
        self.total = sum(words.values()) or 1
        self.lower: Counter[str] = Counter()
        for word, count in words.items():
            self.lower[word.lower()] += count

    def join(self, line: str) -> str:
        """`line` with words broken by a stray space made whole: two neighbours, one of them not a
        word the document knows, that the document prints joined at least twice ("SEQUENC E",
        "man agement")."""
        tokens = line.split(" ")
        out: list[str] = []
        for token in tokens:
            left = out[-1] if out else ""
            right = BROKEN_END.fullmatch(token)
            if right and left.isalpha() and left.isascii():
                joined = left + right.group(1)
                if self.words[joined] >= 2 and not (self.trusted(left.lower()) and self.trusted(right.group(1).lower())):
                    out[-1] = joined + right.group(2)
                    continue
            out.append(token)
        return " ".join(out)

    def mend(self, word: str) -> str:
        """`word` as the document prints it most often (see the module's rules), or unchanged."""
        if len(word) < MIN_WORD or word.isdigit():
            return word
        if any(c.isdigit() for c in word) and set(c for c in word if not c.isdigit()) <= {"o", "O"}:
            return word.replace("o", "0").replace("O", "0")
        fixed = self.look_alike(word)
        if fixed == word:
            parts = self.split(word)
            if len(parts) > 1:
                return " ".join(self.look_alike(part) if len(part) >= MIN_WORD else part for part in parts)
        return fixed

    def look_alike(self, word: str) -> str:
        """`word` with look-alike letters put right (the first two rules), or unchanged."""
        best, best_count = word, max(self.words[word], 1)
        for variant in _variants(word):
            if self.words[variant] >= 2 and self.words[variant] > best_count:
                best, best_count = variant, self.words[variant]
        if best != word:
            return best
        letters = [c for c in word if c.isalpha()]
        capitals = sum(c.isupper() for c in letters)
        small = [c for c in letters if c.islower()]
        plural = word.endswith("s") and len(small) == 1
        if (small and set(small) <= SMALL_IN_CAPITALS and not plural and capitals >= 2 and len(letters) >= 4
                and self.words[word] <= 2):
            return word.replace("l", "I").upper()
        return word

    def split(self, word: str) -> list[str]:
        """`word` parted into the words it runs together, or `[word]`. A word the document hardly
        knows (printed at most twice, not English) is parted into its likeliest sequence of words
        (Norvig's segmentation with the document's frequencies), kept when every part is known
        and every break is at a function word ("of|the", "file|with"), or when it is a run of
        four words or more with half its breaks there (a sentence, which may hold a word read
        wrong: "of|the|file|for|ASCll|control|characters"). A word it knows but that is not
        English is parted only as `split_pair` says. Compounds ("file|name") and affixes stay whole."""
        lower = word.lower()
        if len(word) < MIN_SPLIT or not word.isalpha() or word.isupper():
            return [word]
        if lower in english_words():
            return [word]
        if self.trusted(lower):
            return self.split_pair(word)
        best: list[tuple[float, int]] = [(0.0, 0)]  # best[i]: score of lower[:i], start of its last part
        for end in range(1, len(lower) + 1):
            best.append(max(((best[start][0] + self.log_p(lower[start:end]), start)
                             for start in range(max(0, end - MAX_PART), end)
                             if self.is_part(lower[start:end]) and not _inside_capitals(word, start)
                             and not _inside_capitals(word, end)), default=(-math.inf, 0)))
        if best[-1][0] == -math.inf:
            return [word]
        cuts, end = [], len(lower)
        while end > 0:
            cuts.append(end)
            end = best[end][1]
        bounds = [0, *sorted(cuts)]
        parts = [lower[a:b] for a, b in pairwise(bounds)]
        breaks = [_function_break(left, right) for left, right in pairwise(parts)]
        prose = len(parts) >= MIN_RUN and 2 * sum(breaks) >= len(breaks)  # a run of several words of a sentence
        if len(parts) < 2 or not (all(breaks) or prose) or (not prose and not all(map(self.trusted_part, parts))):
            return [word]
        return [piece for a, b in pairwise(bounds) for piece in self.split_pair(word[a:b])]

    def split_pair(self, word: str) -> list[str]:
        """A word the document prints more than twice but that is not English, parted in two only
        where the document prints the two words apart, at a function word, three times as often
        as joined ("thefile", read so again and again; "maybe" is English and stays)."""
        lower, count = word.lower(), self.lower[word.lower()]
        if count == 0 or lower in english_words():
            return [word]
        for i in range(1, len(word)):
            left, right = lower[:i], lower[i:]
            # After an article, as often apart as joined is enough: no name starts with "the" + a word.
            share = 1 if left in ARTICLES and right in english_words() else SPACED_SHARE
            if _function_break(left, right) and self.pairs[f"{left} {right}"] >= share * count:
                return [word[:i], word[i:]]
        return [word]

    def trusted(self, word: str) -> bool:
        """Printed more than twice, or English: not itself a misreading (a letter alone is not a word)."""
        return word in ("a", "i") or (len(word) > 1 and (self.lower[word] > 2 or word in english_words()))

    def is_part(self, word: str) -> bool:
        return word in FUNCTION_WORDS or len(word) >= MIN_WORD

    def trusted_part(self, word: str) -> bool:
        return word in FUNCTION_WORDS or (len(word) >= MIN_WORD and self.trusted(word))

    def log_p(self, word: str) -> float:
        """Log probability of a word: by its frequency if trusted, else as an unknown word of its
        length (Norvig's 10 / (N * 10^length))."""
        return math.log((self.lower[word] + 1) / self.total) if self.trusted_part(word) else self.unknown(len(word))

    def unknown(self, length: int) -> float:
        return math.log(10 / self.total) - length * math.log(10)


def _function_break(left: str, right: str) -> bool:
    """A break between two words is next to a function word that is not also an affix ("of|the",
    "file|with"; not "in|ode" or "plug|in")."""
    return (left in FUNCTION_WORDS and left not in PREFIXES) or (right in FUNCTION_WORDS and right not in SUFFIXES)


def _inside_capitals(word: str, i: int) -> bool:
    """A break before `word[i]` would part two capitals ("AS|Cll")."""
    return 0 < i < len(word) and word[i - 1].isupper() and word[i].isupper()


def _variants(word: str) -> Iterator[str]:
    """`word` with look-alike letters swapped; a first letter's case alone is never a variant."""
    options = [[c, *LOOK_ALIKE.get(c, "")] for c in word]
    total = math.prod(len(choice) for choice in options)
    if total > MAX_VARIANTS:
        return
    for letters in product(*options):
        variant = "".join(letters)
        first_case_only = variant[1:] == word[1:] and variant[0].lower() == word[0].lower()
        if variant != word and not first_case_only:
            yield variant


@cache
def english_words() -> frozenset[str]:
    """Whole English words of the packaged embedding model's vocabulary (empty if it is absent)."""
    from rag.models.embeddings import resolve_model_path

    try:
        lines = (Path(resolve_model_path("all-minilm-l6-v2")) / "vocab.txt").read_text(encoding="utf-8").split()
    except (OSError, ImportError):
        return frozenset()
    return frozenset(w for w in lines if w.isascii() and w.isalpha() and len(w) > 1) | {"a", "i"}
