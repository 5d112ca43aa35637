"""Reports rendered from an :class:`~auditkit.results.AuditResult` alone (DESIGN.md §1):

* ``report.html`` — self-contained HTML (plotly.js inline once, no network at view time);
* ``summary.md`` — a short Markdown summary for a pull request or ``$GITHUB_STEP_SUMMARY``;
* ``junit.xml`` — JUnit XML of the gate's rules, the gradient-masking checks and the checks.

Nothing here recomputes an audit figure; every number comes from results.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from auditkit.files import REPORT_FILES, atomic_write_bytes
from auditkit.report.html import render_html
from auditkit.report.junit import render_junit
from auditkit.report.markdown import render_markdown
from auditkit.results import AuditResult, ResultsError, load_result

FILES = REPORT_FILES
FORMATS = tuple(FILES)


def write_reports(
    results: AuditResult | str | Path,
    out_dir: str | Path,
    formats: tuple[str, ...] | list[str] = FORMATS,
    gate_decision: Any = None,
) -> dict[str, Path]:
    """Render the reports of ``results`` into ``out_dir``; return ``{format: path}``.

    ``formats`` is any of ``"html"`` (report.html), ``"md"`` (summary.md) and ``"junit"``
    (junit.xml). ``gate_decision`` (an object or dict with ``rules``, each with ``name``,
    ``passed``, ``message``) adds the gate's outcome to all three. Every format is rendered
    in memory first, then each file is written atomically (temporary file, then rename): a
    failure leaves no new, partial or half-replaced report.
    """
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FILES]
    if unknown:
        raise ValueError(f"unknown report format(s) {', '.join(unknown)}; use {', '.join(FORMATS)}")
    if not formats:
        raise ValueError(f"no report format asked for; use any of {', '.join(FORMATS)}")
    result = load_result(results)
    renderers: dict[str, Callable[[], str]] = {
        "html": lambda: render_html(result, gate_decision),
        "md": lambda: render_markdown(result, gate_decision),
        "junit": lambda: render_junit(result, gate_decision),
    }
    rendered = {f: renderers[f]().encode("utf-8") for f in formats}
    out = Path(out_dir)
    written: dict[str, Path] = {}
    for f, data in rendered.items():
        path = out / FILES[f]
        atomic_write_bytes(path, lambda tmp, data=data: tmp.write_bytes(data))
        written[f] = path
    return written


__all__ = ["FILES", "FORMATS", "ResultsError", "load_result", "render_html", "render_junit", "render_markdown",
           "write_reports"]
