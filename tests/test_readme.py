"""The README's two commands are the ones the project runs."""
from __future__ import annotations

import re

from tests.helpers import CPU_ARCHIVE, ROOT


def readme_commands() -> list[str]:
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [line.split("#")[0].strip() for line in block.group(1).strip().splitlines()]


def test_ci_runs_the_readme_test_command_verbatim():
    main_job, tests = readme_commands()
    assert "tox -e torch,keras,jax" in main_job
    assert tests in (ROOT / ".ci/run").read_text().splitlines()


def test_the_readme_cpu_section_is_what_the_report_computes_from_the_archive():
    from harness.report.__main__ import readme_text
    from harness.report.readme import BEGIN, END

    text = (ROOT / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "the README carries the archive's section once"
    section = text[text.index(BEGIN):text.index(END) + len(END)]
    assert section == readme_text(CPU_ARCHIVE), (
        f"the README's CPU section is not what {CPU_ARCHIVE} gives: redraw it from "
        f"python -m harness.report {CPU_ARCHIVE.relative_to(ROOT)} --readme")
