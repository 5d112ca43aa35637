"""The Streamlit dashboard's logic: loading, data shaping per view, live recomputation, launch.

The dashboard reads results through :class:`~auditkit.results.AuditResult` (DESIGN.md §1) and
may re-run small computations live on a loaded model (at most :data:`LIVE_MAX_SAMPLES` samples,
or any one test index; per-sample confidences for the explorer's filter). Headline figures come
from :func:`auditkit.summary.summarize`; comparisons only subtract or pair what it and the
per-sample records hold.
The user interface is :mod:`auditkit.dashboard_app` (a Streamlit script); everything here is
plain Python that tests call directly. Every chart is built by :mod:`auditkit.report.charts`
(the dashboard's own, such as :func:`~auditkit.report.charts.curve_overlay`, live there too);
this module only shapes the data they are given.

Safety: models are loaded with :func:`auditkit.loading.load_model` and never with
``trust_pickle``; the server binds ``127.0.0.1`` unless a host is passed explicitly. A results
file (possibly uploaded: anybody's text) cannot make the dashboard read a server path: the model
file and data spec its provenance names are only followed inside :func:`allowed_roots` (the
folders of the results files given at start, the zoo reports folder, the zoo, ``--allow-dir``
folders, the session's upload folder); other paths must be typed by the user in live mode.

Results files reach the app as script arguments (``streamlit run app.py -- RESULTS... [--zoo]``)
or through the environment (``AUDITKIT_DASHBOARD_RESULTS``, paths separated by ``os.pathsep``;
``AUDITKIT_DASHBOARD_ZOO=1``; ``AUDITKIT_DASHBOARD_REPORTS`` the zoo reports folder;
``AUDITKIT_DASHBOARD_ALLOW`` extra allowed folders), which is how tests drive Streamlit's ``AppTest``.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

import streamlit as st

from auditkit.report.charts import finite_float
from auditkit.errors import DashboardError  # noqa: F401  (re-exported)
from auditkit.metrics import broken_at
from auditkit.results import SEVERITIES, AuditResult, ResultsError
from auditkit.sections import CurvePoint, Estimate, PayloadError, RobustnessData, middle_positive
from auditkit.summary import Headline, MaskingSummary, format_interval, format_value, summarize

if TYPE_CHECKING:  # imported lazily at run time: torch is slow to import
    import torch

    from auditkit.data.base import AuditData
    from auditkit.loading import AuditModel

ENV_RESULTS = "AUDITKIT_DASHBOARD_RESULTS"
ENV_ZOO = "AUDITKIT_DASHBOARD_ZOO"
ENV_REPORTS = "AUDITKIT_DASHBOARD_REPORTS"
ENV_ALLOW = "AUDITKIT_DASHBOARD_ALLOW"
APP_PATH = Path(__file__).with_name("dashboard_app.py")
DEFAULT_PORT = 8501
LIVE_MAX_SAMPLES = 8
# Extensions the upload accepts: the safe formats of DESIGN.md §4 (load_model still checks the
# content; a pickled module saved as .pt is refused there).
UPLOAD_TYPES = ["pt", "pth", "pt2", "ts", "safetensors"]

# One live computation at a time: a cached module is shared by every browser session, and
# captum's hooks / mode switches must not interleave on it.
_LIVE_LOCK = threading.Lock()



# ----------------------------------------------------------------------------- arguments


def default_reports_dir() -> Path:
    """Where ``--zoo`` looks for ``<model>/results.json``: ``./reports`` when it exists, else the
    ``reports`` folder beside the zoo (the repository's committed reports)."""
    here = Path("reports")
    if here.is_dir():
        return here.resolve()
    from auditkit.zoo import zoo_dir

    return zoo_dir().parent / "reports"


@dataclass
class AppArgs:
    """What the app was started with: results files, zoo mode, the zoo reports folder and the
    extra folders (``--allow-dir``) whose files a results file may name (see :func:`allowed_roots`)."""

    results: list[Path] = field(default_factory=list)
    zoo: bool = False
    reports_dir: Path = field(default_factory=default_reports_dir)
    allow_dirs: list[Path] = field(default_factory=list)


def parse_app_args(argv: list[str]) -> AppArgs:
    """Parse the script arguments ``[RESULTS ...] [--zoo] [--reports-dir DIR] [--allow-dir DIR ...]``.

    Never exits (unlike argparse): an unknown option is ignored, so a typo cannot kill the app.
    """
    args = AppArgs()
    it = iter(argv)
    for token in it:
        if token == "--zoo":
            args.zoo = True
        elif token == "--reports-dir":
            value = next(it, None)
            if value:
                args.reports_dir = Path(value)
        elif token.startswith("--reports-dir="):
            args.reports_dir = Path(token.split("=", 1)[1])
        elif token == "--allow-dir":
            value = next(it, None)
            if value:
                args.allow_dirs.append(Path(value))
        elif token.startswith("--allow-dir="):
            args.allow_dirs.append(Path(token.split("=", 1)[1]))
        elif not token.startswith("--"):
            args.results.append(Path(token))
    return args


def app_args(script_path: str | None = None) -> AppArgs:
    """The app's arguments: ``sys.argv`` when Streamlit runs ``script_path`` as the main script
    (``streamlit run`` sets ``sys.argv = [script, *args]``), plus the environment variables.

    ``sys.argv`` is ignored when it belongs to another program (e.g. pytest running AppTest).
    """
    argv: list[str] = []
    if script_path and sys.argv and _same_file(sys.argv[0], script_path):
        argv = sys.argv[1:]
    args = parse_app_args(argv)
    for p in os.environ.get(ENV_RESULTS, "").split(os.pathsep):
        if p.strip() and Path(p.strip()) not in args.results:
            args.results.append(Path(p.strip()))
    if os.environ.get(ENV_ZOO, "").lower() in ("1", "true", "yes"):
        args.zoo = True
    if os.environ.get(ENV_REPORTS):
        args.reports_dir = Path(os.environ[ENV_REPORTS])
    for p in os.environ.get(ENV_ALLOW, "").split(os.pathsep):
        if p.strip() and Path(p.strip()) not in args.allow_dirs:
            args.allow_dirs.append(Path(p.strip()))
    return args


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


# ----------------------------------------------------------------------------- path confinement
#
# A results file names a model file and a data spec (its provenance). An uploaded results file
# is anybody's text, so those paths are only followed inside the folders the dashboard was
# started with (issue 11): the folders of the results files given on the command line, the zoo
# reports folder, the zoo, ``--allow-dir`` folders and this session's upload folder. Anything
# else has to be typed by the user in live mode (a deliberate choice, like a path on the
# command line).


def allowed_roots(args: AppArgs | None = None, extra: Iterable[Path | str] = ()) -> list[Path]:
    """The resolved folders whose files a results file's provenance may name (see above).

    ``extra``: more folders chosen by the user of this session (e.g. the upload temp folder,
    folders of results files typed in the sidebar). A filesystem root (``/``) is never a root:
    a results file lying directly in ``/`` would otherwise open every path.
    """
    from auditkit.zoo import zoo_dir

    candidates: list[Path | str] = [zoo_dir()]
    if args is not None:
        candidates += [Path(p).parent for p in args.results] + [args.reports_dir, *args.allow_dirs]
    candidates += list(extra)
    out: list[Path] = []
    for c in candidates:
        try:
            r = Path(c).resolve()
        except (OSError, RuntimeError):
            continue
        if r.parent != r and r not in out:
            out.append(r)
    return out


def confined(path: str | Path, roots: Iterable[Path]) -> Path | None:
    """``path`` resolved (symlinks followed) when it lies inside one of ``roots``, else None.

    Nothing is opened: only the path's name is resolved, so a path outside the roots is never
    read, not even to see whether it exists.
    """
    try:
        p = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return p if any(p == r or r in p.parents for r in roots) else None


def _roots_text(roots: list[Path]) -> str:
    return ", ".join(_short(r) for r in roots) or "none"


def confine_data_spec(spec: str, roots: list[Path], base: Path | None = None) -> str:
    """A data spec from a results file or a card, with its files confined to ``roots``.

    Built-in datasets (``digits``, ``fraud?rows=...``) pass unchanged. ``KIND:PATH`` specs (and
    a ``vocab=FILE`` argument) must name files inside ``roots``; a relative path is tried
    against the current folder and ``base`` (the results file's folder). Returns the spec with
    absolute paths. Raises :class:`~auditkit.data.DataError` naming the path otherwise.
    """
    from urllib.parse import urlencode

    from auditkit.data import DataError, parse_spec

    name, path, args = parse_spec(spec)
    if path is None:
        return spec

    def inside(raw: str) -> str:
        p = Path(raw)
        tries = [p] if p.is_absolute() else [Path.cwd() / p] + ([base / p] if base is not None else [])
        for t in tries:
            ok = confined(t, roots)
            if ok is not None and ok.exists():
                return str(ok)
        if any(confined(t, roots) is not None for t in tries):
            raise DataError(f"the data file {raw} of the data spec {spec!r} does not exist")
        raise DataError(f"the data spec {spec!r} names {raw}, outside the folders this dashboard reads files "
                        f"from on a results file's word ({_roots_text(roots)}); type the data spec yourself in "
                        "'Data spec', or start the dashboard with --allow-dir FOLDER")

    new_path = inside(path)
    if "vocab" in args:
        args["vocab"] = inside(args["vocab"])
    query = urlencode(args)
    return f"{name}:{new_path}" + (f"?{query}" if query else "")


# ----------------------------------------------------------------------------- launch


def launch_command(results: list[Path], zoo: bool = False, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                   reports_dir: Path | None = None, allow_dirs: Iterable[Path] = ()) -> list[str]:
    """The ``python -m streamlit run`` command line :func:`launch` runs (checked arguments)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise DashboardError(f"port must be an integer in 1..65535, got {port!r}")
    if not host:
        raise DashboardError("host must be an address such as 127.0.0.1")
    paths = []
    for r in results:
        p = Path(r)
        if not p.is_file():
            raise DashboardError(f"results file {p} does not exist; run `auditkit scan MODEL --out DIR` "
                                 "and pass DIR/results.json")
        paths.append(str(p.resolve()))
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_PATH),
           "--server.address", host, "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer", "--", *paths]
    if zoo:
        cmd.append("--zoo")
    if reports_dir is not None:
        cmd += ["--reports-dir", str(Path(reports_dir).resolve())]
    for d in allow_dirs:
        cmd += ["--allow-dir", str(Path(d).resolve())]
    return cmd


def launch(results: list[Path], zoo: bool = False, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
           reports_dir: Path | None = None, allow_dirs: Iterable[Path] = ()) -> int:
    """Run the dashboard server in a subprocess until it stops; return its exit code.

    Args:
        results: results.json files to open (checked to exist first).
        zoo: also load the zoo models' latest results from ``reports_dir`` (default ``reports``).
        port: TCP port. host: address to bind, loopback by default; pass another address
            explicitly to listen beyond this machine.
        allow_dirs: more folders whose model and data files a results file may name (live mode).

    SIGTERM and Ctrl-C are passed on to the server, so stopping this process stops it too.
    Raises :class:`DashboardError` for a missing results file or a bad port.
    """
    cmd = launch_command(results, zoo=zoo, port=port, host=host, reports_dir=reports_dir, allow_dirs=allow_dirs)
    proc = subprocess.Popen(cmd)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signal.SIGTERM))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


# ----------------------------------------------------------------------------- loading


@dataclass
class Audit:
    """One loaded results file: a display label, where it came from and the result."""

    label: str
    source: str
    path: Path | None
    result: AuditResult

    @property
    def card(self) -> dict[str, Any]:
        return self.result.provenance.card

    @property
    def task(self) -> str:
        return str(self.card.get("task", ""))

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.card.get("class_names") or []]

    def class_name(self, c: Any) -> str:
        names = self.class_names
        try:
            return names[int(c)] if 0 <= int(c) < len(names) else str(c)
        except (TypeError, ValueError):
            return str(c)

    def data(self, section: str) -> dict[str, Any] | None:
        """The data of ``section`` when it ran ("ok"), else None."""
        s = self.result.section(section)
        return s.data if s is not None and s.status == "ok" else None


def _file_key(path: Path) -> tuple[str, int, int]:
    st_ = path.stat()
    return str(path.resolve()), st_.st_mtime_ns, st_.st_size


@st.cache_resource(show_spinner="Reading results…", max_entries=64)
def _read_result(path: str, mtime_ns: int, size: int) -> AuditResult:
    # Keyed by path + mtime + size: an edited or re-written file is read again. The object is
    # shared between sessions and treated as read-only.
    return AuditResult.read(path)


def load_result(path: str | Path) -> AuditResult:
    """The :class:`AuditResult` in ``path``, cached by path and modification time.

    Raises :class:`ResultsError` for a missing file, bad JSON or an unsupported schema version.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise ResultsError(f"results file {p} does not exist; run `auditkit scan MODEL --out DIR` first")
    return _read_result(*_file_key(p))


@st.cache_resource(show_spinner="Reading results…", max_entries=16)
def _parse_result(digest: str, _data: bytes, name: str) -> AuditResult:
    with tempfile.TemporaryDirectory(prefix="auditkit-dashboard-") as tmp:
        path = Path(tmp) / (Path(name).name or "results.json")
        path.write_bytes(_data)
        try:
            return AuditResult.read(path)
        except ResultsError as exc:
            raise ResultsError(str(exc).replace(str(path), name)) from None


def parse_result_bytes(data: bytes, name: str = "results.json") -> AuditResult:
    """An uploaded results file's :class:`AuditResult` (same checks as :meth:`AuditResult.read`)."""
    return _parse_result(hashlib.sha256(data).hexdigest(), data, name)


def make_audits(items: list[tuple[str, Path | None, AuditResult]]) -> list[Audit]:
    """Label loaded results: the card's model name, disambiguated by folder when names repeat."""
    bases = [str(r.provenance.card.get("name") or (p.parent.name if p else src)) for src, p, r in items]
    labels = []
    for (src, p, _), base in zip(items, bases):
        label = base
        if bases.count(base) > 1:
            label = f"{base} [{p.parent.name if p else src}]"
        while label in labels:
            label += "′"
        labels.append(label)
    return [Audit(label, src, p, r) for (src, p, r), label in zip(items, labels)]


def zoo_results(reports_dir: Path) -> dict[str, Path | None]:
    """``{zoo model: reports_dir/<model>/results.json or None when missing}``."""
    from auditkit.zoo import list_models

    out: dict[str, Path | None] = {}
    for name in list_models():
        p = Path(reports_dir) / name / "results.json"
        out[name] = p if p.is_file() else None
    return out


def _short(path: Path) -> str:
    """``path`` relative to the current folder when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def how_to_create_reports(reports_dir: Path) -> str:
    """The commands that write the zoo reports the ``--zoo`` view reads."""
    from auditkit.zoo import zoo_dir

    return (f"make reports    # in a checkout of the repository; or, per model:\n"
            f"auditkit scan {_short(zoo_dir())}/MODEL/model.pt --out {_short(reports_dir)}/MODEL")


# ----------------------------------------------------------------------------- headline metrics


# The one headline type: figures, labels, units and intervals are decided by auditkit.summary,
# as in every report; the dashboard lays them out.
Metric = Headline


def middle(values: Iterable[float]) -> float:
    """The middle positive value of an eps / budget grid, 0 if none: the rule that picks a norm
    ball's headline ε (:func:`auditkit.sections.middle_positive`), used for the explorer's
    default ε."""
    return middle_positive(v for v in (finite_float(x) for x in values) if v is not None) or 0.0


def chart_points(points: list[CurvePoint]) -> list[dict[str, Any]]:
    """Typed curve points (:class:`~auditkit.sections.CurvePoint`, whatever the threat model)
    as the chart builders' ``[{"x", "y", "lo", "hi", "n"}]``, ``y`` the robust figure."""
    return [{"x": p.x, "y": p.robust.value, "lo": p.robust.ci_low, "hi": p.robust.ci_high, "n": p.robust.n}
            for p in points if p.robust.value is not None]


def threat_models(audit: Audit) -> dict[str, dict[str, Any]]:
    """The image ensemble's threat models ``{norm: section}`` ({} when absent)."""
    rob = audit.data("robustness") or {}
    tms = rob.get("threat_models")
    return {k: v for k, v in tms.items() if isinstance(v, dict)} if isinstance(tms, dict) else {}


def robustness_series(audit: Audit) -> dict[str, dict[str, Any]]:
    """Every robustness curve of an audit, keyed by its curve key, as ``{"points", "grid",
    "x_title", "y_title", "title", "caption", "source", "headline"}``: the typed curves of the
    robustness payload (:meth:`auditkit.sections.RobustnessData.curves`), so axes, titles and
    the headline point are the ones every report uses.

    Keys: ``linf`` / ``l2`` (images), ``text`` (and ``text-unconstrained`` beside a
    label-preserving run), ``embedding`` (text diagnostic), ``tabular`` (caught positives still
    detected under a cost budget), ``disc-real`` / ``disc-fake`` (GAN discriminator).
    """
    try:
        rob = audit.result.payload("robustness")
    except PayloadError:
        return {}
    if not isinstance(rob, RobustnessData):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for curve in rob.curves():
        points = chart_points(curve.fine_points or curve.points)
        if not points:
            continue
        out[curve.key] = {"points": points, "grid": chart_points(curve.points), "x_title": curve.x_label,
                          "y_title": curve.y_label, "title": curve.title, "caption": curve.caption,
                          "source": curve.fine_source or curve.source, "headline": curve.headline_label}
    return out


def headline_metrics(audit: Audit) -> list[Headline]:
    """The audit's leading headlines, as :func:`auditkit.summary.summarize` decides them."""
    return summarize(audit.result).headlines()


def headline_table(audits: list[Audit]) -> list[dict[str, str]]:
    """Rows ``{"metric": label, <audit label>: "value (95% CI …, n = …)" or "—"}`` (first-seen order)."""
    rows: dict[str, dict[str, str]] = {}
    for a in audits:
        for m in headline_metrics(a):
            rows.setdefault(m.label, {"metric": m.label})[a.label] = m.text
    return [{"metric": r["metric"], **{a.label: r.get(a.label, "—") for a in audits}} for r in rows.values()]


def findings_summary(audits: list[Audit]) -> list[dict[str, Any]]:
    """Rows ``{"audit", "high", "medium", "low", "total"}``: findings counted by severity."""
    rows = []
    for a in audits:
        counts = {s: sum(1 for f in a.result.findings if f.severity == s) for s in SEVERITIES}
        rows.append({"audit": a.label, **counts, "total": sum(counts.values())})
    return rows


def findings_by_severity(audit: Audit) -> dict[str, list[Any]]:
    """``{severity: [Finding, ...]}`` for high, medium, low (empty lists kept)."""
    return {s: [f for f in audit.result.findings if f.severity == s] for s in SEVERITIES}


STATUS_MARK = {"pass": "pass", "warn": "WARN", "fail": "FAIL", "skip": "skipped", "skipped": "skipped"}


def masking_table(audits: list[Audit]) -> list[dict[str, str]]:
    """The gradient-masking checklist: rows ``{"check", <audit>: status}`` over the audits that
    have one (empty when none has)."""
    rows: dict[str, dict[str, str]] = {}
    with_masking = []
    for a in audits:
        masking = (a.data("robustness") or {}).get("masking")
        if not isinstance(masking, dict):
            continue
        with_masking.append(a)
        for c in masking.get("checks") or []:
            rows.setdefault(c["name"], {"check": c["name"]})[a.label] = STATUS_MARK.get(c.get("status"), str(c.get("status")))
    return [{"check": r["check"], **{a.label: r.get(a.label, "—") for a in with_masking}} for r in rows.values()]


def masking_summaries(audits: list[Audit]) -> dict[str, MaskingSummary]:
    """``{audit: the summary's masking outcome and statement}`` for the audits with a
    checklist: the sentence every report prints above the same checklist."""
    out = {}
    for a in audits:
        masking = summarize(a.result).masking
        if masking is not None:
            out[a.label] = masking
    return out


def masking_verdicts(audits: list[Audit]) -> dict[str, bool]:
    """``{audit: gradient masking suspected}`` for the audits with a checklist."""
    return {label: m.suspected for label, m in masking_summaries(audits).items()}


# Figures left out of the baselines table: per-feature lists, run-dependent timings, bookkeeping.
_BASELINE_SKIP = ("importance.", "ranks.", "timings", "n_bins", ".test", "_only_correct")


def _estimate_text(v: dict[str, Any]) -> str | None:
    """A ``{"value", "ci_low", "ci_high", "n"}`` figure as a score in the summary's style."""
    value = finite_float(v.get("value"))
    if value is None:
        return None
    est = Estimate(value=value, ci_low=finite_float(v.get("ci_low")), ci_high=finite_float(v.get("ci_high")),
                   n=int(v["n"]) if isinstance(v.get("n"), (int, float)) and not isinstance(v.get("n"), bool) else None)
    ci = format_interval(est.ci_low, est.ci_high, "score")
    extra = ", ".join(t for t in (f"95% CI {ci}" if ci else "", f"n = {est.n}" if est.n is not None else "") if t)
    return format_value(value, "score") + (f" ({extra})" if extra else "")


def _flatten_metrics(d: Any, prefix: str = "", depth: int = 0) -> dict[str, str]:
    """Scalars and ``{"value", "ci_low", "ci_high"}`` leaves of a nested dict as ``{path: text}``."""
    out: dict[str, str] = {}
    if not isinstance(d, dict) or depth > 4:
        return out
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and "value" in v:
            text = _estimate_text(v)
            if text is not None:
                out[path] = text
        elif isinstance(v, dict):
            out.update(_flatten_metrics(v, path + ".", depth + 1))
        elif isinstance(v, (bool, str)):
            out[path] = str(v)
        elif finite_float(v) is not None:
            out[path] = f"{float(v):.4g}"
    return out


def baseline_table(audit: Audit) -> list[dict[str, str]]:
    """The ``baselines`` section as rows ``{"figure": path, "network": text, <baseline>: text}``.

    The section holds ``baselines`` (name → figures) and ``network`` (the same figures for the
    audited model); nested figures are flattened to dotted paths (intervals as
    ``value [lo, hi] n=N``), leaving out per-feature lists and timings. Empty without a section.
    """
    data = audit.data("baselines")
    if not data or not isinstance(data.get("baselines"), dict):
        return []
    models = {}
    if isinstance(data.get("network"), dict):
        models["network"] = _flatten_metrics(data["network"])
    for name, figures in data["baselines"].items():
        if isinstance(figures, dict):
            models[str(name)] = _flatten_metrics(figures)
    paths: list[str] = []
    for flat in models.values():
        paths += [p for p in flat if p not in paths and not any(s in p for s in _BASELINE_SKIP)]
    return [{"figure": p, **{name: flat.get(p, "—") for name, flat in models.items()}} for p in paths]


def baseline_verdict(audit: Audit) -> str | None:
    """The baselines section's one-sentence verdict, if any."""
    v = (audit.data("baselines") or {}).get("verdict")
    return str(v) if v else None


# ----------------------------------------------------------------------------- token highlighting


def token_highlight_html(tokens: list[str], scores: list[float | None]) -> str:
    """Tokens as HTML spans shaded by their score (red positive, blue negative), scaled to the
    largest |score|; tokens are escaped, the hover shows the score."""
    vals = [finite_float(s) or 0.0 for s in scores]
    top = max((abs(v) for v in vals), default=0.0) or 1.0
    spans = []
    for tok, v in zip(tokens, vals):
        a = min(1.0, abs(v) / top)
        colour = f"rgba(178,24,43,{a:.2f})" if v >= 0 else f"rgba(33,102,172,{a:.2f})"
        fg = "white" if a > 0.6 else "inherit"
        spans.append(f'<span title="{v:.4g}" style="background:{colour};color:{fg};padding:1px 3px;'
                     f'margin:1px;border-radius:3px;display:inline-block">{html.escape(str(tok))}</span>')
    return "".join(spans)


# ----------------------------------------------------------------------------- sample explorer


@dataclass
class SampleRef:
    """A sample of the test split that some section of the audit shows."""

    test_index: int
    label: int | None
    attribution_item: dict[str, Any] | None = None
    prediction: int | None = None  # clean prediction (performance section, else the records)
    correct: bool | None = None  # prediction == label
    record_row: int | None = None  # row in the robustness records / tabular attacked set
    in_robustness_gallery: bool = False
    text_examples: dict[str, dict[str, Any]] = field(default_factory=dict)  # run -> flipped example

    @property
    def where(self) -> list[str]:
        out = []
        if self.attribution_item is not None:
            out.append("attributions")
        if self.record_row is not None:
            out.append("robustness")
        if self.in_robustness_gallery:
            out.append("adversarial example")
        if self.text_examples:
            out.append("word substitutions")
        return out


def _at(lst: Any, i: int) -> Any:
    return lst[i] if isinstance(lst, list) and 0 <= i < len(lst) else None


def sample_catalogue(audit: Audit) -> list[SampleRef]:
    """Every sample of the audit, by test-split index, sorted: the whole test split where the
    performance section keeps its per-sample predictions (``predictions``/``labels``), plus the
    samples of the attributions gallery and of the robustness records (image ensemble, tabular
    attack, text examples), each with what the results keep about it."""
    refs: dict[int, SampleRef] = {}
    perf = audit.data("performance") or {}
    preds, labels_all = perf.get("predictions") or [], perf.get("labels") or []
    if isinstance(preds, list) and isinstance(labels_all, list) and len(preds) == len(labels_all):
        for t, (p, y) in enumerate(zip(preds, labels_all)):
            refs[t] = SampleRef(t, int(y), prediction=int(p), correct=int(p) == int(y))
    attr = audit.data("attributions") or {}
    a_index = attr.get("sample_index") or []
    for item in attr.get("gallery") or []:
        t = _at(a_index, int(item.get("index", -1)))
        t = int(t) if t is not None else int(item.get("index", 0))
        refs.setdefault(t, SampleRef(t, item.get("label"))).attribution_item = item
    rob = audit.data("robustness") or {}
    r_index = rob.get("sample_index") or []
    for tm in threat_models(audit).values():
        records = tm.get("records") or {}
        labels = records.get("label") or []
        preds_r, correct_r = records.get("clean_pred") or [], records.get("clean_correct") or []
        for row, i in enumerate(records.get("index") or []):
            t = _at(r_index, int(i))
            t = int(t) if t is not None else int(i)
            ref = refs.setdefault(t, SampleRef(t, _at(labels, row)))
            ref.record_row = row
            if ref.prediction is None and _at(preds_r, row) is not None:
                ref.prediction = int(_at(preds_r, row))
            if ref.correct is None and _at(correct_r, row) is not None:
                ref.correct = bool(_at(correct_r, row))
        for g in tm.get("gallery") or []:
            t = _at(r_index, int(g["index"]))
            t = int(t) if t is not None else int(g["index"])
            refs.setdefault(t, SampleRef(t, g.get("label"))).in_robustness_gallery = True
    tab = rob.get("tabular") if isinstance(rob.get("tabular"), dict) else {}
    t_index = tab.get("sample_index") or []
    positive = audit.card.get("positive_class")
    # The tabular attack runs on caught positives: their label is the positive class.
    pos_label = audit.class_names.index(positive) if positive in audit.class_names else None
    for row, entry in enumerate(tab.get("cheapest") or []):
        t = _at(t_index, int(entry.get("index", row)))
        t = int(t) if t is not None else int(entry.get("index", row))
        ref = refs.setdefault(t, SampleRef(t, pos_label))
        ref.record_row = row
        ref.in_robustness_gallery = bool(entry.get("success"))
    text = rob.get("text") if isinstance(rob.get("text"), dict) else {}
    for run in TEXT_RUNS:
        for ex in (text.get(run) or {}).get("examples") or []:
            t = _at(r_index, int(ex.get("index", 0)))
            t = int(t) if t is not None else int(ex.get("index", 0))
            label = ex.get("label")
            label = audit.class_names.index(label) if label in audit.class_names else label
            refs.setdefault(t, SampleRef(t, label)).text_examples[run] = ex
    return [refs[k] for k in sorted(refs)]


TEXT_RUNS = {"label_preserving": "Label-preserving substitutions",
             "unconstrained": "Any neighbour substitution (upper bound)"}


def substitution_html(example: dict[str, Any]) -> str:
    """A text attack example: the adversarial sentence with each substituted word highlighted
    and the original struck through (escaped HTML)."""
    tokens = str(example.get("adversarial", "")).split()
    subs = {int(s["position"]): s for s in example.get("substitutions") or [] if "position" in s}
    out = []
    for i, tok in enumerate(tokens):
        if i in subs:
            out.append(f'<span style="background:rgba(237,201,72,0.55);padding:1px 3px;border-radius:3px">'
                       f'<s>{html.escape(str(subs[i].get("from", "")))}</s> {html.escape(tok)}</span>')
        else:
            out.append(html.escape(tok))
    return " ".join(out)


def sample_option(audit: Audit, ref: SampleRef) -> str:
    """The explorer's label of a sample: ``test #12 · label 4 · predicted 9 ✗ (attributions)``."""
    label = f" · label {audit.class_name(ref.label)}" if ref.label is not None else ""
    if ref.correct is False and ref.prediction is not None:
        label += f" · predicted {audit.class_name(ref.prediction)} ✗"
    where = f" ({', '.join(ref.where)})" if ref.where else ""
    return f"test #{ref.test_index}{label}{where}"


def _judge(tm: dict[str, Any], row: int, eps: float, attack: str | None) -> tuple[bool, float | None, Any, bool]:
    """``(clean_correct, smallest norm found, by which attack, broken at eps)`` of record row
    ``row``: the ensemble's rule (:func:`auditkit.policy.robust_indicator`: misclassified, or an
    adversarial point of norm ≤ ε + tolerance found), by the worst case over attacks
    (``attack`` None) or by one attack's own smallest norm."""
    rec = tm.get("records") or {}
    tol = float(tm.get("tolerance") or 0.0)
    correct = bool(_at(rec.get("clean_correct"), row))
    if attack is None:
        found, by = finite_float(_at(rec.get("min_norm"), row)), _at(rec.get("broken_by"), row)
    else:
        found, by = finite_float(_at(((rec.get("per_attack") or {}).get(attack) or {}).get("min_norm"), row)), attack
    broken = (not correct) or (found is not None and bool(broken_at(found, eps, tol)))
    return correct, found, by, broken


def sample_broken(audit: Audit, ref: SampleRef, norm: str, eps: float, attack: str | None = None) -> bool | None:
    """Whether the results say ``ref`` is broken at ``eps``: for a norm ball (``linf``, ``l2``)
    by the records' rule (:func:`_judge`; ``attack`` None: the worst case over attacks); for
    ``tabular`` (``eps`` a cost budget), a caught positive the attack evades at cost ≤ ``eps``.
    None when the results keep nothing about this sample under that threat model."""
    if ref.record_row is None:
        return None
    if norm == "tabular":
        entry = tabular_evasion(audit, ref)
        if not isinstance(entry, dict):
            return None
        cost = finite_float(entry.get("cost"))
        return bool(entry.get("success")) and cost is not None and cost <= eps + 1e-12
    tm = threat_models(audit).get(norm)
    if tm is None:
        return None
    return _judge(tm, ref.record_row, float(eps), attack)[3]


@dataclass(frozen=True)
class FilterSpec:
    """What the explorer shows. Every criterion left at its default keeps every sample.

    correctness: ``all`` / ``correct`` / ``misclassified`` (clean prediction vs label).
    robustness: ``all`` / ``broken`` / ``robust`` at ``eps`` under threat model ``norm``
        (``linf``, ``l2`` or ``tabular``), judged by ``attack`` alone or, when None, by the
        worst case over attacks (:func:`sample_broken`); samples without records are dropped
        by ``broken`` and ``robust``.
    classes: true-class indices to keep (None: all).
    confidence: ``(lo, hi)`` inclusive range of the top-class confidence (needs ``confidences``
        in :func:`filter_samples`; samples without one are dropped).
    """

    correctness: Literal["all", "correct", "misclassified"] = "all"
    robustness: Literal["all", "broken", "robust"] = "all"
    norm: str | None = None
    eps: float = 0.0
    attack: str | None = None
    classes: tuple[int, ...] | None = None
    confidence: tuple[float, float] | None = None


def filter_samples(audit: Audit, spec: FilterSpec, confidences: Sequence[float] | None = None,
                   refs: list[SampleRef] | None = None) -> list[SampleRef]:
    """The samples of :func:`sample_catalogue` (or ``refs``) that meet ``spec``, in index order.

    ``confidences``: top-class confidence per test index (``[N]``, e.g. :func:`stored_confidences`
    or :func:`live_confidences`). Raises ValueError for a robustness criterion without a
    ``norm``, or a confidence range without ``confidences``.
    """
    if spec.robustness != "all" and not spec.norm:
        raise ValueError("a robustness filter needs a threat model (norm)")
    if spec.confidence is not None and confidences is None:
        raise ValueError("a confidence filter needs per-sample confidences")
    out = []
    for ref in sample_catalogue(audit) if refs is None else refs:
        if spec.correctness != "all" and ref.correct is not (spec.correctness == "correct"):
            continue
        if spec.classes is not None and ref.label not in spec.classes:
            continue
        if spec.confidence is not None:
            c = finite_float(_at(list(confidences or []), ref.test_index))
            if c is None or not spec.confidence[0] <= c <= spec.confidence[1]:
                continue
        if spec.robustness != "all":
            broken = sample_broken(audit, ref, str(spec.norm), spec.eps, spec.attack)
            if broken is None or broken is not (spec.robustness == "broken"):
                continue
        out.append(ref)
    return out


def stored_confidences(audit: Audit) -> list[float] | None:
    """Top-class confidence per test sample when the results keep it (performance
    ``confidences``, ``[N]``), else None (then :func:`live_confidences` can compute it)."""
    conf = (audit.data("performance") or {}).get("confidences")
    return [float(c) for c in conf] if isinstance(conf, list) and conf else None


def sample_robustness(audit: Audit, ref: SampleRef, norm: str, eps: float, attack: str | None) -> dict[str, Any] | None:
    """What the records say about one sample at ``eps`` (image ensemble).

    Returns ``{"rows": [{"attack", "result", "smallest ‖δ‖"}], "verdict": text, "broken": bool,
    "gallery": gallery item or None, "gallery_note": text}``; ``attack`` None means the worst
    case over all attacks. None when the audit has no records for ``norm``.
    """
    tm = threat_models(audit).get(norm)
    if tm is None or ref.record_row is None:
        return None
    rec = tm.get("records") or {}
    row = ref.record_row
    grid = [float(e) for e in tm.get("epsilons") or []]
    tol = float(tm.get("tolerance") or 0.0)
    k = min(range(len(grid)), key=lambda j: abs(grid[j] - eps)) if grid else None
    per = rec.get("per_attack") or {}
    rows = []
    for name in tm.get("attacks") or list(per):
        a = per.get(name) or {}
        s = _at(_at(a.get("success_at_eps"), row), k) if k is not None else None
        result = "not run (already broken)" if s is None else ("fooled" if s else "held")
        mn = finite_float(_at(a.get("min_norm"), row))
        rows.append({"attack": name, f"at ε={eps:g}": result, "smallest ‖δ‖ found": "—" if mn is None else f"{mn:.4g}"})
    correct, norm_found, by, broken = _judge(tm, row, eps, attack)
    who = "any attack" if attack is None else attack
    if not correct:
        verdict = "misclassified without any perturbation"
    elif broken:
        verdict = f"broken at ε={eps:g}: {by} found ‖δ‖ = {norm_found:.4g} ≤ ε"
    else:
        extra = f" (smallest found by {who}: {norm_found:.4g})" if norm_found is not None else f" ({who} found none)"
        verdict = f"robust at ε={eps:g}: no adversarial example within ε{extra}"
    item = None
    r_index = (audit.data("robustness") or {}).get("sample_index") or []
    for g in tm.get("gallery") or []:
        t = _at(r_index, int(g["index"]))
        if (int(t) if t is not None else int(g["index"])) == ref.test_index:
            item = g
    note = ""
    if item is not None:
        n = finite_float(item.get("norm")) or 0.0
        note = (f"The results keep the smallest adversarial example found (by {item.get('attack')}, "
                f"‖δ‖ = {n:.4g}); it is adversarial at every ε ≥ {n:.4g}.")
        if eps + tol < n:
            note += f" At ε={eps:g} it lies outside the ball: recompute this sample in Live mode for ε={eps:g}."
    return {"rows": rows, "verdict": verdict, "broken": broken, "gallery": item, "gallery_note": note}


def tabular_evasion(audit: Audit, ref: SampleRef) -> dict[str, Any] | None:
    """The tabular attack's cheapest evasion of one sample (``cheapest`` entry), or None."""
    tab = (audit.data("robustness") or {}).get("tabular")
    if not isinstance(tab, dict) or ref.record_row is None:
        return None
    return _at(tab.get("cheapest"), ref.record_row)


# ----------------------------------------------------------------------------- models and live mode


def resolve_model_path(audit: Audit, roots: list[Path] | None = None) -> tuple[Path | None, str]:
    """Find the audited model file from the results' provenance, inside ``roots`` only.

    ``model_path`` is as the scan was given it (often relative to where it ran): tried as is,
    against the current folder, the results file's folder and its parents, and the zoo folder.
    Only candidates inside ``roots`` (:func:`allowed_roots`; default: the results file's folder
    and the zoo) are looked at: a results file cannot make the dashboard open an arbitrary
    server path (an uploaded results.json naming ``/etc/passwd`` or a FIFO). Returns
    ``(path or None, note)``; the note warns when the file's sha256 differs from the one
    recorded (the model changed since the audit) or says why no file was used.
    """
    from auditkit.loading import sha256_file

    if roots is None:
        roots = allowed_roots(extra=[audit.path.resolve().parent] if audit.path is not None else [])
    raw = Path(audit.result.provenance.model_path)
    candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw]
    if not raw.is_absolute() and audit.path is not None:
        candidates += [parent / raw for parent in list(audit.path.resolve().parents)[:6]]
    if len(raw.parts) >= 2:
        from auditkit.zoo import zoo_dir

        candidates.append(zoo_dir() / raw.parts[-2] / raw.name)
    outside = False
    for c in candidates:
        inside = confined(c, roots)
        if inside is None:
            outside = True  # never looked at, not even whether it exists
            continue
        if inside.is_file():
            recorded = audit.result.provenance.model_sha256
            if recorded and sha256_file(inside) != recorded:
                return inside, (f"{inside} differs from the audited file (sha256 changed since the audit); live "
                                "results may not match the stored ones")
            return inside, ""
    if outside:
        return None, (f"the audited model {raw} is not inside the folders this dashboard reads files from on a "
                      f"results file's word ({_roots_text(roots)}); choose 'Model file on this machine' and type "
                      "its path, upload it, or start the dashboard with --allow-dir FOLDER")
    return None, (f"the audited model {raw} was not found (looked in the current folder, beside the "
                  "results and in the zoo); upload it or give its path")


