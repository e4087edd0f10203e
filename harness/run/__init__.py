"""Many cells: `python -m harness.run` runs a matrix once, in this environment.

    launch       the parent side of one cell: its environment, its process, its death recorded
    executors    the executor interface, its registry, and the lock, skip and put-back logic once
    local        the local executor: one cell after another, here
    ray_cluster  the Ray executor: one Ray task per cell, on whichever node has room
    plain_loops  the frameworks' own plain loops beside their suite cells

The fourth stage: it imports harness.plan, harness.data and harness.measure; never the
analysis or the report, which read what it leaves.
"""
