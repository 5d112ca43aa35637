"""Progress of a scan on stderr: live bars on a terminal, one plain line per check elsewhere.

A CI log (stderr not a terminal) gets no escape codes and no nested bars: each check appears
once, as one line with its status and time. On a terminal, tqdm bars show the work inside a
check, and the same one line is printed when the check ends.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, TextIO


class ScanProgress:
    """Reports the checks of one scan. ``enabled=False`` prints nothing (``--quiet``)."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()

    def track(self, iterable: Iterable[Any], **kw: Any) -> Iterable[Any]:
        """Wrap a long inner loop (attacks, batches) with a bar on a terminal; as is otherwise."""
        if not self.live:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, leave=False, file=self.stream, dynamic_ncols=True, **kw)

    def check_done(self, index: int, total: int, name: str, status: str, seconds: float,
                   note: str | None = None) -> None:
        """One line for a finished check: ``[3/7] robustness: ok (12.3 s)``."""
        if not self.enabled:
            return
        detail = f" — {note}" if note and status != "ok" else ""
        line = f"[{index}/{total}] {name}: {status} ({seconds:.1f} s){detail}"
        if len(line) > 200:
            line = line[:199] + "…"
        if self.live:
            from tqdm.auto import tqdm

            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)