@st.cache_resource(show_spinner="Loading model…", max_entries=8)
def _load_model_cached(path: str, mtime_ns: int, size: int, card: str | None, arch: str | None) -> "AuditModel":
    from auditkit.loading import load_model

    # Never trust_pickle: a pickled module is refused with load_model's explanation.
    return load_model(path, card=Path(card) if card else None, arch=arch, device="cpu")


def load_model_safely(path: str | Path, card: str | Path | None = None, arch: str | None = None) -> "AuditModel":
    """Load a model file for live mode through :func:`~auditkit.loading.load_model` WITHOUT
    ``trust_pickle`` (cached by path and modification time).

    ``arch`` must be a registered architecture: the dashboard never imports user code.
    Raises :class:`~auditkit.loading.UnsafeModelError` for a pickled module, and
    ModelLoadError / ModelInputError / CardError for other unusable input.
    """
    from auditkit.loading import ModelInputError
    from auditkit.zoo.models import list_architectures

    if arch is not None and arch not in list_architectures():
        raise ModelInputError(f"architecture {arch!r} is not registered; the dashboard only builds registered "
                              f"architectures ({', '.join(list_architectures())}); use the CLI's --arch for your own")
    p = Path(path)
    if not p.is_file():
        raise ModelInputError(f"model file {p} does not exist")
    return _load_model_cached(*_file_key(p), str(card) if card else None, arch)


