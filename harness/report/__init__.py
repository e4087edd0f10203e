"""python -m harness.report: the answer first, then tables, plots and a page, from result files.

Stages, each importing only earlier ones: read (files to rows) -> summary (rows per
configuration, tables) -> headline and compare (the numbers of the first screen, two
archives side by side) -> render (Markdown and HTML) -> plots (matplotlib, loaded on use);
__main__ runs them.
"""
