"""python -m harness.data: where each dataset comes from, and its cache."""
from harness.data import main
from harness.plan.errors import cli_main

cli_main(main)
