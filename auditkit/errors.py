"""User errors and the CLI's exit codes (DESIGN.md §6): one home for both.

A leaf module: it imports nothing from auditkit, torch or streamlit, so the CLI can map any
error to its exit code without loading the heavy stack. Every error a user can cause is an
:class:`AuditkitError` whose ``exit_code`` says how the CLI ends; anything else that escapes is
a bug and ends with :data:`EXIT_INTERNAL` (never 1: CI must not read a crash as a gate verdict).

    0 success / gate passed · 1 gate failed · 2 bad usage or bad input ·
    3 model refused as unsafe or unloadable · 4 internal error, or an incomplete audit under
    ``--gate`` · 130 interrupted
"""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_MODEL_REFUSED = 3
EXIT_INTERNAL = 4
EXIT_INCOMPLETE = 4  # an audit whose core checks did not all run, under --gate
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success / gate passed",
    EXIT_GATE_FAILED: "gate failed",
    EXIT_BAD_INPUT: "bad usage or bad input",
    EXIT_MODEL_REFUSED: "model refused as unsafe or unloadable",
    EXIT_INTERNAL: "internal error, or an incomplete audit under --gate",
    EXIT_INTERRUPTED: "interrupted",
}


class AuditkitError(Exception):
    """Base of every error auditkit raises on purpose. The message says what and how to fix it."""

    exit_code: int = EXIT_INTERNAL


class BadInputError(AuditkitError, ValueError):
    """Bad usage or bad input (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class CardError(BadInputError):
    """A card is missing, malformed or inconsistent. The message names the field and the fix."""


class DataError(BadInputError):
    """Bad or unreadable data. The message says what is wrong and how to fix it."""


class ModelInputError(BadInputError):
    """Bad usage around the model (missing file, unknown --arch)."""


class ScanInputError(BadInputError):
    """The model, card, data and options do not fit together. The message says how to fix it."""


class ResultsError(BadInputError):
    """A results file is missing, unreadable or of an unknown schema version."""


class BaselineResultsError(ResultsError):
    """A baseline results file does not fit the results it is compared with."""


class PolicyError(BadInputError):
    """A gate policy is missing, malformed or names unknown metrics."""


class DashboardError(BadInputError):
    """The dashboard was asked for something it cannot show or load."""


class UnknownZooModelError(BadInputError):
    """No zoo model of that name."""


class OutputError(BadInputError):
    """An output path cannot be written (a file where a folder is needed, no permission...)."""


class ModelLoadError(AuditkitError):
    """The model file could not be loaded or does not work (exit 3)."""

    exit_code = EXIT_MODEL_REFUSED


class UnsafeModelError(ModelLoadError):
    """The file would run code on load and the user did not opt in (exit 3)."""


class IncompleteAuditError(AuditkitError):
    """A core check could not run, and the caller asked for a complete audit (exit 4)."""

    exit_code = EXIT_INCOMPLETE


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: object, limit: int = 2000) -> str:
    """``text`` as one printable line: control characters (ANSI escapes included) shown as
    ``\\xNN``, newlines and tabs as spaces, cut to ``limit`` characters."""
    s = str(text).replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    s = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)
    return s if len(s) <= limit else s[: limit - 1] + "…"
