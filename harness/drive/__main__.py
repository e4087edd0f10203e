"""python -m harness.drive: the matrix in rounds until the analysis decides; then the report."""
from harness.drive.rounds import main
from harness.plan.errors import cli_main

cli_main(main)
