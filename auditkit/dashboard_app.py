"""The auditkit dashboard: a Streamlit script over :mod:`auditkit.dashboard`.

Run it with ``auditkit dashboard RESULTS.json ... [--zoo]`` (which calls
:func:`auditkit.dashboard.launch`) or ``streamlit run apps/dashboard/app.py -- RESULTS.json``.
Views: Overview (headline metrics with intervals, findings, robustness curves of every loaded
audit, baselines, gradient-masking checklist), Audit details (every section's charts; defenses,
baselines and other sections as the HTML report draws them; the whole report on request),
Sample explorer (every test sample, filtered by clean correctness, robustness at an ε under one
attack or the worst case, true class and confidence; attributions and adversarial examples per
sample; any sample recomputed in Live mode), Compare (new / fixed / unchanged findings, headline
differences and paired per-sample robustness of two audits), Live (recompute attributions and
attacks on the audit's explained samples or any one test index of a safely loaded model, on
the audit's data or a typed data spec) and Zoo (the zoo's reports; quick scans).

Model and data paths named by a results file are only followed inside the folders the
dashboard was started with (:func:`auditkit.dashboard.allowed_roots`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import streamlit.components.v1 as components

from auditkit import dashboard as dash
from auditkit.report import charts
from auditkit.results import ResultsError

VIEWS = ["Overview", "Audit details", "Sample explorer", "Compare", "Live", "Zoo"]
SEVERITY_BADGE = {"high": ":red-badge[high]", "medium": ":orange-badge[medium]", "low": ":blue-badge[low]"}
STATUS_BADGE = {"pass": ":green-badge[pass]", "warn": ":orange-badge[warn]", "fail": ":red-badge[fail]"}
WORST_CASE = "worst case over all attacks"
LIVE_SOURCES = ["Model of a loaded audit", "Model file on this machine", "Upload a model file"]
EXPLAINED = "The audit's explained samples"
ONE_SAMPLE = "One test sample"
SECTION_HEIGHT = 640  # px of the iframe showing one report section (it scrolls inside)
REPORT_HEIGHT = 1000  # px of the iframe showing the whole report


# ----------------------------------------------------------------------------- helpers


def show_chart(chart: charts.Chart, key: str) -> None:
    """A report chart (plotly spec) in the page, with its caption."""
    st.plotly_chart(go.Figure(chart.spec), key=key, config={"displaylogo": False})
    st.caption(chart.caption)


def _session_dir() -> Path:
    """A temporary folder for this browser session's uploads and quick scans."""
    if "tmpdir" not in st.session_state:
        st.session_state["tmpdir"] = tempfile.mkdtemp(prefix="auditkit-dashboard-")
    return Path(st.session_state["tmpdir"])


def _zrange(audit_or_card: Any) -> tuple[float, float]:
    card = audit_or_card.card if isinstance(audit_or_card, dash.Audit) else audit_or_card
    bounds = card.get("bounds") if isinstance(card, dict) else getattr(card, "bounds", None)
    return (float(bounds[0]), float(bounds[1])) if bounds else (0.0, 1.0)


def _method_titles(audit: dash.Audit | None) -> dict[str, str]:
    from auditkit.explain.methods import METHODS

    titles = {k: v.title for k, v in METHODS.items()}
    if audit is not None:
        for k, v in ((audit.data("attributions") or {}).get("methods") or {}).items():
            if isinstance(v, dict) and v.get("title"):
                titles[k] = v["title"]
    return titles


def _pick_audit(audits: list[dash.Audit], key: str, label: str = "Audit") -> dash.Audit:
    labels = [a.label for a in audits]
    chosen = st.selectbox(label, labels, key=key)
    return audits[labels.index(chosen)] if chosen in labels else audits[0]


def _status_styler(rows: list[dict[str, str]]) -> Any:
    """The masking table with pass / WARN / FAIL cells coloured."""
    colours = {"pass": "#e6f4ea", "WARN": "#fff4e0", "FAIL": "#fde7e9"}
    return pd.DataFrame(rows).style.map(lambda v: f"background-color: {colours[v]}" if v in colours else "")


def _no_audits(args: dash.AppArgs) -> None:
    st.info(
        "No results loaded. Start the dashboard with results files, e.g. "
        "`auditkit dashboard out/results.json other/results.json`, or with `--zoo` for the zoo's reports; "
        "add a path or upload a results.json in the sidebar; or run a quick scan in the Zoo view."
    )


# ----------------------------------------------------------------------------- loading


def load_audits(args: dash.AppArgs) -> tuple[list[dash.Audit], list[str]]:
    """Every results file from the arguments, zoo mode, the sidebar's paths and uploads."""
    paths: list[Path] = list(args.results)
    if args.zoo:
        paths += [p for p in dash.zoo_results(args.reports_dir).values() if p is not None]
    paths += [Path(p) for p in st.session_state.get("extra_results", [])]
    items: list[tuple[str, Path | None, Any]] = []
    errors: list[str] = []
    seen: set[str] = set()
    for p in paths:
        key = str(p.resolve())
        if key in seen:
            continue
        seen.add(key)
        try:
            items.append((str(p), p, dash.load_result(p)))
        except (ResultsError, OSError) as exc:
            errors.append(str(exc))
    for f in st.session_state.get("upload_results") or []:
        try:
            items.append((f"upload: {f.name}", None, dash.parse_result_bytes(f.getvalue(), f.name)))
        except (ResultsError, OSError) as exc:
            errors.append(str(exc))
    return dash.make_audits(items), errors


def sidebar(args: dash.AppArgs) -> str:
    st.sidebar.title("auditkit")
    view = st.sidebar.radio("View", VIEWS, key="view")
    with st.sidebar.expander("Add results", expanded=not args.results and not args.zoo):
        with st.form("add-results", clear_on_submit=True, border=False):
            path = st.text_input("Path to a results.json", key="add_path")
            if st.form_submit_button("Add") and path.strip():
                extra = st.session_state.setdefault("extra_results", [])
                if path.strip() not in extra:
                    extra.append(path.strip())
        st.file_uploader("…or upload results.json files", type=["json"], accept_multiple_files=True,
                         key="upload_results")
    return str(view)


