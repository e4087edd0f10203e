"""A speed verdict between two configurations: paired by round where they shared rounds,
three outcomes against the declared margin, each in its own words.

    "jax step is 1.8x faster than torch eager (1.6-2.0, 5 rounds)"
    "jax step and torch eager within 5% (0.97-1.03, 5 rounds)"
    "jax step against torch eager undecided (0.92-1.30, 5 rounds): about 6 more rounds would decide it"

The interval says how it was made: "5 rounds" (paired, the default under the driver) or
"unpaired, 4 and 5 trials" (where the two shared fewer than MIN_PAIRED_ROUNDS rounds).

One family is one question of a table (a profile's fastest against its k rivals): at most ALPHA
chance of any false verdict in it. So a comparison may make a false "faster" or "slower" at
ALPHA / 2k a side, and a false "within" at ALPHA / k (two one-sided tests, so its interval is
at 1 - 2 ALPHA / k), each spent over the driver's looks (harness.analysis.sequential) and judged
at the level of the drive's last look, the one it stopped at. A control is a family of one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from harness.analysis import sequential, stats
from harness.analysis.trials import Configuration


@dataclass(frozen=True)
class Level:
    """The one-sided error rates a verdict may spend at its look: `directional` on each side
    ("faster" or "slower" beyond the margin), `equivalence` on each bound of "within" (TOST)."""
    directional: float
    equivalence: float


@dataclass(frozen=True)
class Verdict:
    """x against y. kind: "faster" | "slower" | "within" | "undecided" | "too few"; ratio: x's speed over y's,
    its interval the directional one (1 - 2 level.directional); equivalence: the same at 1 - 2 level.equivalence."""
    kind: str
    x: Configuration
    y: Configuration
    ratio: stats.Ratio
    margin: float
    more_rounds: int | None  # for "undecided": the rounds that would decide it at POWER; None: too many to say
    text: str
    equivalence: stats.Ratio | None = None
    level: Level | None = None
    long_shot: int | None = None  # for "undecided": the more rounds that would give it even a 1-in-5 chance
    could_see: float = math.nan  # the smallest ratio its rounds and spread would have found at POWER

    @property
    def decided(self) -> bool:
        """Whether more rounds are pointless: a driver stops when every verdict is decided."""
        return self.kind in ("faster", "slower", "within")

    @property
    def shown(self) -> stats.Ratio:
        """The interval the verdict was made from: the equivalence one for "within"."""
        return self.equivalence if self.kind == "within" and self.equivalence else self.ratio


# Pair by round from this many shared rounds. Below it the paired t has 2 degrees of freedom (t = 4.3
# at 95%), and Welch's interval over all the trials is the stronger at the round effects these
# machines show: with 3 of 4 rounds shared and a round effect 37% of the variance (the CPU archive's
# matrix), Welch finds a true 1.3x in 51% of runs and the paired t in 41%; at 4 shared rounds the
# two tie there, and at the main job's round effect (75%) pairing finds it in 70% against Welch's 30%
# (tests/test_stats.py). The interval says which it is ("unpaired, 4 and 3 trials").
MIN_PAIRED_ROUNDS = 4


def ratio(x: Configuration, y: Configuration, confidence: float = stats.CONFIDENCE) -> stats.Ratio:
    """x's speed over y's: paired over the rounds both ran in when they shared MIN_PAIRED_ROUNDS,
    else unpaired over all their trials (the choice never looks at the times)."""
    x_rounds, y_rounds = x.by_block(), y.by_block()
    shared = [b for b in x_rounds if b in y_rounds]
    if len(shared) >= MIN_PAIRED_ROUNDS:
        return stats.paired_ratio([x_rounds[b] for b in shared], [y_rounds[b] for b in shared], confidence)
    return stats.unpaired_ratio(x.times, y.times, confidence)


def looks(x: Configuration, y: Configuration) -> tuple[sequential.Look, ...]:
    """The stopping rule's looks the drive took up to the last round either ran in (none: a fixed count)."""
    planned = x.planned_by_round() | y.planned_by_round()
    return sequential.looks(planned, max(planned, default=0))


def level(alpha: float, k: int, taken: tuple[sequential.Look, ...]) -> Level:
    """One of k comparisons of a family at alpha, at the last of these looks: a false "faster" or
    "slower" at alpha / 2k a side, a false "within" at alpha / k (Bonferroni over the family)."""
    return Level(sequential.level(alpha / (2 * k), taken), sequential.level(alpha / k, taken))


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


