"""The README's two commands are the ones the project runs."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [line.split("#")[0].strip() for line in block.group(1).strip().splitlines()]


def test_ci_runs_the_readme_test_command_verbatim():
    main_job, tests = readme_commands()
    assert "tox -e torch,keras,jax" in main_job
    assert tests in (ROOT / ".ci/run").read_text().splitlines()
