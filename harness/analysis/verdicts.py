"""A speed verdict between two configurations: paired by round where they shared rounds,
three outcomes against the declared margin, each in its own words.

    "jax step is 1.8x faster than torch eager (1.6-2.0, 5 rounds)"
    "jax step and torch eager within 5% (0.97-1.03, 5 rounds)"
    "jax step against torch eager undecided (0.92-1.30, 5 rounds): about 6 more rounds would decide it"

The interval says how it was made: "5 rounds" (paired, the default under the driver) or
"unpaired, 4 and 5 trials" (where the two shared fewer than MIN_PAIRED_ROUNDS rounds).
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.analysis import stats
from harness.analysis.trials import Configuration


@dataclass(frozen=True)
class Verdict:
    """x against y. kind: "faster" | "slower" | "within" | "undecided" | "too few"; ratio: x's speed over y's."""
    kind: str
    x: Configuration
    y: Configuration
    ratio: stats.Ratio
    margin: float
    more_rounds: int | None  # for "undecided": the rounds that would likely decide it; None: too many to say
    text: str

    @property
    def decided(self) -> bool:
        """Whether more rounds are pointless: a driver stops when every verdict is decided."""
        return self.kind in ("faster", "slower", "within")


# Pair by round from this many shared rounds: below it a paired t interval has 2 degrees of
# freedom (t = 4.3 at 95%, 9.9 at 99%), wider than the unpaired one over all the trials.
MIN_PAIRED_ROUNDS = 4


def ratio(x: Configuration, y: Configuration, confidence: float = stats.CONFIDENCE) -> stats.Ratio:
    """x's speed over y's: paired over the rounds both ran in when they shared MIN_PAIRED_ROUNDS,
    else unpaired over all their trials (the choice never looks at the times)."""
    x_rounds, y_rounds = x.by_block(), y.by_block()
    shared = [b for b in x_rounds if b in y_rounds]
    if len(shared) >= MIN_PAIRED_ROUNDS:
        return stats.paired_ratio([x_rounds[b] for b in shared], [y_rounds[b] for b in shared], confidence)
    return stats.unpaired_ratio(x.times, y.times, confidence)


def ratio_texts(*ratios: float) -> list[str]:
    """The ratios with the decimals that give each 2-3 significant digits: 0.94, 1.31, 1.8, 12."""
    smallest = min(ratios)
    decimals = 2 if smallest < 1.5 else 1 if smallest < 10 else 0
    return [f"{r:.{decimals}f}" for r in ratios]


def how(r: stats.Ratio, x: Configuration, y: Configuration) -> str:
    """'5 rounds' or 'unpaired, 4 and 5 trials': how an interval was made."""
    if r.paired:
        return f"{r.n} round{'s' * (r.n != 1)}"
    return f"unpaired, {len(x.trials)} and {len(y.trials)} trials"


def interval_text(r: stats.Ratio, x: Configuration, y: Configuration) -> str:
    """'(0.97-1.03, 5 rounds)'."""
    low, high = ratio_texts(r.low, r.high)
    return f"({low}-{high}, {how(r, x, y)})"


def verdict(x: Configuration, y: Configuration, margin: float = stats.MARGIN,
            confidence: float = stats.CONFIDENCE, name_x: str | None = None, name_y: str | None = None) -> Verdict:
    """x against y at this confidence (1 - ALPHA/k for one of k comparisons in a table)."""
    name_x, name_y = name_x or x.label, name_y or y.label
    r = ratio(x, y, confidence)
    kind = stats.verdict_kind(r, margin)
    more = stats.more_rounds(r, margin) if kind == "undecided" else None
    if kind == "too few":
        have = f"{r.n} shared rounds" if r.paired else f"{len(x.trials)} and {len(y.trials)} trials"
        text = f"{name_x} against {name_y}: {have}, no verdict ({stats.MIN_TRIALS} needed)"
    elif kind in ("faster", "slower"):
        faster, slower, k = (name_x, name_y, r) if kind == "faster" else (name_y, name_x, r.inverse)
        estimate, low, high = ratio_texts(k.estimate, k.low, k.high)
        text = f"{faster} is {estimate}x faster than {slower} ({low}-{high}, {how(r, x, y)})"
    elif kind == "within":
        text = f"{name_x} and {name_y} within {margin:.0%} {interval_text(r, x, y)}"
    else:
        rounds = (f"about {more} more round{'s' * (more != 1)} would decide it" if more
                  else f"more than {stats.MAX_MORE_ROUNDS} more rounds would be needed to decide it")
        text = f"{name_x} against {name_y} undecided {interval_text(r, x, y)}: {rounds}"
    return Verdict(kind, x, y, r, margin, more, text)


def family(fastest: Configuration, rivals: list[Configuration], margin: float = stats.MARGIN,
           alpha: float = stats.ALPHA) -> list[Verdict]:
    """The fastest against each rival, corrected together (Bonferroni: each at 1 - alpha/k), so
    that the family's chance of any false verdict is at most alpha."""
    confidence = 1 - alpha / max(len(rivals), 1)
    return [verdict(fastest, r, margin, confidence) for r in rivals]