def sidebar_audits(audits: list[dash.Audit]) -> None:
    st.sidebar.markdown("**Loaded audits**")
    if not audits:
        st.sidebar.caption("none yet")
    for a in audits:
        st.sidebar.caption(f"**{a.label}** · {a.task or '?'} · {a.source}")


# ----------------------------------------------------------------------------- overview


def view_overview(audits: list[dash.Audit], args: dash.AppArgs) -> None:
    st.title("Audit overview")
    if not audits:
        _no_audits(args)
        return
    st.header("Headline metrics")
    per_row = 1 if len(audits) == 1 else 2  # two cards a row keep the metric labels readable
    n_metric_cols = 4 if per_row == 1 else 2
    for start in range(0, len(audits), per_row):
        row = audits[start : start + per_row]
        for col, a in zip(st.columns(len(row)), row):
            with col, st.container(border=True):
                st.subheader(a.label)
                prov = a.result.provenance
                st.caption(f"{a.task} · {prov.model_format} model `{prov.model_path}` · data `{prov.data_spec}` · "
                           f"budget {prov.config.get('budget', '?')}, {prov.config.get('samples', '?')} samples · "
                           f"seed {prov.seed} · auditkit {prov.auditkit}")
                metrics = dash.headline_metrics(a)
                if not metrics:
                    st.caption("no headline metrics in this result")
                for first in range(0, len(metrics), n_metric_cols):
                    for col_m, m in zip(st.columns(n_metric_cols), metrics[first : first + n_metric_cols]):
                        with col_m:
                            st.metric(m.label, m.display, help=m.note or m.label)
                            # A blank caption keeps the rows aligned when a figure has no interval.
                            st.caption(" · ".join(t for t in (f"95% CI {m.ci_display}" if m.ci_display else "",
                                                              f"n = {m.n}" if m.n is not None else "") if t)
                                       or "\u00a0")
    table = dash.headline_table(audits)
    if table and len(audits) > 1:
        st.subheader("Side by side")
        st.table(pd.DataFrame(table).set_index("metric"))

    st.header("Findings")
    st.dataframe(dash.findings_summary(audits), hide_index=True)
    for a in audits:
        by_sev = dash.findings_by_severity(a)
        total = sum(len(v) for v in by_sev.values())
        with st.expander(f"{a.label}: {total} finding(s)", expanded=len(audits) == 1):
            if not total:
                st.write("No findings.")
            for sev, found in by_sev.items():
                for f in found:
                    st.markdown(f"{SEVERITY_BADGE[sev]} **{f.title}** — {f.evidence} *(section: {f.section})*")

    st.header("Robustness")
    series = {a.label: dash.robustness_series(a) for a in audits}
    keys: list[str] = []
    for s in series.values():
        keys += [k for k in s if k not in keys]
    if not keys:
        reasons = []
        for a in audits:
            sec = a.result.section("robustness")
            reasons.append(f"{a.label}: " + ("no robustness section (the scan predates it or skipped it)"
                                             if sec is None else f"{sec.status}" + (f" ({sec.reason})" if sec.reason else "")))
        st.info("No robustness curves in these results. " + "; ".join(reasons))
    for first_key in range(0, len(keys), 2):  # two charts a row
        for col, key in zip(st.columns(2), keys[first_key : first_key + 2]):
            with col:
                have = {label: s[key] for label, s in series.items() if key in s}
                first = next(iter(have.values()))
                st.subheader(first["title"])
                show_chart(charts.curve_overlay({label: s["points"] for label, s in have.items()}, first["x_title"],
                                                first["y_title"], first["caption"] + " Bands: 95% Wilson intervals.",
                                                first["source"]), f"overview-curve-{key}")
                missing = [a.label for a in audits if key not in series[a.label]]
                if missing:
                    st.caption(f"Not in: {', '.join(missing)}")

    st.header("Baselines")
    any_baselines = False
    for a in audits:
        rows = dash.baseline_table(a)
        if rows:
            any_baselines = True
            st.subheader(a.label)
            if (verdict := dash.baseline_verdict(a)):
                st.info(verdict)
            st.dataframe(rows, hide_index=True)
    if not any_baselines:
        st.caption("No baselines section in these results.")

    st.header("Gradient-masking checklist")
    table = dash.masking_table(audits)
    if not table:
        st.caption("No gradient-masking checklist in these results (it comes with image robustness).")
    else:
        for label, masking in dash.masking_summaries(audits).items():
            (st.success if masking.outcome == "clean" else st.warning)(f"{label}: {masking.statement}")
        st.dataframe(_status_styler(table), hide_index=True)
        for a in audits:
            masking = (a.data("robustness") or {}).get("masking")
            if isinstance(masking, dict):
                with st.expander(f"{a.label}: evidence per check"):
                    for c in masking.get("checks") or []:
                        st.markdown(f"{STATUS_BADGE.get(c.get('status'), c.get('status'))} "
                                    f"**{c.get('name')}** — {c.get('evidence', '')}")


# ----------------------------------------------------------------------------- audit details