def save_upload(data: bytes, filename: str, folder: Path) -> Path:
    """Write uploaded bytes under ``folder`` with a safe name keeping only the extension
    (``model.<ext>``; ``.card.json`` sidecars keep their role). Returns the path."""
    name = Path(filename).name.lower()
    if name.endswith(".card.json") or name.endswith(".json"):
        target = folder / "model.card.json"
    else:
        suffix = Path(name).suffix if Path(name).suffix.lstrip(".") in UPLOAD_TYPES else ".bin"
        target = folder / f"model{suffix}"
    folder.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def unsafe_message(exc: Exception) -> str:
    """The refusal shown for a pickled file: load_model's explanation, minus the CLI-only option."""
    text = str(exc).replace("; or pass --trust-pickle if you trust this file", "")
    return (f"Refused: {text}. The dashboard never loads pickled modules (it cannot know the file is safe); "
            "convert the file as described, or scan it with `auditkit scan --trust-pickle` if you trust it.")


@st.cache_resource(show_spinner="Loading data…", max_entries=4)
def _load_data_cached(spec: str, card_json: str) -> "AuditData":
    from auditkit.card import AuditCard
    from auditkit.data import load_data

    return load_data(spec, card=AuditCard.model_validate_json(card_json))


def live_data(model: "AuditModel", typed: str | None = None, fallback: str | None = None,
              roots: list[Path] | None = None, base: Path | None = None) -> "AuditData":
    """The dataset for live samples.

    ``typed``: a data spec the user typed (``npz:test.npz``, ``csv:f.csv?target=y``, ``digits``;
    docs/card.md), used as given. Otherwise ``fallback`` (the audit's recorded data spec) or the
    card's ``dataset``, whose files must lie inside ``roots`` (:func:`confine_data_spec`; none
    when ``roots`` is None, so only built-in datasets pass). Raises
    :class:`~auditkit.data.DataError` when there is no spec, or it names a file outside the
    roots, or it cannot be read.
    """
    from auditkit.data import DataError

    typed = (typed or "").strip()
    if typed:
        spec = typed
    else:
        recorded = fallback or model.card.dataset
        if not recorded:
            raise DataError("the card names no dataset and no data spec was given: type one in 'Data spec' "
                            "(e.g. npz:test.npz, csv:data.csv?target=label, digits; see docs/card.md)")
        spec = confine_data_spec(recorded, roots or [], base)
    return _load_data_cached(spec, model.card.model_dump_json())


