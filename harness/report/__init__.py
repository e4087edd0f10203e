"""python -m harness.report: the answer first, then tables, plots and a page, from result files.

Stages, each importing only earlier ones: read (files to rows) -> summary (one row per
configuration, one table per machine, data, model and device) -> headline and compare (the
numbers of the first screen; two archives side by side) -> render (a document as Markdown
or one HTML page) -> noise (each configuration's spread between identical processes, and the
strip plot of their epochs) -> document (what the report says) -> readme (the README's section of
an archive) -> plots (matplotlib, loaded on use); __main__ runs them.

The sixth stage: it reads result files through harness.measure's store and judges them through
harness.analysis; it never runs a cell.
"""