def view_details(audits: list[dash.Audit], args: dash.AppArgs) -> None:
    st.title("Audit details")
    if not audits:
        _no_audits(args)
        return
    a = _pick_audit(audits, "details_audit")
    k = f"details-{a.label}"
    skipped = [(n, s) for n, s in a.result.sections.items() if s.status != "ok"]
    if skipped:
        with st.expander(f"{len(skipped)} section(s) not run"):
            for n, s in skipped:
                st.markdown(f"**{n}**: {s.status} — {s.reason or 'no reason given'}")
    perf = a.data("performance")
    if perf:
        st.header("Performance")
        if perf.get("confusion_matrix"):
            show_chart(charts.confusion_matrix(perf["confusion_matrix"], perf.get("class_names") or a.class_names,
                                               "sections.performance.data.confusion_matrix"), f"{k}-cm")
        cal = perf.get("calibration") or {}
        if cal.get("bins"):
            show_chart(charts.reliability(cal["bins"], cal.get("ece"), "sections.performance.data.calibration"),
                       f"{k}-rel")
        if perf.get("per_class"):
            st.dataframe([{kk: v for kk, v in r.items() if kk != "recall_ci"} for r in perf["per_class"]],
                         hide_index=True)
    attr = a.data("attributions")
    if attr:
        st.header("Attributions")
        st.dataframe([{"method": m, "status": v.get("status"), "mean |attribution|": v.get("mean_abs"),
                       "reason": v.get("reason") or ""} for m, v in (attr.get("methods") or {}).items()],
                     hide_index=True)
        if attr.get("global_importance"):
            show_chart(charts.feature_importance(attr["global_importance"],
                                                 "sections.attributions.data.global_importance"), f"{k}-fi")
        if attr.get("token_importance"):
            show_chart(charts.token_importance(attr["token_importance"],
                                               "sections.attributions.data.token_importance"), f"{k}-ti")
    eq = a.data("explanation-quality")
    if eq:
        st.header("Explanation quality")
        ig = eq.get("ig_completeness") or {}
        if ig.get("history"):
            show_chart(charts.ig_history(ig["history"], ig.get("tol"),
                                         "sections.explanation-quality.data.ig_completeness.history"), f"{k}-ig")
        if (eq.get("randomisation") or {}).get("methods"):
            show_chart(charts.randomisation(eq["randomisation"], "sections.explanation-quality.data.randomisation"),
                       f"{k}-rand")
        if eq.get("deletion_insertion"):
            show_chart(charts.deletion_insertion(eq["deletion_insertion"],
                                                 "sections.explanation-quality.data.deletion_insertion"), f"{k}-di")
    rob = a.data("robustness")
    if rob:
        st.header("Robustness")
        for norm, tm in dash.threat_models(a).items():
            show_chart(charts.robustness_curve(tm, norm, f"sections.robustness.data.threat_models.{norm}"),
                       f"{k}-rob-{norm}")
            st.dataframe([{"attack": n, "kind": p.get("kind"), "family": p.get("family"),
                           "samples attacked": p.get("n_attacked"), "smallest for": p.get("n_smallest"),
                           "forward passes": p.get("forward_passes"), "seconds": p.get("seconds")}
                          for n, p in (tm.get("per_attack") or {}).items()], hide_index=True)
        for key, s in dash.robustness_series(a).items():
            if key in charts.NORM_LABEL:
                continue
            st.subheader(s["title"])
            show_chart(charts.curve_overlay({a.label: s["points"]}, s["x_title"], s["y_title"], s["caption"],
                                            s["source"]), f"{k}-rob-{key}")
        for norm, reason in (rob.get("skipped") or {}).items() if isinstance(rob.get("skipped"), dict) else []:
            st.caption(f"{norm}: skipped ({reason})")
    gan = a.data("gan")
    if gan:
        st.header("Generative model")
        if gan.get("coverage"):
            show_chart(charts.class_histogram(gan["coverage"], (gan.get("judge") or {}).get("class_names") or [],
                                              "sections.gan.data.coverage"),
                       f"{k}-cov")
        if (gan.get("quality") or {}).get("fid") is not None:
            show_chart(charts.fid(gan["quality"], "sections.gan.data.quality"), f"{k}-fid")
        if (gan.get("latent") or {}).get("mean_abs_attribution"):
            show_chart(charts.latent_importance(gan["latent"], "sections.gan.data.latent"), f"{k}-lat")
    # Defenses, baselines and any other section: the HTML report's own blocks (designed tables,
    # the same charts, details collapsed), not a data dump.
    # The iframe carries the section's own title, findings and takeaway, as in report.html.
    native = {"performance", "attributions", "explanation-quality", "robustness", "gan"}
    for name in summary_order(a):
        if name not in native:
            report_block(a, name, f"{k}-report-{name}")
    if a.result.provenance.timings:
        st.header("Timings")
        show_chart(charts.timings(a.result.provenance.timings, "provenance.timings"), f"{k}-time")
    with st.expander("Provenance"):
        st.json(a.result.provenance.model_dump(mode="json"), expanded=False)
    st.header("The HTML report")
    if st.toggle("Show the whole HTML report here", key=f"{k}-whole"):
        page = dash.section_report_html(a)
        st.download_button("Download report.html", page, file_name=f"{a.label}-report.html", mime="text/html",
                           key=f"{k}-download")
        components.html(page, height=REPORT_HEIGHT, scrolling=True)


def summary_order(a: dash.Audit) -> list[str]:
    """Sections that ran, in the reports' reading order."""
    from auditkit.summary import display_order

    return [n for n in display_order(a.result) if a.result.sections[n].status == "ok"]


def report_block(a: dash.Audit, section: str, key: str) -> None:
    """One section of the HTML report (:func:`auditkit.dashboard.section_report_html`) in an
    iframe: offline, plotly.js inside the page."""
    try:
        page = dash.section_report_html(a, section)
    except Exception as exc:  # a UI boundary: the report renderer's message, the app lives on
        st.error(f"The {section} section cannot be drawn as in the report: {exc}")
        return
    components.html(page, height=SECTION_HEIGHT, scrolling=True)


# ----------------------------------------------------------------------------- sample explorer