def live_indices(audit: Audit | None, n: int, index: int | None = None) -> list[int]:
    """Test-split indices of the live samples: ``[index]`` when one test index is asked for
    (any sample of the test split, recomputed alone), else the audit's explained samples, else
    0..n-1."""
    if index is not None:
        return [int(index)]
    n = max(1, min(int(n), LIVE_MAX_SAMPLES))
    if audit is not None:
        for section in ("attributions", "robustness"):
            idx = (audit.data(section) or {}).get("sample_index")
            if idx:
                return [int(i) for i in idx[:n]]
    return list(range(n))


def live_inputs(model: "AuditModel", data: "AuditData", indices: list[int]) -> tuple["torch.Tensor", "torch.Tensor"]:
    """``(x [n, ...], y [n])`` tensors of the test samples ``indices`` (at most 8)."""
    import torch

    if not indices:
        raise DashboardError("pick at least one sample")
    if len(indices) > LIVE_MAX_SAMPLES:
        raise DashboardError(f"live mode recomputes at most {LIVE_MAX_SAMPLES} samples; got {len(indices)}")
    bad = [i for i in indices if not 0 <= i < len(data.y_test)]
    if bad:
        raise DashboardError(f"sample indices {bad} are outside the test split (0..{len(data.y_test) - 1})")
    x = model.to_input(data.x_test[indices])
    y = torch.as_tensor(data.y_test[indices], dtype=torch.int64, device=model.device)
    return x, y


