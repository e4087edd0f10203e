"""What a run's results answer: per table and profile the fastest configuration against its
rivals, corrected together, and the two controls that say whether the run could see.

A table is one machine, data set, model and device; a question is one profile of it at the
settings most of its configurations share (batch, precision...): the users' code and the
equalised code are separate questions. Each question sets its fastest configuration (the
highest geometric-mean speed, the estimate every ratio uses) against each framework's
idiomatic mode and the next fastest, corrected together (harness.analysis.verdicts.family).

The controls, run by the driver in every round beside the plan's first configuration:
* negative, the A/A twin: the same code counted apart. It fails only where its interval puts
  the twin beyond the margin ("faster" or "slower"): then the machine moved more than the
  margin between identical processes, and verdicts near the margin deserve care. Its point
  estimate alone strays past 5% in a quarter to a half of runs of a perfect twin.
* positive, the planted slowdown: the same configuration with every epoch made
  PLANTED_SLOWDOWN times longer. Found ("faster" beyond the margin), it shows the run could
  see a difference of that size; not found, this run's rounds could not see one, and
  "undecided" means too few rounds, not that the frameworks tie.
"""
from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from dataclasses import dataclass

from harness.analysis import stats
from harness.analysis.trials import Configuration, config_key, configurations
from harness.analysis.verdicts import Verdict, family, interval_text, ratio_texts, verdict
from harness.measure.results import Result
from harness.plan.frameworks import frameworks  # framework-free: names and modes only

PLANTED_SLOWDOWN = 1.25  # the positive control's size: a quarter more time in every epoch
# The settings a person chooses, by their flat column name (as harness.report's tables name
# cells' fields) and by the name a table shows them under.
CHOSEN_SETTINGS = {"profile": "profile", "hyper_batch_size": "batch", "precision": "precision",
                   "hyper_epochs": "epochs", "hyper_optimizer": "optimizer", "hyper_lr": "lr", "threads": "threads"}
SHOWN_SETTINGS = ("hyper_batch_size", "precision")  # named in a question even where every configuration has them


def show(v) -> str:
    """A setting's value as text: '—' for none, floats without trailing zeros."""
    missing = v is None or (isinstance(v, float) and v != v)
    return "—" if missing else f"{v:g}" if isinstance(v, float) else str(v)


def setting(name: str, v) -> str:
    """A setting as a table names it: 'batch 32', 'threads all'."""
    return f"{CHOSEN_SETTINGS.get(name, name)} {'all' if name == 'threads' and v == 0 else show(v)}"


def chosen(c: Configuration) -> dict[str, object]:
    """A configuration's chosen settings by column name."""
    cell = c.cell
    return {"profile": cell.profile, "hyper_batch_size": cell.hyper.batch_size, "precision": cell.precision,
            "hyper_epochs": cell.hyper.epochs, "hyper_optimizer": cell.hyper.optimizer, "hyper_lr": cell.hyper.lr,
            "threads": cell.threads}


@dataclass(frozen=True)
class Question:
    """One profile of one table at its most common settings: the fastest against its rivals."""
    table: tuple[str, str, str, str]  # machine, data, model, device
    profile: str
    settings: tuple[str, ...]  # 'batch 32', 'precision float32', 'profile equal'
    configurations: tuple[Configuration, ...]  # the contenders at these settings
    fastest: Configuration | None
    verdicts: tuple[Verdict, ...]


@dataclass(frozen=True)
class Control:
    """kind: "negative" (the A/A twin) | "positive" (the planted slowdown); passed: it did what it should."""
    kind: str
    verdict: Verdict
    passed: bool
    text: str


@dataclass(frozen=True)
class Analysis:
    """What a set of results answers: every configuration, the questions and the controls."""
    margin: float
    configurations: tuple[Configuration, ...]
    questions: tuple[Question, ...]
    controls: tuple[Control, ...]

    def undecided(self) -> list[Verdict]:
        """The questions' verdicts that more rounds could still decide."""
        return [v for q in self.questions for v in q.verdicts if not v.decided]


def idiomatic_mode(framework: str) -> str | None:
    record = frameworks().get(framework)
    return record.idiomatic_mode if record else None


def mode_rank(c: Configuration) -> int:
    record = frameworks().get(c.cell.framework)
    modes = record.modes if record else ()
    return modes.index(c.cell.mode) if c.cell.mode in modes else len(modes)


def rivals(contenders: list[Configuration], fastest: Configuration) -> list[Configuration]:
    """Each framework's idiomatic mode, then the next fastest: what the fastest is set against."""
    idiomatic: dict[str, Configuration] = {}
    for c in contenders:
        name = f"{c.label.rsplit(' ', 1)[0]} {idiomatic_mode(c.cell.framework) or c.cell.mode}"
        if c.label == name:
            idiomatic.setdefault(name, c)
    out = [c for c in idiomatic.values() if c is not fastest]
    following = sorted((c for c in contenders if c is not fastest), key=lambda c: -c.speed)
    if following and following[0] not in out:
        out.append(following[0])
    return out


