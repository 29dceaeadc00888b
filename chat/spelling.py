"""How alike a word is to the known words: the parser corrects a
misspelling only when one reading is clearly the closest (``chat.intent``)."""

from __future__ import annotations

import difflib

# Typo tolerance: a word is corrected when its closest known word is at
# least this alike (difflib ratio; shorter words need more), at most
# MAX_EDITS edits away, and no other reading within RIVAL_MARGIN of it is
# as few edits away; words alike from DOUBT up get a clarifying question
# with the candidates.
SURE, SURE_SHORT, DOUBT, DOUBT_SHORT, RIVAL_MARGIN = 0.8, 0.85, 0.7, 0.75, 0.08
MAX_EDITS = 2  # a candidate is at most this many edits away (1 for words of up to 4 letters)


def fuzzy_candidates(word: str, targets: list[str], cutoff: float = DOUBT) -> list[tuple[str, float]]:
    """Known words alike from ``cutoff`` up, the most alike first."""
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(word)
    scored = []
    for target in targets:
        matcher.set_seq1(target)
        if matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff:
            ratio = matcher.ratio()
            if ratio >= cutoff:
                scored.append((target, ratio))
    return sorted(scored, key=lambda pair: (-pair[1], pair[0]))[:3]


def edits(left: str, right: str) -> int:
    """Edits from one word to the other (insert, delete, substitute, swap two
    neighbours: optimal string alignment)."""
    previous2: list[int] = []
    previous = list(range(len(right) + 1))
    for i, a in enumerate(left, 1):
        row = [i]
        for j, b in enumerate(right, 1):
            cost = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a != b))
            if i > 1 and j > 1 and a == right[j - 2] and left[i - 2] == b:
                cost = min(cost, previous2[j - 2] + 1)
            row.append(cost)
        previous2, previous = previous, row
    return previous[-1]