def live_confidences(model: "AuditModel", data: "AuditData") -> list[float]:
    """Top-class softmax confidence of every test sample (``[N]``, in [0, 1]), computed live in
    batches: for the explorer's confidence filter where the results keep none."""
    from auditkit.metrics import softmax

    with _LIVE_LOCK:
        probs = softmax(model.logits(data.x_test))
    return [float(v) for v in probs.max(1)]


def same_test_split(audit: Audit, data: "AuditData") -> bool:
    """Whether ``data``'s test split is the audit's: same size and labels as the performance
    section's ``labels`` (True when the results keep no labels to compare)."""
    labels = (audit.data("performance") or {}).get("labels")
    if not isinstance(labels, list):
        return True
    return len(labels) == len(data.y_test) and all(int(a) == int(b) for a, b in zip(labels, data.y_test))


def live_methods(model: "AuditModel") -> dict[str, str | None]:
    """``{method: None if it can run on this model, else the reason}``."""
    from auditkit.explain.methods import available_methods

    if model.card.task == "gan":
        return {}
    return available_methods(model.card, model.module, model.eager)


def live_attacks(model: "AuditModel") -> list[str]:
    """Attacks live mode offers: every registered attack on a float image model with bounds
    except the slow decision-based ones; none on other tasks (their threat models need the
    scan: tabular constraints, word substitutions)."""
    from auditkit.attacks.registry import all_attacks

    card = model.card
    if card.task != "image-classification" or card.bounds is None or card.input_dtype != "float32":
        return []
    return [n for n, s in sorted(all_attacks().items()) if s.family != "decision-based"]


