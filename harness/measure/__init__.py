"""One cell, trained and measured in its own process (`python -m harness.measure.child`), and the
result file it leaves.

    contract   what the harness asks of a framework module (the Impl contract), its base class
    protocol   profile equal's fairness protocol: batch orders, initial weights, evaluation
    reference  numpy float64 forward, backward and optimizers: the parity oracle
    timing     sync barriers, steady epochs, memory, GPU time
    split      where a step's time goes: input pipeline, framework overhead, arithmetic
    machine    the machine's fingerprint, the commit, the contention while a cell trained
    child      the cell's process: load, train, measure, assemble, write
    results    the result as a typed record, and the upgraders from older schemas
    store      the one owner of a results folder: paths, locks, done-or-not, reading
    faults     how a process says it failed: exit codes, the allocators' out-of-memory words
    loops      the plain loops' side file (plain-loops.json) as a typed, versioned record, and its table

The third stage: it imports harness.plan and harness.data, and loads the framework modules
(impls/) by name through the registry; nothing here knows of executors, verdicts or reports.
"""
