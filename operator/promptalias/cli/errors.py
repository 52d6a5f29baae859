"""Exit codes and the one error type of the `promptalias` commands, and how failures are printed.

Exit codes: 0 done; 1 `diff` found differences, or the operator did not finish a request in time;
2 an error (nothing reachable, no such object, bad arguments); 3 a spec change refused because Git
owns the object (Argo CD / Flux) and `--force` was not given.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Final

EXIT_OK: Final = 0
EXIT_PENDING: Final = 1  # also: `diff` found differences
EXIT_ERROR: Final = 2
EXIT_GITOPS: Final = 3
EXIT_INTERRUPTED: Final = 130


class CliError(Exception):
    """A failure the user can act on: printed as `error: <problem>; <remedy>`, never as a traceback."""

    def __init__(self, problem: str, remedy: str, code: int = EXIT_ERROR) -> None:
        super().__init__(f"{problem}; {remedy}")
        self.problem = problem
        self.remedy = remedy
        self.code = code


def report(run: Callable[[], int]) -> int:
    """Run a command; print failures as `error: …; what to do` (no traceback unless asked)."""
    try:
        return run()
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # the promise is "no tracebacks"; PROMPTALIAS_DEBUG=1 shows them
        if os.environ.get("PROMPTALIAS_DEBUG"):
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())}; "
            "run again with PROMPTALIAS_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_ERROR
