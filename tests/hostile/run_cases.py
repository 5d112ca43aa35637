"""Runs many CLI invocations in one process (one torch import for the whole corpus).

``python -m tests.hostile.run_cases CASES.json RESULTS.json``: ``CASES.json`` is a list of
``{"name", "argv"}``; for each, :func:`auditkit.cli.main` runs with stderr and stdout captured
and a per-case alarm (a case that hangs is recorded as exit code ``"timeout"``). The results
file gets, per case, the exit code, stderr, stdout and the process's peak resident memory
(``ru_maxrss``, MiB) after the case. The hostile-file tests read it.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import signal
import sys
import traceback
from typing import Any

CASE_TIMEOUT_S = 120


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def peak_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(cases_file: str, results_file: str) -> int:
    import auditkit.cli as cli

    cases = json.loads(open(cases_file).read())
    cli.main(["--help"])  # imports the CLI's own modules once, before the baseline
    import torch  # noqa: F401  (the loaders' import; counted in the baseline, not in a case)

    results: dict[str, Any] = {"baseline_mib": peak_mib(), "cases": {}}
    signal.signal(signal.SIGALRM, _alarm)
    for case in cases:
        err, out = io.StringIO(), io.StringIO()
        signal.alarm(CASE_TIMEOUT_S)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                code: Any = cli.main(case["argv"])
        except _Timeout:
            code = "timeout"
        except BaseException:  # noqa: BLE001  (anything main let escape is a failure to report)
            code = "escaped"
            err.write(traceback.format_exc())
        finally:
            signal.alarm(0)
        results["cases"][case["name"]] = {"code": code, "stderr": err.getvalue(), "stdout": out.getvalue(),
                                          "peak_mib": peak_mib()}
    with open(results_file, "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
