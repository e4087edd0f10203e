"""The harness, in stages that follow the data; each stage imports only from the stages above it.

    plan      what to run: models and numbers, the cell, options, plans as typed data, recipes
    data      the datasets, loaded once per process, checksummed and validated
    measure   one cell trained and measured in its own process, and the result file it leaves
    run       many cells: each cell's process, the executors (local, Ray) and the plain loops
    analysis  judging: trials, verdicts against a margin, controls, drift
    report    showing: the summary, tables, plots, the page and the README's section
    drive     the matrix in rounds until the analysis decides; then the report
    archive   a machine's archive remade at one commit: the driver's steps and the report

A cell flows down this list: planned, its data checked, measured into a result file, judged
with the others, shown. The framework modules (impls/<framework>_*.py) stand beside measure: they
import plan and measure, and the cell's process loads them by the name their record in the
registry (harness.plan.frameworks) gives; no harness module imports them. tests/test_architecture.py
reads every import and holds each module to its stage.
"""
