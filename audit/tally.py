"""Running totals of audit results, kept small whatever the number of pairs: what the report
and the summary need, gathered row by row from ``results.jsonl`` without holding it."""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field

P_YES_BINS = 10
MAX_FLAGGED = 200  # per question: the highest P(yes) kept for the report
MAX_ERROR_ROWS = 200


@dataclass
class QuestionTally:
    """Totals of one question."""

    pairs: int = 0
    errors: int = 0
    answers: Counter = field(default_factory=Counter)
    p_yes_bins: list[int] = field(default_factory=lambda: [0] * P_YES_BINS)
    p_yes_sum: float = 0.0
    p_yes_n: int = 0
    flagged: int = 0
    # (p_yes, order, row) min-heap of the MAX_FLAGGED highest flagged rows
    top_flagged: list = field(default_factory=list)

    @property
    def mean_p_yes(self) -> float | None:
        return self.p_yes_sum / self.p_yes_n if self.p_yes_n else None

    def flagged_rows(self) -> list[dict]:
        """The kept flagged rows, highest P(yes) first."""
        return [row for _, _, row in sorted(self.top_flagged, key=lambda t: (-t[0], -t[1]))]


class Tally:
    """Add result rows one by one; read per-question totals, flagged rows and errors.

    >>> tally = Tally(threshold=0.5)
    >>> for row in rows: tally.add(row)
    >>> tally.questions["Is it a pirate?"].flagged
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.questions: dict[str, QuestionTally] = {}
        self.pairs = 0
        self.error_causes: Counter = Counter()
        self.error_rows: list[dict] = []
        self._order = 0

    def add(self, row: dict) -> None:
        q = self.questions.setdefault(row["question"], QuestionTally())
        self.pairs += 1
        q.pairs += 1
        if row.get("error"):
            q.errors += 1
            self.error_causes[row["error"]] += 1
            if len(self.error_rows) < MAX_ERROR_ROWS:
                self.error_rows.append(row)
            return
        q.answers[row.get("answer") or ""] += 1
        p = row.get("p_yes")
        if p is None:
            return
        q.p_yes_bins[min(int(p * P_YES_BINS), P_YES_BINS - 1)] += 1
        q.p_yes_sum += p
        q.p_yes_n += 1
        if p >= self.threshold:
            q.flagged += 1
            self._order += 1
            item = (p, -self._order, row)
            if len(q.top_flagged) < MAX_FLAGGED:
                heapq.heappush(q.top_flagged, item)
            elif item[:2] > q.top_flagged[0][:2]:
                heapq.heapreplace(q.top_flagged, item)

    @property
    def errors(self) -> int:
        return sum(self.error_causes.values())

    @property
    def flagged(self) -> int:
        return sum(q.flagged for q in self.questions.values())
