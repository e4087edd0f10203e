"""`python -m harness.archive`: a machine's committed archive remade at one commit: the driver's
steps that harness.plan.plans lays out, the plain loops, then the report. The last stage: it
may import every stage above it.
"""