def render_attribution_item(task: str, item: dict[str, Any], titles: dict[str, str], zrange: tuple[float, float],
                            key: str, source: str) -> None:
    """One sample's attributions by every method, drawn for its task."""
    if not item.get("attributions"):
        st.info("No attribution method ran on this sample.")
        return
    if task == "image-classification":
        overlay = st.checkbox("Overlay the maps on the input", value=True, key=f"{key}-overlay")
        show_chart(charts.attribution_grid(item, titles, zrange, overlay, source), f"{key}-grid")
    elif task == "text-classification":
        st.caption(f"label **{item.get('label_name')}** · predicted **{item.get('prediction_name')}** · "
                   "red: evidence for the explained class, blue: against (each method scaled to its largest |score|)")
        for m, scores in item["attributions"].items():
            st.markdown(f"**{titles.get(m, m)}**")
            st.markdown(dash.token_highlight_html(item.get("input") or [], scores), unsafe_allow_html=True)
    elif task == "tabular-classification":
        st.caption(f"label **{item.get('label_name')}** · predicted **{item.get('prediction_name')}**")
        show_chart(charts.signed_feature_bars(item["attributions"], item.get("input") or {}, source), f"{key}-bars")
        with st.expander("Feature values"):
            st.dataframe([{"feature": f, "value": v} for f, v in (item.get("input") or {}).items()], hide_index=True)
    else:
        st.json(item, expanded=False)


def _roots(args: dash.AppArgs) -> list[Path]:
    """Folders whose files a results file may name here (:func:`auditkit.dashboard.allowed_roots`):
    those the dashboard was started with, this session's upload folder and the folders of the
    results files the user typed in the sidebar."""
    typed = [Path(p).parent for p in st.session_state.get("extra_results", [])]
    return dash.allowed_roots(args, extra=[_session_dir(), *typed])


def _go_live(label: str, test_index: int) -> None:
    """Button callback: open Live mode on this audit's model, for this one test sample."""
    st.session_state["view"] = "Live"
    st.session_state["live_source"] = LIVE_SOURCES[0]
    st.session_state["live_audit"] = label
    st.session_state["live_pick"] = ONE_SAMPLE
    st.session_state["live_index"] = int(test_index)


def _live_button(a: dash.Audit, ref: dash.SampleRef, key: str) -> None:
    st.button(f"Recompute test #{ref.test_index} in Live mode", key=key, on_click=_go_live,
              args=(a.label, ref.test_index))


def _explorer_confidences(a: dash.Audit, args: dash.AppArgs) -> list[float] | None:
    """Stored per-sample confidences, else (on request) the audited model's, computed live."""
    stored = dash.stored_confidences(a)
    if stored is not None:
        return stored
    if not (a.data("performance") or {}).get("predictions"):
        return None
    if not st.checkbox("Confidence filter: compute each sample's confidence with the audited model (live)",
                       key=f"f-conf-live-{a.label}"):
        return None
    cache = st.session_state.setdefault("live_confidences", {})
    if a.label in cache:
        return cache[a.label]
    from auditkit.card import CardError
    from auditkit.data import DataError
    from auditkit.loading import ModelInputError, ModelLoadError, UnsafeModelError

    path, note = dash.resolve_model_path(a, _roots(args))
    if path is None:
        st.error(f"Cannot compute confidences: {note}")
        return None
    try:
        model = dash.load_model_safely(path)
        data = dash.live_data(model, None, a.result.provenance.data_spec, _roots(args),
                              a.path.resolve().parent if a.path else None)
    except UnsafeModelError as exc:
        st.error(dash.unsafe_message(exc))
        return None
    except (ModelLoadError, ModelInputError, CardError, DataError, ValueError, OSError) as exc:
        st.error(f"Cannot compute confidences: {exc}")
        return None
    if not dash.same_test_split(a, data):
        st.error("Cannot compute confidences: the data found is not the audit's test split (other labels)")
        return None
    with st.spinner("Computing confidences…"):
        cache[a.label] = dash.live_confidences(model, data)
    return cache[a.label]


