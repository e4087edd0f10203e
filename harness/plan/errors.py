"""How every command of the suite fails: one line that says what went wrong and what to do."""
from __future__ import annotations

import sys


class HarnessError(Exception):
    """A user-facing error: the message says what went wrong and what to do."""


def cli_main(main) -> None:
    """Run a command-line main(); a HarnessError becomes one line on stderr and exit 2."""
    try:
        sys.exit(main())
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