def live_attributions(model: "AuditModel", x: "torch.Tensor", y: "torch.Tensor", methods: list[str],
                      seed: int = 0) -> list[dict[str, Any]]:
    """Attributions of the predicted class by each of ``methods`` on ``x`` (``[n, ...]``, n ≤ 8),
    as attributions-gallery items (the same format the results hold)."""
    import torch

    from auditkit.explain.methods import attribute, gallery

    with _LIVE_LOCK:
        with torch.no_grad():
            pred = model.module(x).argmax(1)
        attrs = {m: attribute(m, model.module, x, pred, model.card, seed=seed).cpu() for m in methods}
        return gallery(attrs, x.cpu(), y.cpu(), pred.cpu(), list(range(len(x))), model.card, max_items=len(x))


def live_attack(model: "AuditModel", x: "torch.Tensor", y: "torch.Tensor", attack: str, eps: float,
                grid: list[float], seed: int = 0) -> dict[str, Any]:
    """Attack ``x`` (``[n, ...]``, n ≤ 8) with one registered attack at ``eps`` (quick budget).

    Returns ``{"items": [...], "threat_model": ...}``: ``items`` per sample in the robustness
    gallery's format plus ``success`` (adversarial within ``eps``) and ``found`` (any adversarial
    point, for min-norm attacks whatever its size); ``threat_model`` is
    :func:`~auditkit.attacks.ensemble.run_ensemble` with this attack alone over ``grid``
    (``to_dict()``: the curve with Wilson intervals).
    """
    import torch

    from auditkit.attacks.common import norm_of
    from auditkit.attacks.ensemble import run_ensemble
    from auditkit.attacks.registry import get_attack, norm_tolerance

    spec = get_attack(attack)
    bounds = tuple(model.card.bounds or (0.0, 1.0))
    tol = norm_tolerance(bounds)  # type: ignore[arg-type]
    eps = float(eps)
    with _LIVE_LOCK:
        out = spec.run(model.module, x, y, [eps] if spec.kind == "fixed-eps" else None, bounds, seed,  # type: ignore[arg-type]
                       budget="quick")[0]
        with torch.no_grad():
            clean_pred = model.module(x).argmax(1).cpu()
            adv_pred = model.module(out.x_adv).argmax(1).cpu()
        norms = norm_of(out.x_adv - x, spec.norm).cpu()
        grid = sorted({0.0, eps, *[float(e) for e in grid]})
        tm = run_ensemble(model.module, x, y, spec.norm, grid, budget="quick", bounds=bounds, seed=seed,
                          attacks=[attack]).to_dict()
    items = []
    for i in range(len(x)):
        found = bool(out.success[i])
        n = float(norms[i])
        clean, adv = x[i].cpu().numpy(), out.x_adv[i].cpu().numpy()
        items.append({
            "index": i, "label": int(y[i]), "clean_pred": int(clean_pred[i]), "adv_pred": int(adv_pred[i]),
            "found": found, "success": found and bool(broken_at(n, eps, tol)),
            "eps": eps, "norm": n, "attack": attack, "shape": list(clean.shape),
            "clean": clean.round(4).tolist(), "adversarial": adv.round(4).tolist(),
            "perturbation": (adv - clean).round(4).tolist(),
        })
    return {"items": items, "threat_model": tm, "norm": spec.norm, "kind": spec.kind}