def questions(table: list[Configuration], margin: float, alpha: float) -> list[Question]:
    """A table's questions: one per profile, at the settings most of its configurations share."""
    varying = [s for s in CHOSEN_SETTINGS if len({show(chosen(c)[s]) for c in table}) > 1]
    out = []
    for profile in dict.fromkeys(c.cell.profile for c in table):
        mine = [c for c in table if c.cell.profile == profile]
        others = [s for s in varying if s != "profile"]
        combos = Counter(tuple(show(chosen(c)[s]) for s in others) for c in mine)
        common = max(combos, key=lambda k: combos[k])  # ties: the first in table order
        mine = [c for c in mine if tuple(show(chosen(c)[s]) for s in others) == common]
        named = list(SHOWN_SETTINGS) + [s for s in varying if s not in SHOWN_SETTINGS]
        settings = tuple(setting(s, chosen(mine[0])[s]) for s in named)
        measured = [c for c in mine if c.trials]
        fastest = max(measured, key=lambda c: c.speed) if len(measured) > 1 else None
        verdicts = family(fastest, rivals(measured, fastest), margin, alpha) if fastest else []
        out.append(Question(table[0].table, profile, settings, tuple(mine), fastest, tuple(verdicts)))
    return out


def controls(configs: list[Configuration], margin: float, alpha: float = stats.ALPHA) -> list[Control]:
    """One line each for the A/A twins and the planted slowdowns among the configurations, each judged
    by its interval at the level of the drive's last look (a family of one)."""
    by_key = {(c.machine, c.key): c for c in configs}
    out = []
    for c in configs:
        plain = dataclasses.replace(c.cell, twin=False, planted_slowdown=1.0)
        original = by_key.get((c.machine, config_key(plain)))
        if c.control is None or original is None:
            continue
        kind = "negative" if c.control == "twin" else "positive"
        model = f"{original.label}'s {c.cell.model}"
        v = verdict(original, c, margin, alpha)
        name = "negative control (A/A)" if kind == "negative" else "positive control"
        if v.kind == "too few":
            out.append(Control(kind, v, False, f"{name}: {model}: {v.text.split(': ', 1)[1]}"))
            continue
        estimate, = ratio_texts(v.ratio.estimate)
        interval = interval_text(v.shown, original, c)
        if kind == "negative":  # it fails only where its interval puts the twin beyond the margin
            passed = v.kind not in ("faster", "slower")
            verdict_words = {"within": f"within {margin:.0%}",
                             "undecided": f"no difference beyond {margin:.0%} found"}.get(v.kind, (
                                 f"the twin differs beyond {margin:.0%}: this machine moved more than {margin:.0%} "
                                 "between identical processes; read verdicts near the margin with care"))
            text = f"negative control (A/A): {model} ran {estimate}x as fast as its twin {interval}: {verdict_words}"
        else:
            planted = f"planted {c.cell.planted_slowdown:g}x slower in {model}"
            passed = v.kind == "faster"
            text = f"positive control: {planted}: " + (
                f"found {estimate}x {interval}" if passed else f"not found {interval}: this run's rounds could not "
                f"see a difference of {c.cell.planted_slowdown:g}x, so \"undecided\" means too few rounds, not a tie")
        out.append(Control(kind, v, passed, text))
    return out


def analyse(results: list[Result], margin: float = stats.MARGIN, alpha: float = stats.ALPHA) -> Analysis:
    """Every question and control of these results (recipes' tables ask no speed question)."""
    return analyse_configurations(configurations(results), margin, alpha)


def analyse_configurations(configs: list[Configuration], margin: float = stats.MARGIN,
                           alpha: float = stats.ALPHA) -> Analysis:
    """analyse() from configurations already grouped (the simulations make theirs directly)."""
    tables: dict[tuple, list[Configuration]] = defaultdict(list)
    for c in configs:
        if c.control is None and not c.cell.recipe:
            tables[c.table].append(c)
    order = sorted(tables, key=lambda t: t)
    asked = [q for t in order for q in questions(sorted(tables[t], key=table_order), margin, alpha)]
    checks = sorted(controls(configs, margin, alpha), key=lambda c: c.kind != "negative")  # the A/A twin's line first
    return Analysis(margin, tuple(configs), tuple(asked), tuple(checks))


def table_order(c: Configuration) -> tuple:
    """As the report's tables list configurations: framework, backend, idiomatic mode first, settings."""
    values = chosen(c)
    return (c.cell.framework, c.cell.backend or "", mode_rank(c)) + tuple(
        (str(type(values[s])), values[s]) for s in CHOSEN_SETTINGS)
