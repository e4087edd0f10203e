"""Judging (the fifth stage): what the measured trials say, as typed values, for the driver and the report alike.

Owns the per-trial view of results (`trials`), the choice of comparisons and the verdicts
with their controls (`verdicts`, `tables`), and B against A across two runs (`drift`). It
reads typed results (harness.measure.results, harness.plan.cell) and the framework registry
(harness.plan.frameworks), and computes with harness.analysis.stats; it never imports the driver, the
executors or the report, which import it: the driver decides when to stop from it, and
the report renders what it returns.
"""
