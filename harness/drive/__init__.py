"""`python -m harness.drive`: the matrix in rounds, interleaved across the frameworks'
environments, until the analysis decides every verdict or the budget is spent; then the report.

The seventh stage: the conductor. It plans (harness.plan), runs rounds through an executor
(harness.run), asks harness.analysis when to stop, and calls harness.report at the end.
"""
