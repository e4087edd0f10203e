"""python -m harness.archive: a machine's archive remade at one commit."""
from harness.archive.remake import main
from harness.plan.errors import cli_main

cli_main(main)