def explorer_filters(a: dash.Audit, args: dash.AppArgs) -> tuple[dash.FilterSpec, list[float] | None]:
    """The explorer's filter widgets; returns the filter and the confidences it needs."""
    tms = dash.threat_models(a)
    tab = (a.data("robustness") or {}).get("tabular")
    norm, eps, attack, robust = None, 0.0, None, "all"
    with st.container(border=True):
        c1, c2 = st.columns(2)
        correctness = c1.radio("Clean prediction", ["all", "correct", "misclassified"], horizontal=True,
                               key=f"f-correct-{a.label}")
        labels = sorted({r.label for r in dash.sample_catalogue(a) if isinstance(r.label, int)})
        classes = c2.multiselect("True class (none: all)", labels, format_func=a.class_name, key=f"f-classes-{a.label}")
        if tms:
            d1, d2, d3, d4 = st.columns(4)
            norm = d1.selectbox("Norm", list(tms), format_func=lambda n: charts.NORM_LABEL.get(n, n),
                                key=f"norm-{a.label}")
            tm = tms[norm]
            grid = [float(e) for e in tm.get("epsilons") or []] or [0.0]
            eps = float(d2.select_slider("ε", options=grid, value=dash.middle(grid) if dash.middle(grid) in grid
                                         else grid[0], key=f"eps-{a.label}-{norm}"))
            chosen = d3.selectbox("Attack", [WORST_CASE, *(tm.get("attacks") or [])], key=f"attack-{a.label}-{norm}")
            attack = None if chosen == WORST_CASE else chosen
            robust = d4.radio(f"At ε = {eps:g}", ["all", "broken", "robust"], horizontal=True,
                              key=f"f-robust-{a.label}-{norm}",
                              help="broken: misclassified, or an adversarial example within ε found by the "
                                   "chosen attack (or any attack); samples without robustness records are left out")
        elif isinstance(tab, dict) and tab.get("curve"):
            d1, d2 = st.columns(2)
            norm = "tabular"
            budgets = sorted({float(pt["budget"]) for pt in tab["curve"]})
            eps = float(d1.select_slider("Cost budget", options=budgets, value=budgets[len(budgets) // 2],
                                         key=f"eps-{a.label}-tabular"))
            robust = d2.radio(f"Evasion at cost ≤ {eps:g}", ["all", "broken", "robust"], horizontal=True,
                              key=f"f-robust-{a.label}-tabular",
                              help="broken: the attack evades detection within the budget (caught positives only)")
        confidences = _explorer_confidences(a, args)
        conf = None
        if confidences is not None:
            lo, hi = st.slider("Top-class confidence", 0.0, 1.0, (0.0, 1.0), step=0.01, key=f"f-conf-{a.label}")
            conf = None if (lo, hi) == (0.0, 1.0) else (float(lo), float(hi))
    spec = dash.FilterSpec(correctness=correctness, robustness=robust, norm=norm, eps=eps, attack=attack,
                           classes=tuple(int(c) for c in classes) or None, confidence=conf)
    return spec, confidences


def view_explorer(audits: list[dash.Audit], args: dash.AppArgs) -> None:
    st.title("Sample explorer")
    if not audits:
        _no_audits(args)
        return
    a = _pick_audit(audits, "explorer_audit")
    if a.task == "gan":
        gan_explorer(a)
        return
    everything = dash.sample_catalogue(a)
    if not everything:
        st.info("This audit keeps no per-sample results (no predictions, no attributions gallery and no "
                "robustness records).")
        return
    spec, confidences = explorer_filters(a, args)
    refs = dash.filter_samples(a, spec, confidences, refs=everything)
    st.caption(f"{len(refs)} of {len(everything)} samples match the filters")
    if not refs:
        st.info("No sample matches these filters.")
        return
    # Open on the first sample the results say most about (attribution maps, attack records).
    first = next((i for i, r in enumerate(refs) if r.where), 0)
    ref = st.selectbox("Sample", refs, index=first, format_func=lambda r: dash.sample_option(a, r),
                       key=f"sample-{a.label}")
    key = f"explorer-{a.label}-{ref.test_index}"
    if ref.prediction is not None:
        conf = dash.finite_float(confidences[ref.test_index]) if confidences and ref.test_index < len(confidences) \
            else None
        st.caption(f"label **{a.class_name(ref.label)}** · predicted **{a.class_name(ref.prediction)}**"
                   + (f" (confidence {conf:.3f})" if conf is not None else "")
                   + (" · correct" if ref.correct else " · misclassified"))

    st.header("Attributions")
    if ref.attribution_item is not None:
        render_attribution_item(a.task, ref.attribution_item, _method_titles(a), _zrange(a), key,
                                "sections.attributions.data.gallery")
    else:
        n = len((a.data("attributions") or {}).get("gallery") or [])
        st.info(f"The results keep attribution maps for {n} gallery sample(s) only; this one is not among them: "
                "recompute it in Live mode.")
        _live_button(a, ref, f"to-live-attr-{a.label}")

    st.header("Adversarial robustness")
    tms = dash.threat_models(a)
    if tms and ref.record_row is not None and spec.norm in tms:
        norm, eps = str(spec.norm), spec.eps
        info = dash.sample_robustness(a, ref, norm, float(eps), spec.attack)
        if info is None:
            st.info("No records for this sample.")
            return
        (st.warning if info["broken"] else st.success)(info["verdict"])
        st.dataframe(info["rows"], hide_index=True)
        if info["gallery"] is not None:
            show_chart(charts.adversarial_grid(info["gallery"], a.class_name, _zrange(a), norm,
                                               f"sections.robustness.data.threat_models.{norm}.gallery"),
                       f"{key}-adv-{norm}")
            st.caption(info["gallery_note"])
        else:
            st.caption("The results keep adversarial images for a few gallery samples only; recompute this one "
                       "in Live mode to see it.")
            _live_button(a, ref, f"to-live-adv-{a.label}")
    elif ref.text_examples:
        for run, ex in ref.text_examples.items():
            st.markdown(f"**{dash.TEXT_RUNS.get(run, run)}**: prediction {ex.get('prediction_before')} → "
                        f"{ex.get('prediction_after')} (label {ex.get('label')})")
            st.markdown(dash.substitution_html(ex), unsafe_allow_html=True)
        missing = [dash.TEXT_RUNS[r] for r in dash.TEXT_RUNS if r not in ref.text_examples]
        if missing:
            st.caption(f"No flipped example kept for this sample under: {'; '.join(missing).lower()}.")
    elif (evasion := dash.tabular_evasion(a, ref)) is not None:
        if evasion.get("success"):
            st.warning(f"Evades detection with changes costing {evasion.get('cost'):.3g} "
                     f"(positive-class probability {evasion.get('score_before'):.3f} → {evasion.get('score_after'):.3f})")
            st.dataframe(evasion.get("changes") or [], hide_index=True)
        else:
            st.success(f"No evasion found under the budgets (positive-class probability "
                       f"{evasion.get('score_before'):.3f}).")
    else:
        sec = a.result.section("robustness")
        if sec is None:
            why = "the audit has no robustness section"
        elif sec.status != "ok":
            why = f"robustness {sec.status}" + (f": {sec.reason}" if sec.reason else "")
        elif isinstance(sec.data.get("text"), dict):
            why = ("the word-substitution results keep a few flipped sentences only, and this is not one of them "
                   "(samples marked 'word substitutions' are)")
        else:
            why = "the robustness section keeps per-sample records for the attacked samples only"
        st.info(f"No adversarial results for this sample: {why}.")
        if sec is not None and sec.status == "ok" and a.task == "image-classification":
            _live_button(a, ref, f"to-live-rob-{a.label}")


def gan_explorer(a: dash.Audit) -> None:
    gan = a.data("gan") or {}
    zr = _zrange(a)
    grid = gan.get("sample_grid") or []
    if grid:
        st.header("Generated samples")
        show_chart(charts.sample_grid([g["image"] for g in grid],
                                      [f"{g.get('prediction_name', g.get('prediction'))} ({g.get('confidence', 0):.2f})"
                                       for g in grid], zr, "Generated samples with the judge's class and confidence.",
                                      "sections.gan.data.sample_grid"), f"gan-{a.label}-grid")
    pairs = (gan.get("memorisation") or {}).get("closest_pairs") or []
    if pairs:
        st.header("Closest training images")
        images, titles = [], []
        for p in pairs[:8]:
            images += [p["sample_image"], p["train_image"]]
            titles += [f"sample {p['sample']}", f"train {p['train']} · d={p['distance']:.3g}"]
        show_chart(charts.sample_grid(images, titles, zr, "Generated samples next to their nearest training image.",
                                      "sections.gan.data.memorisation.closest_pairs"), f"gan-{a.label}-pairs")
    disc = gan.get("discriminator") or {}
    sides = [s for s in ("real", "fake") if (disc.get(s) or {}).get("examples")]
    if sides:
        st.header("What the discriminator looks at")
        side = st.radio("Inputs", sides, horizontal=True, key=f"gan-side-{a.label}")
        ex = disc[side]["examples"]
        i = st.selectbox("Example", list(range(len(ex))), key=f"gan-ex-{a.label}-{side}")
        item = {"input": ex[i]["input"], "attributions": ex[i].get("maps") or {}}
        show_chart(charts.attribution_grid(item, _method_titles(None), zr, False,
                                           f"sections.gan.data.discriminator.{side}.examples",
                                           head=f"{side} image · realness {ex[i].get('realness', 0):.3f}",
                                           caption="A discriminator input and what its realness score rests on "
                                                   "(red: evidence for 'real', blue: for 'fake')."),
                   f"gan-{a.label}-{side}-{i}")
    if not (grid or pairs or sides):
        st.info("This GAN audit keeps no per-sample images.")


# ----------------------------------------------------------------------------- live mode


def _live_model(audits: list[dash.Audit], args: dash.AppArgs) -> tuple[Any, dash.Audit | None]:
    """The model live mode works on (None when not loaded), and the audit it came from."""
    from auditkit.card import CardError
    from auditkit.loading import ModelInputError, ModelLoadError, UnsafeModelError
    from auditkit.zoo.models import list_architectures

    sources = LIVE_SOURCES
    source = st.radio("Model", sources, horizontal=True, key="live_source", index=0 if audits else 1)
    audit, path, card, arch = None, None, None, None
    shown_name = ""  # how the file is named in messages (an upload's own name, not its temporary copy)
    if source == sources[0]:
        if not audits:
            st.info("No audit loaded: give a model file instead.")
            return None, None
        audit = _pick_audit(audits, "live_audit")
        path, note = dash.resolve_model_path(audit, _roots(args))
        if note:
            st.warning(note)
    elif source == sources[1]:
        text = st.text_input("Model file (zoo model.pt, TorchScript, .pt2, or weights with a card)", key="live_path")
        card_text = st.text_input("Card JSON (optional when the file carries one or has a .card.json beside it)",
                                  key="live_card")
        path = Path(text.strip()) if text.strip() else None
        card = Path(card_text.strip()) if card_text.strip() else None
    else:
        up = st.file_uploader("Model file", type=dash.UPLOAD_TYPES, key="live_upload")
        card_up = st.file_uploader("Card JSON (needed for safetensors / state_dict files)", type=["json"],
                                   key="live_card_upload")
        if up is not None:
            folder = _session_dir() / "upload"
            path = dash.save_upload(up.getvalue(), up.name, folder)
            shown_name = up.name
            if card_up is not None:
                card = dash.save_upload(card_up.getvalue(), "model.card.json", folder)
    if source != sources[0]:
        choice = st.selectbox("Architecture (weights-only files)", ["from the card", *list_architectures()],
                              key="live_arch")
        arch = None if choice == "from the card" else choice
        st.caption("Accepted: the zoo's model.pt, TorchScript, torch.export .pt2, state_dict or safetensors with a "
                   "card. Pickled modules are refused: the dashboard never runs code from a model file.")
    if path is None:
        return None, audit
    try:
        return dash.load_model_safely(path, card=card, arch=arch), audit
    except UnsafeModelError as exc:
        st.error(dash.unsafe_message(exc).replace(str(path), shown_name or str(path)))
    except (ModelLoadError, ModelInputError, CardError, ValueError, OSError) as exc:
        st.error(f"Cannot load {shown_name or path}: {str(exc).replace(str(path), shown_name or str(path))}")
    return None, audit


def view_live(audits: list[dash.Audit], args: dash.AppArgs) -> None:
    from auditkit.data import DataError

    st.title("Live recomputation")
    st.caption(f"Re-runs attributions and attacks on at most {dash.LIVE_MAX_SAMPLES} samples of a loaded model "
               "(quick attack budget). Models load through auditkit's safe loader.")
    model, audit = _live_model(audits, args)
    if model is None:
        return
    card = model.card
    st.caption(f"Loaded **{card.name or model.path.name}** · {card.task} · format {model.format}"
               + (" · " + "; ".join(model.notes) if model.notes else ""))
    if card.task == "gan":
        c1, c2 = st.columns(2)
        n = c1.slider("Samples", 4, 32, 16, step=4, key="live_gan_n")
        seed = c2.number_input("Seed", 0, 10_000, 0, key="live_gan_seed")
        with st.spinner("Drawing samples…"):
            images = dash.live_gan_samples(model, n, int(seed))
        show_chart(charts.sample_grid(images, [f"#{i}" for i in range(len(images))], _zrange(card),
                                      f"{len(images)} samples drawn with seed {seed}.", "live"), "live-gan")
        return
    fallback = audit.result.provenance.data_spec if audit else None
    typed = st.text_input("Data spec (empty: " + (f"the audit's `{fallback}`" if fallback else
                          f"the card's `{card.dataset}`" if card.dataset else "none: the card names no dataset")
                          + ")", key="live_data_spec",
                          placeholder="npz:test.npz · csv:data.csv?target=label · digits (see docs/card.md)")
    try:
        data = dash.live_data(model, typed, fallback, _roots(args),
                              audit.path.resolve().parent if audit is not None and audit.path is not None else None)
    except (DataError, ValueError, OSError) as exc:
        st.error(f"Cannot load the data for live samples: {exc}")
        return
    if audit is not None and not dash.same_test_split(audit, data):
        st.warning("This data's test split differs from the audit's (other labels): test indices do not name the "
                   "audit's samples.")
    status = dash.live_methods(model)
    runnable = [m for m, r in status.items() if r is None]
    skipped = {m: r for m, r in status.items() if r}
    attacks = dash.live_attacks(model)
    titles = _method_titles(audit)

    pick = st.radio("Samples", [EXPLAINED, ONE_SAMPLE], horizontal=True, key="live_pick")
    c1, c2, c3 = st.columns(3)
    index = None
    n = 1
    if pick == ONE_SAMPLE:
        index = int(c1.number_input(f"Test index (0–{len(data.y_test) - 1})", min_value=0,
                                    max_value=max(0, len(data.y_test) - 1), step=1, key="live_index"))
    else:
        n = c1.slider("How many", 1, dash.LIVE_MAX_SAMPLES, min(4, dash.LIVE_MAX_SAMPLES), key="live_n")
    method = c2.selectbox("Attribution method", runnable, format_func=lambda m: titles.get(m, m), key="live_method")
    seed = c3.number_input("Seed", 0, 10_000, 0, key="live_seed")
    if skipped:
        st.caption("Not available here: " + "; ".join(f"{m} ({r})" for m, r in skipped.items()))
    attack, eps, grid = None, 0.0, []
    if attacks:
        from auditkit.attacks.registry import get_attack

        d1, d2 = st.columns(2)
        attack = d1.selectbox("Attack", attacks, index=attacks.index("pgd-linf") if "pgd-linf" in attacks else 0,
                              key="live_attack")
        norm = get_attack(attack).norm
        grid = sorted({float(e) for e in card.epsilons.get(norm, []) if float(e) > 0}) or \
            ([0.02, 0.05, 0.1, 0.2] if norm == "linf" else [0.25, 0.5, 1.0, 2.0])
        eps = float(d2.select_slider(f"ε ({charts.NORM_LABEL.get(norm, norm)})", options=grid,
                                     value=grid[len(grid) // 2], key=f"live_eps_{norm}"))
    else:
        st.caption("Live attacks run on image models with input bounds; this model's threat model "
                   f"({card.task}) needs the full scan.")
    indices = dash.live_indices(audit, n, index)
    params = {"model": str(model.path), "sha": model.sha256, "indices": indices, "method": method,
              "attack": attack, "eps": eps, "seed": int(seed)}
    if st.button("Recompute", type="primary", key="live_run", disabled=method is None and attack is None):
        try:
            x, y = dash.live_inputs(model, data, indices)
            with st.status(f"Recomputing on {len(indices)} sample(s)…", expanded=True) as box:
                bar = st.progress(0.0)
                items = []
                if method:
                    st.write(f"{titles.get(method, method)}…")
                    items = dash.live_attributions(model, x, y, [method], int(seed))
                bar.progress(0.5)
                adv = None
                if attack:
                    st.write(f"{attack} at ε={eps:g}, then over the ε grid…")
                    adv = dash.live_attack(model, x, y, attack, eps, grid, int(seed))
                bar.progress(1.0)
                box.update(label="Recomputed", state="complete", expanded=False)
            st.session_state["live_result"] = {"params": params, "items": items, "adv": adv}
        except Exception as exc:  # a UI boundary: show the library's message, keep the app alive
            st.error(f"Live computation failed: {exc}")
    res = st.session_state.get("live_result")
    if not res:
        st.info("Choose the settings and press Recompute.")
        return
    if res["params"] != params:
        st.info("The settings changed since the last computation: press Recompute to update.")
        return
    items, adv = res["items"], res["adv"]
    if adv is not None:
        st.dataframe([{"test index": indices[i["index"]], "label": card.class_names[i["label"]],
                       "clean prediction": card.class_names[i["clean_pred"]],
                       "adversarial prediction": card.class_names[i["adv_pred"]],
                       f"fooled within ε={eps:g}": i["success"], "‖δ‖": round(i["norm"], 4)}
                      for i in adv["items"]], hide_index=True)
        show_chart(charts.robustness_curve(adv["threat_model"], adv["norm"], "live"), "live-curve")
    pick = st.selectbox("Show sample", list(range(len(indices))), format_func=lambda i: f"test #{indices[i]}",
                        key="live_show")
    if items:
        st.subheader("Attribution")
        render_attribution_item(card.task, items[pick], titles, _zrange(card), f"live-{pick}", "live")
    if adv is not None:
        st.subheader("Adversarial example")
        it = adv["items"][pick]
        if not it["found"]:
            st.success(f"{attack} found no adversarial example for this sample.")
        else:
            (st.warning if it["success"] else st.success)(
                f"{'Fooled' if it['success'] else 'Not fooled'} at ε={eps:g}: prediction "
                f"{card.class_names[it['clean_pred']]} → {card.class_names[it['adv_pred']]} (‖δ‖ = {it['norm']:.4g})")
            show_chart(charts.adversarial_grid(it, lambda c: card.class_names[int(c)], _zrange(card), adv["norm"], "live"),
                       f"live-adv-{pick}")


# ----------------------------------------------------------------------------- comparison


def view_compare(audits: list[dash.Audit], args: dash.AppArgs) -> None:
    from auditkit.summary import summarize

    st.title("Compare two audits")
    if len(audits) < 2:
        if not audits:
            _no_audits(args)
        else:
            st.info("Load a second results file (sidebar) to compare two audits, e.g. a model before and after "
                    "a change.")
        return
    labels = [x.label for x in audits]
    c1, c2 = st.columns(2)
    la = c1.selectbox("Audit A (before)", labels, index=0, key="cmp_a")
    lb = c2.selectbox("Audit B (after)", labels, index=1, key="cmp_b")
    a, b = audits[labels.index(la)], audits[labels.index(lb)]
    if a is b:
        st.info("Choose two different audits.")
        return
    for col, x in ((c1, a), (c2, b)):
        v = summarize(x.result).verdict
        col.caption(f"verdict: **{getattr(v, 'status', v)}** · {x.task} · data `{x.result.provenance.data_spec}`")

    st.header("Findings")
    diff = dash.compare_findings(a, b)
    m1, m2, m3 = st.columns(3)
    m1.metric("New in B", len(diff.new))
    m2.metric("Fixed (only in A)", len(diff.fixed))
    m3.metric("Unchanged", len(diff.unchanged), help=f"{len(diff.changed)} of them with other figures or severity")
    rows = dash.findings_diff_rows(diff)
    if rows:
        st.dataframe(rows, hide_index=True, key="cmp-findings")
    else:
        st.caption("Neither audit has findings.")
    st.caption("Findings match on their section and title, numbers aside (a finding whose figures moved is the "
               "same finding; its row reads A → B).")

    st.header("Headline figures")
    heads = dash.headline_diff(a, b)
    if heads:
        st.dataframe([{"figure": h["label"], la: h["a"], lb: h["b"], "B − A": h["change"] or "—"} for h in heads],
                     hide_index=True, key="cmp-headlines")
    else:
        st.caption("The audits share no headline figure.")

    st.header("Paired robustness")
    paired = dash.paired_robustness(a, b)
    if not paired:
        st.caption("No norm-ball threat model in both audits.")
    for pr in paired:
        name = charts.NORM_LABEL.get(pr.norm, pr.norm)
        if pr.reason:
            st.info(f"{name}: no paired comparison: {pr.reason}.")
            continue
        st.subheader(f"{name} at the headline ε = {pr.eps:g}")
        p1, p2, p3, p4 = st.columns(4)
        p1.metric("Broken only in A", pr.broken_only_a)
        p2.metric("Broken only in B", pr.broken_only_b)
        p3.metric("Broken in both", pr.broken_both)
        p4.metric("Robust in both", pr.robust_both)
        st.caption(f"{pr.n} paired samples (same test indices); robust {100 * (pr.robust_a or 0):.1f}% in A, "
                   f"{100 * (pr.robust_b or 0):.1f}% in B; exact McNemar p = {pr.p_value:.3g} on the "
                   f"{pr.broken_only_a + pr.broken_only_b} discordant samples.")


# ----------------------------------------------------------------------------- zoo


def view_zoo(audits: list[dash.Audit], args: dash.AppArgs) -> None:
    from auditkit.builtin_checks import all_checks
    from auditkit.zoo import artifact_path, list_models

    st.title("Model zoo")
    if (msg := st.session_state.pop("zoo_message", None)):
        st.success(msg)
    found = dash.zoo_results(args.reports_dir)
    st.dataframe([{"model": m, "results": str(p) if p else "missing", "artifact": "yes" if artifact_path(m).exists()
                   else "missing"} for m, p in found.items()], hide_index=True)
    if not any(found.values()):
        st.info(f"No zoo reports in `{args.reports_dir}`. Create them with:")
        st.code(dash.how_to_create_reports(args.reports_dir), language="bash")
    elif args.zoo:
        st.caption("The zoo's reports are loaded in every view.")
    elif st.button("Load the zoo reports", key="zoo_load"):
        extra = st.session_state.setdefault("extra_results", [])
        extra += [str(p) for p in found.values() if p is not None and str(p) not in extra]
        st.rerun()

    st.header("Quick scan")
    st.caption("Scans zoo models with the quick budget into a temporary folder and adds the results here.")
    trained = [m for m in list_models() if artifact_path(m).exists()]
    models = st.multiselect("Models", trained, key="zoo_models")
    c1, c2 = st.columns(2)
    samples = c1.number_input("Samples", 4, 64, 16, key="zoo_samples")
    checks = c2.multiselect("Checks (empty: all)", list(all_checks()), key="zoo_checks")
    if st.button("Run quick scan", key="zoo_scan", disabled=not models):
        from auditkit.scanning import scan

        bar = st.progress(0.0, text="starting")
        done = []
        for i, m in enumerate(models):
            with st.status(f"Scanning {m} (quick budget, {samples} samples)…", expanded=False) as box:
                try:
                    out = _session_dir() / "scans" / m
                    scan(artifact_path(m), budget="quick", samples=int(samples), out=out, only=checks or None,
                         progress=False)
                    done.append(str(out / "results.json"))
                    box.update(label=f"{m}: done", state="complete")
                except Exception as exc:  # a UI boundary: report and go on with the next model
                    box.update(label=f"{m}: failed", state="error")
                    st.error(f"{m}: {exc}")
            bar.progress((i + 1) / len(models), text=f"{i + 1}/{len(models)} scanned")
        if done:
            extra = st.session_state.setdefault("extra_results", [])
            extra += [p for p in done if p not in extra]
            st.session_state["zoo_message"] = f"Scanned {', '.join(Path(p).parent.name for p in done)}; results added."
            st.rerun()


# ----------------------------------------------------------------------------- main


def main(script_path: str | None = None) -> None:
    """Render the dashboard (called on every Streamlit rerun)."""
    st.set_page_config(page_title="auditkit dashboard", page_icon="🔎", layout="wide")
    args = dash.app_args(script_path or __file__)
    view = sidebar(args)
    audits, errors = load_audits(args)
    sidebar_audits(audits)
    for e in errors:
        st.error(e)
    {"Overview": view_overview, "Audit details": view_details, "Sample explorer": view_explorer,
     "Compare": view_compare, "Live": view_live, "Zoo": view_zoo}[view](audits, args)


if __name__ == "__main__":
    main(__file__)