def live_gan_samples(model: "AuditModel", n: int, seed: int) -> list[Any]:
    """``n`` (≤ 32) generated images as nested lists ``[H][W]`` (or ``[H][W][C]``) from a seeded draw."""
    import torch

    n = max(1, min(int(n), 32))
    latent = model.card.latent_dim or getattr(model.module, "latent_dim", None)
    if not latent:
        raise DashboardError("the GAN's card gives no latent_dim; cannot draw samples")
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, int(latent), generator=g).to(model.device)
    with _LIVE_LOCK, torch.no_grad():
        was = model.module.training
        model.module.eval()
        imgs = model.module(z).cpu().numpy()
        model.module.train(was)
    out = []
    for im in imgs:
        out.append((im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0)).round(4).tolist())
    return out


# ----------------------------------------------------------------------------- comparison of two audits


def finding_key(f: Any) -> tuple[str, str]:
    """A finding's identity across two audits: its section and its title with every number
    replaced by ``#`` (``("robustness", "Robust accuracy #% at linf eps=#")``), so that a
    finding whose figures moved is the same finding. :func:`compare_findings` pairs exact
    titles first, so two findings that differ only in a number (two radii) still pair right."""
    return str(f.section), re.sub(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", str(f.title))


@dataclass
class FindingsDiff:
    """Findings of audit B against audit A: ``new`` (only in B), ``fixed`` (only in A) and
    ``unchanged`` pairs ``(in A, in B)`` (same :func:`finding_key`; figures or severity may
    differ, see :attr:`changed`)."""

    new: list[Any]
    fixed: list[Any]
    unchanged: list[tuple[Any, Any]]

    @property
    def changed(self) -> list[tuple[Any, Any]]:
        """Unchanged pairs whose title (figures) or severity differ."""
        return [(a, b) for a, b in self.unchanged if a.title != b.title or a.severity != b.severity]


def compare_findings(a: Audit, b: Audit) -> FindingsDiff:
    """New, fixed and unchanged findings of ``b`` against ``a``, in the summary's order
    (:func:`auditkit.summary.summarize`): matched on (section, title) first, then on
    :func:`finding_key`."""
    fa, fb = summarize(a.result).findings, summarize(b.result).findings
    left, right = list(range(len(fa))), list(range(len(fb)))
    pairs: list[tuple[int, int]] = []
    for key in (lambda f: (f.section, f.title), finding_key):
        for i in list(left):
            j = next((j for j in right if key(fb[j]) == key(fa[i])), None)
            if j is not None:
                pairs.append((i, j))
                left.remove(i)
                right.remove(j)
    pairs.sort(key=lambda p: p[1])
    return FindingsDiff(new=[fb[j] for j in right], fixed=[fa[i] for i in left],
                        unchanged=[(fa[i], fb[j]) for i, j in pairs])


def findings_diff_rows(diff: FindingsDiff) -> list[dict[str, str]]:
    """The diff as table rows ``{"change", "severity", "section", "finding"}`` (new, fixed,
    then unchanged; a changed figure or severity reads ``A → B``)."""
    rows = [{"change": "new", "severity": f.severity, "section": f.section, "finding": f.title} for f in diff.new]
    rows += [{"change": "fixed", "severity": f.severity, "section": f.section, "finding": f.title} for f in diff.fixed]
    for fa, fb in diff.unchanged:
        sev = fa.severity if fa.severity == fb.severity else f"{fa.severity} → {fb.severity}"
        title = fa.title if fa.title == fb.title else f"{fa.title} → {fb.title}"
        rows.append({"change": "unchanged", "severity": sev, "section": fb.section, "finding": title})
    return rows


def headline_diff(a: Audit, b: Audit) -> list[dict[str, Any]]:
    """Headline figures both audits have (same summary key), as rows ``{"key", "label",
    "a", "b", "change"}``: the summary's displays and the difference B − A in the headline's
    unit (percentage points for proportions), None where either value is missing. Labels
    differ when the headline point moved (another ε): then both are shown."""
    ha = {h.key: h for h in summarize(a.result).headlines(primary_only=False)}
    rows = []
    for hb in summarize(b.result).headlines(primary_only=False):
        h = ha.get(hb.key)
        if h is None:
            continue
        change = None
        if h.value is not None and hb.value is not None:
            d = hb.value - h.value
            change = f"{100 * d:+.1f} points" if h.kind == "proportion" else f"{d:+.4g}"
        label = h.label if h.label == hb.label else f"{h.label} → {hb.label}"
        rows.append({"key": hb.key, "label": label, "a": h.text, "b": hb.text, "change": change})
    return rows


@dataclass
class PairedRobustness:
    """Per-sample paired robustness of two audits at one threat model's headline point.

    ``eps``: the headline ε of audit A's curve (the summary's headline point); ``n`` paired
    samples (same test indices); ``broken_only_a`` / ``broken_only_b`` / ``broken_both`` /
    ``robust_both`` counts; ``p_value``: exact two-sided McNemar on the discordant pairs;
    ``robust_a`` / ``robust_b`` the robust shares on the paired samples. ``reason``: why no
    pairing was possible (then the counts are 0)."""

    norm: str
    eps: float | None
    n: int = 0
    broken_only_a: int = 0
    broken_only_b: int = 0
    broken_both: int = 0
    robust_both: int = 0
    p_value: float | None = None
    reason: str = ""

    @property
    def robust_a(self) -> float | None:
        return (self.robust_both + self.broken_only_b) / self.n if self.n else None

    @property
    def robust_b(self) -> float | None:
        return (self.robust_both + self.broken_only_a) / self.n if self.n else None


def paired_robustness(a: Audit, b: Audit) -> list[PairedRobustness]:
    """For every norm-ball threat model both audits attacked: the paired per-sample difference
    at audit A's headline ε (:class:`PairedRobustness`), from the records
    (:func:`auditkit.policy.robust_indicator`) when both keep them for the same samples
    (``sample_index``) and both attacked that ε; otherwise a ``reason``."""
    import numpy as np

    from auditkit.policy import robust_indicator
    from auditkit.stats import mcnemar_exact

    out = []
    tma, tmb = threat_models(a), threat_models(b)
    for norm in [n for n in tma if n in tmb]:
        eps = None
        try:
            rob = a.result.payload("robustness")
            curve = rob.threat_model_curve(norm) if isinstance(rob, RobustnessData) else None
            eps = curve.headline.x if curve is not None and curve.headline is not None else None
        except PayloadError:
            pass
        res = PairedRobustness(norm, eps)
        out.append(res)
        ta, tb = tma[norm], tmb[norm]
        ia = (a.data("robustness") or {}).get("sample_index")
        ib = (b.data("robustness") or {}).get("sample_index")
        if eps is None:
            res.reason = "audit A has no headline point for this threat model"
        elif not ta.get("records") or not tb.get("records"):
            res.reason = "one of the audits keeps no per-sample records"
        elif ia != ib or len(ta["records"]["index"]) != len(tb["records"]["index"]):
            res.reason = "the audits attacked different samples (sample_index differs)"
        elif not any(abs(float(e) - eps) <= 1e-9 for e in tb.get("epsilons") or []):
            res.reason = f"audit B did not attack ε = {eps:g}"
        if res.reason:
            continue
        ra, rb = robust_indicator(ta, eps), robust_indicator(tb, eps)
        test = mcnemar_exact(ra, rb)
        res.n = len(ra)
        res.broken_only_a, res.broken_only_b = int(test["b_only"]), int(test["a_only"])
        res.broken_both = int((~ra & ~rb).sum())
        res.robust_both = int((ra & rb).sum())
        res.p_value = float(test["p_value"])
        assert res.n == int(np.asarray(ra).size)
    return out


# ----------------------------------------------------------------------------- report blocks


# Hides the report's page furniture around one section (header, navigation, summary, card,
# provenance, footer) when a single section is shown inside the dashboard.
_ONE_SECTION_CSS = ("<style>header, nav, footer, #sec-summary, #sec-card, #sec-provenance { display: none !important; }"
                    " body { margin-top: 0; }</style>")


def section_report_html(audit: Audit, section: str | None = None) -> str:
    """The HTML report's blocks (:func:`auditkit.report.render_html`) for the details page.

    ``section`` None: the whole report. Otherwise a report of a copy of the result holding only
    that section, with the page around it hidden, so the section reads exactly as in
    report.html (designed tables, charts, collapsed details). Self-contained and offline
    (plotly.js travels inside the page). Raises KeyError for a section the audit lacks.
    """
    from auditkit.report import render_html

    if section is None:
        return render_html(audit.result)
    sec = audit.result.sections[section]
    one = audit.result.model_copy(update={"sections": {section: sec},
                                          "findings": [f for f in audit.result.findings if f.section == section]})
    page = render_html(one)
    return page.replace("</head>", _ONE_SECTION_CSS + "</head>", 1)
