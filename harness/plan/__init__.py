"""What to run: the models and every number of the suite (spec), the framework registry
(frameworks: each framework's modes, profiles, packages and impl module), a cell and its id (cell),
the command line's options and one-line errors (options, errors), plans as typed data (plans), the
cells a selection picks (matrix), the seeds' recipes (recipes), the plain loops' plans and
reference figures (loop_plans), and where files go (files).

The first stage: it imports nothing of the harness outside itself, and nothing of impls/.
"""