def verdict(x: Configuration, y: Configuration, margin: float = stats.MARGIN, alpha: float = stats.ALPHA,
            k: int = 1, name_x: str | None = None, name_y: str | None = None) -> Verdict:
    """x against y as one of k comparisons of a family at alpha, at the level of the drive's last look."""
    name_x, name_y = name_x or x.label, name_y or y.label
    taken = looks(x, y)
    at = level(alpha, k, taken)
    r = ratio(x, y, 1 - 2 * at.directional)
    equivalence = r.at(1 - 2 * at.equivalence) if r.known else r
    kind = stats.verdict_kind(r, margin, equivalence)

    def level_at(rounds: int, within: bool) -> float:  # as a drive that planned that many rounds would judge
        one_sided = alpha / k if within else alpha / (2 * k)
        return sequential.planned_level(one_sided, rounds) if taken else one_sided
    more = stats.more_rounds(r, margin, level_at, stats.POWER) if kind == "undecided" else None
    long_shot = stats.more_rounds(r, margin, level_at, stats.LONG_SHOT) if kind == "undecided" else None
    if kind == "too few":
        have = f"{r.n} shared rounds" if r.paired else f"{len(x.trials)} and {len(y.trials)} trials"
        text = f"{name_x} against {name_y}: {have}, no verdict ({stats.MIN_TRIALS} needed)"
    elif kind in ("faster", "slower"):
        faster, slower, fold = (name_x, name_y, r) if kind == "faster" else (name_y, name_x, r.inverse)
        estimate, low, high = ratio_texts(fold.estimate, fold.low, fold.high)
        text = f"{faster} is {estimate}x faster than {slower} ({low}-{high}, {how(r, x, y)})"
    elif kind == "within":
        text = f"{name_x} and {name_y} within {margin:.0%} {interval_text(equivalence, x, y)}"
    else:
        rounds = (f"about {more} more round{'s' * (more != 1)} would decide it" if more
                  else f"more than {stats.MAX_MORE_ROUNDS} more rounds would be needed to decide it")
        text = f"{name_x} against {name_y} undecided {interval_text(r, x, y)}: {rounds}"
    could_see = stats.could_see(r.unit_se, r.n, r.df, at.directional, margin)
    return Verdict(kind, x, y, r, margin, more, text, equivalence, at, long_shot, could_see)


def family(fastest: Configuration, rivals: list[Configuration], margin: float = stats.MARGIN,
           alpha: float = stats.ALPHA) -> list[Verdict]:
    """The fastest against each rival, corrected together (Bonferroni over the k rivals), so that
    the family's chance of any false verdict is at most alpha."""
    return [verdict(fastest, r, margin, alpha, max(len(rivals), 1)) for r in rivals]


def could_see_text(verdicts: list[Verdict]) -> str | None:
    """'this run could see differences of 1.18x or more (8 rounds, 80% power); 1.45x against keras fit':
    what an "undecided" of these verdicts still rules out (None where none has a spread)."""
    seen = [v for v in verdicts if not math.isnan(v.could_see)]
    if not seen:
        return None
    best, worst = min(seen, key=lambda v: v.could_see), max(seen, key=lambda v: v.could_see)
    rounds = sorted({v.ratio.n for v in seen})
    n = f"{rounds[0]}" if len(rounds) == 1 else f"{rounds[0]}-{rounds[-1]}"
    text = (f"this run could see differences of {best.could_see:.2f}x or more ({n} "
            f"{'rounds' if best.ratio.paired else 'trials'}, {stats.POWER:.0%} power)")
    if worst.could_see > best.could_see * 1.05:
        text += f"; {worst.could_see:.2f}x against {worst.y.label}"
    return text


def rounds_for_a_tie(spread: float, rivals: int = 1, margin: float = stats.MARGIN, alpha: float = stats.ALPHA,
                     power: float = stats.POWER) -> int | None:
    """The rounds a drive needs to call a true tie "within" with this power: a pair whose per-round
    log-ratio has sd `spread` (two processes' noise: sqrt 2 times each one's), one of `rivals`
    comparisons, judged at the last look of a drive that planned that many rounds (None beyond
    MAX_MORE_ROUNDS)."""
    for n in range(stats.MIN_TRIALS, stats.MAX_MORE_ROUNDS + 1):
        level_n = sequential.planned_level(alpha / rivals, n) if n >= sequential.FIRST_LOOK else alpha / rivals
        # both one-sided tests must pass: each may miss at half the rate
        if (stats.critical(level_n, n - 1) + stats.critical((1 - power) / 2, n - 1)) * spread / math.sqrt(n) \
                < math.log(1 + margin):
            return n
    return None
