"""The self-contained HTML report: one file, plotly.js embedded once, no network at view time.

The page is built in two steps. Python turns each section of the results into a list of
*blocks* (figure, table, key-value list, note, token highlights, checklist, collapsible JSON);
the Jinja2 templates in ``templates/`` lay the blocks out. Sections the report knows
(performance, attributions, explanation-quality, robustness, gan) get their own builders;
any other section (baselines, defenses, what comes later) is rendered generically: its scalar
metrics as a table, nested data as collapsible JSON. A builder that meets data it does not
expect falls back to the generic view with a visible note instead of failing the report.

Every figure's caption names the JSON path it is drawn from.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from typing import Any, Callable

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from auditkit.report import charts
from auditkit.report.charts import Chart, Panel
from auditkit.report.markdown import (
    curve_axes,
    fmt,
    gate_passed,
    gate_rules,
    is_ci_dict,
    model_title,
)
from auditkit.results import SEVERITIES, AuditResult, Section
from auditkit.sections import NORM_LABELS, BaselinesData, DefensesData
from auditkit.sections.explanation_quality import (
    BEATS_RANDOM_RULE,
    RHO_ABS_LABEL,
    RHO_SIGNED_LABEL,
    DeletionInsertion,
)
from auditkit.sections.robustness import Masking, NormBallThreatModel
from auditkit.summary import (
    TITLES,
    AuditSummary,
    Headline,
    SectionSummary,
    display_order,
    format_interval,
    format_value,
    summarize,
)

Block = dict[str, Any]
JSON_LIMIT = 20_000  # characters of a collapsible JSON blob; the rest is in results.json
NORMS = NORM_LABELS  # section order, titles and norm labels: one table each (auditkit.summary, auditkit.sections)


# --------------------------------------------------------------------------- page state


@dataclass
class _Page:
    """Collects the figures of one page (ids in order) and the sections that failed to draw."""

    charts: list[Chart] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)

    def figure(self, chart: Chart | None) -> Block | None:
        if chart is None:
            return None
        self.charts.append(chart)
        return {"kind": "figure", "id": f"fig-{len(self.charts)}", "caption": chart.caption,
                "source": chart.source, "height": chart.height, "width": chart.width,
                "spec": Markup(chart.to_json())}


@dataclass
class _Ctx:
    """What a section builder sees: the card, the page, and the section's JSON path."""

    card: dict[str, Any]
    page: _Page
    name: str

    def src(self, path: str = "") -> str:
        return f"sections.{self.name}.data" + (f".{path}" if path else "")

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.card.get("class_names") or []]

    def cls(self, i: Any) -> str:
        names = self.class_names
        if isinstance(i, int) and 0 <= i < len(names):
            return names[i]
        return "—" if i is None else str(i)

    @property
    def bounds(self) -> tuple[float, float]:
        b = self.card.get("bounds")
        return (float(b[0]), float(b[1])) if isinstance(b, (list, tuple)) and len(b) == 2 else (0.0, 1.0)


# --------------------------------------------------------------------------- block helpers


def _note(text: str, level: str = "info") -> Block:
    return {"kind": "note", "text": text, "level": level}


def _heading(text: str) -> Block:
    return {"kind": "heading", "text": text}


def _kv(items: list[tuple[str, Any]], source: str | None = None) -> Block:
    return {"kind": "kv", "items": [(k, v if isinstance(v, (dict, Markup)) else fmt(v)) for k, v in items],
            "source": source}


def _table(columns: list[str], rows: list[list[Any]], caption: str | None = None,
           source: str | None = None) -> Block:
    """``rows`` cells are plain values (formatted here) or ``{"text", "cls", "style", "title"}`` dicts."""
    def cell(v: Any) -> dict[str, Any]:
        return v if isinstance(v, dict) and "text" in v else {"text": fmt(v)}
    return {"kind": "table", "columns": columns, "rows": [[cell(v) for v in r] for r in rows],
            "caption": caption, "source": source}


def _badge(status: str, text: str | None = None) -> dict[str, Any]:
    """A table cell shown as a coloured badge (``status``: pass/warn/fail/ok/skipped/...)."""
    return {"text": text or status, "badge": status}


def _json_block(summary: str, value: Any, source: str) -> Block:
    text = json.dumps(value, indent=1, default=str)
    truncated = len(text) > JSON_LIMIT
    if truncated:
        text = text[:JSON_LIMIT] + "\n…"
    return {"kind": "json", "summary": summary, "text": text, "source": source, "truncated": truncated}


def _metric_cells(d: dict[str, Any], kind: str = "pct") -> list[str]:
    """Value, 95% CI and n of a ``{"value", "ci_low", "ci_high", "n"}`` figure, formatted as the
    summary formats headlines (``kind``: ``"pct"`` a proportion, ``"num"`` a score)."""
    k = "proportion" if kind == "pct" else "score"
    value = d.get("value") if isinstance(d.get("value"), (int, float)) else None
    return [format_value(value, k), format_interval(d.get("ci_low"), d.get("ci_high"), k) or "—", fmt(d.get("n"))]


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


# --------------------------------------------------------------------------- generic sections

SHORT_LIST = 12  # lists of at most this many scalars are shown inline
WIDE_DICT = 20  # dicts with more keys than this are not flattened into tables (e.g. a vocabulary map)


def _short_list(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= SHORT_LIST and all(_is_scalar(x) for x in v)


def _leaf(v: Any) -> bool:
    return _is_scalar(v) or is_ci_dict(v) or _short_list(v)


def _leaf_text(v: Any) -> str:
    """A leaf for a table cell: scalars formatted, CI figures with their interval, short lists joined."""
    if is_ci_dict(v):
        val = v.get("value")
        kind = "pct" if isinstance(val, (int, float)) and 0 <= val <= 1 else "num"
        n = f", n = {v['n']}" if isinstance(v.get("n"), int) else ""
        return f"{fmt(val, kind)} ({fmt(v.get('ci_low'), kind)}–{fmt(v.get('ci_high'), kind)}{n})"
    if isinstance(v, list):
        return ", ".join(fmt(x) for x in v) or "—"
    return fmt(v)


def _flatten(d: dict[str, Any], prefix: str = "", depth: int = 0,
             max_depth: int = 3) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Leaves (scalars, CI figures, short lists) of a nested dict under dotted keys, and the rest."""
    leaves: list[tuple[str, Any]] = []
    rest: list[tuple[str, Any]] = []
    for k, v in d.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if _leaf(v):
            leaves.append((path, v))
        elif isinstance(v, dict) and v and depth < max_depth and len(v) <= WIDE_DICT:
            sub_leaves, sub_rest = _flatten(v, path, depth + 1, max_depth)
            leaves += sub_leaves
            rest += sub_rest
        else:
            rest.append((path, v))
    return leaves, rest


class _Generic:
    """Renders data of a layout the report does not know: scalars and CI figures as tables,
    curves as line charts with their intervals, records as tables, the rest as collapsible JSON."""

    def __init__(self, page: _Page) -> None:
        self.page = page

    def blocks(self, data: dict[str, Any], source: str, depth: int = 0) -> list[Block]:
        out: list[Block] = []
        leaves = [(k, v) for k, v in data.items() if _is_scalar(v) or _short_list(v)]
        cis = [(k, v) for k, v in data.items() if is_ci_dict(v)]
        if leaves:
            out.append(_kv([(k.replace("_", " "), _leaf_text(v)) for k, v in leaves], source))
        if cis:
            out.append(_table(["metric", "value", "95% CI", "n"],
                              [[k.replace("_", " "), *_metric_cells(v, _kind(v))] for k, v in cis], source=source))
        for k, v in data.items():
            if not _leaf(v):
                out.extend(self.part(str(k), v, f"{source}.{k}", depth))
        return out

    def part(self, name: str, v: Any, source: str, depth: int) -> list[Block]:
        axes = curve_axes(v)
        if axes is not None:
            return [self.page.figure(self.curve(name, v, source, axes))]
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            return self.records(name, v, None, source)
        if isinstance(v, dict) and v:
            if _similar_records(v):
                return self.records(name, list(v.values()), [str(k) for k in v], source)
            if len(v) <= WIDE_DICT:
                head: list[Block] = [_heading(name.replace("_", " ")) if depth == 0 else _subheading(name.replace("_", " "))]
                leaves, rest = _flatten(v)
                body: list[Block] = []
                if leaves:
                    body.append(_kv([(p.replace("_", " "), _leaf_text(x)) for p, x in leaves], source))
                for p, x in rest:
                    body.extend(self.part(f"{name}.{p}", x, f"{source}.{p}", depth + 1))
                return head + body
        return [_json_block(name, v, source)]

    def records(self, name: str, rows: list[dict[str, Any]], labels: list[str] | None, source: str) -> list[Block]:
        """A table of similar dicts (flattened); transposed when there are few of them."""
        flat = [_flatten(r, max_depth=2) for r in rows]
        keys: list[str] = []
        for leaves, _ in flat:
            keys += [p for p, _ in leaves if p not in keys]
        rest = {(labels[i] if labels else str(i)): dict(r) for i, (_, r) in enumerate(flat) if r}
        out: list[Block] = []
        if keys:
            values = [dict(leaves) for leaves, _ in flat]
            names = labels or [str(i) for i in range(len(rows))]
            if labels and len(rows) <= 8 and len(keys) > 6:
                body = [[k.replace("_", " ")] + [_leaf_text(vals[k]) if k in vals else "—" for vals in values]
                        for k in keys[:60]]
                out.append(_table(["", *names], body, caption=name.replace("_", " "), source=source))
            else:
                cols = keys[:12]
                body = [([names[i]] if labels else []) + [_leaf_text(vals[k]) if k in vals else "—" for k in cols]
                        for i, vals in enumerate(values[:60])]
                out.append(_table(([""] if labels else []) + [c.replace("_", " ") for c in cols], body,
                                  caption=name.replace("_", " "), source=source))
        curves = [(f"{label}.{p}", x) for label, r in rest.items() for p, x in r.items() if curve_axes(x)]
        for label, x in curves[:6]:
            out.append(self.page.figure(self.curve(f"{name} {label}", x, f"{source}.{label}" if labels else source,
                                                   curve_axes(x))))
        if rest:
            out.append(_json_block(f"{name.replace('_', ' ')}: other values", rest, source))
        return out

    def curve(self, name: str, points: list[dict[str, Any]], source: str, axes: tuple[str, list[str], bool]) -> Chart:
        x, series, band = axes
        data: dict[str, Any] = {}
        for i, key in enumerate(series):
            ys = [p[key]["value"] if is_ci_dict(p[key]) else p[key] for p in points]
            lo = hi = None
            if is_ci_dict(points[0][key]):
                lo, hi = [p[key].get("ci_low") for p in points], [p[key].get("ci_high") for p in points]
            elif band and i == 0:
                lo, hi = [p["ci_low"] for p in points], [p["ci_high"] for p in points]
            data[key.replace("_", " ")] = ([p[x] for p in points], ys, lo, hi)
        # Name the curve by its place in the section (e.g. "discriminator.curve"), not by its last key.
        label = source.split(".data.", 1)[1] if ".data." in source else name
        return charts.curve_chart(data, x, f"{label.replace('_', ' ')} against {x} (shaded: 95% interval where "
                                  "the results give one).", source)


def _similar_records(v: dict[str, Any]) -> bool:
    """A dict of 2..60 dicts sharing most of their keys (e.g. one entry per baseline model)."""
    if not 2 <= len(v) <= 60 or not all(isinstance(r, dict) and r for r in v.values()):
        return False
    keys = [set(r) for r in v.values()]
    common, union = set.intersection(*keys), set.union(*keys)
    return len(common) >= max(1, len(union) / 2)


def _kind(v: dict[str, Any]) -> str:
    val = v.get("value")
    return "pct" if isinstance(val, (int, float)) and 0 <= val <= 1 else "num"


def _subheading(text: str) -> Block:
    return {"kind": "subheading", "text": text}


def generic_blocks(data: dict[str, Any], source: str, page: _Page | None = None) -> list[Block]:
    """Any section's data, rendered without knowing its layout (see :class:`_Generic`)."""
    return _Generic(page or _Page()).blocks(data, source)


# --------------------------------------------------------------------------- performance


def _performance(d: dict[str, Any], ctx: _Ctx) -> list[Block]:
    blocks: list[Block] = []
    rows = []
    for key, label, kind in (("accuracy", "accuracy", "pct"), ("pr_auc", "PR-AUC (positive class)", "num"),
                             ("roc_auc", "ROC-AUC (positive class)", "num")):
        if is_ci_dict(d.get(key)):
            rows.append([label, *_metric_cells(d[key], kind)])
    if rows:
        blocks.append(_table(["metric", "value", "95% CI", "n"], rows, source=ctx.src()))
    extra = [("positive class", d.get("positive_class")), ("prevalence", d.get("prevalence")),
             ("expected calibration error", (d.get("calibration") or {}).get("ece"))]
    extra = [(k, v) for k, v in extra if v is not None]
    if extra:
        blocks.append(_kv(extra))
    per_class = d.get("per_class") or []
    if per_class:
        blocks.append(_heading("Per class"))
        blocks.append(_table(
            ["class", "support", "precision", "recall", "recall 95% CI", "F1"],
            [[r.get("class"), r.get("support"), r.get("precision"), r.get("recall"),
              fmt_ci_dict(r.get("recall_ci")), r.get("f1")] for r in per_class],
            source=ctx.src("per_class")))
    cm = d.get("confusion_matrix")
    if cm:
        blocks.append(ctx.page.figure(charts.confusion_matrix(cm, d.get("class_names") or ctx.class_names,
                                                              ctx.src("confusion_matrix"))))
    cal = d.get("calibration") or {}
    if cal.get("bins"):
        blocks.append(ctx.page.figure(charts.reliability(cal["bins"], cal.get("ece"), ctx.src("calibration.bins"))))
    subsets = d.get("subsets") or {}
    if subsets:
        blocks.append(_heading("Subsets"))
        blocks.append(_table(["subset", "accuracy", "95% CI", "n"],
                             [[k, *_metric_cells(v)] for k, v in subsets.items() if isinstance(v, dict)],
                             source=ctx.src("subsets")))
    return blocks


def fmt_ci_dict(d: Any) -> str:
    """The 95% interval of a ``{"value", "ci_low", "ci_high"}`` proportion, as percentages."""
    return _ci_range(d.get("ci_low"), d.get("ci_high")) if is_ci_dict(d) else "—"


def _ci_range(lo: Any, hi: Any) -> str:
    return "—" if lo is None or hi is None else f"{fmt(lo, 'pct')}–{fmt(hi, 'pct')}"


# --------------------------------------------------------------------------- attributions


def _token_style(a: float, top: float) -> str:
    """Background for a token: red for positive attribution, blue for negative, alpha by size."""
    alpha = min(1.0, abs(a) / top) * 0.8 if top > 0 else 0.0
    rgb = "178,24,43" if a > 0 else "33,102,172"
    ink = "; color: #fff" if alpha > 0.45 else ""
    return f"background: rgba({rgb},{alpha:.2f}){ink}"


def _attributions(d: dict[str, Any], ctx: _Ctx) -> list[Block]:
    blocks: list[Block] = []
    methods = d.get("methods") or {}
    task = ctx.card.get("task")
    blocks.append(_note(f"Attributions of the {d.get('target', 'predicted class')} on {d.get('n_samples', '?')} "
                        "test samples; positive values (red) push the output up, negative (blue) down."))
    if methods:
        blocks.append(_table(
            ["method", "status", "mean |attribution|", "note"],
            [[m, _badge("ok" if r.get("status") == "ok" else "skipped", r.get("status", "?")),
              r.get("mean_abs"), r.get("title") if r.get("status") == "ok" else r.get("reason")]
             for m, r in methods.items()],
            source=ctx.src("methods")))
    gallery = d.get("gallery") or []
    ok = [m for m, r in methods.items() if r.get("status") == "ok"] or \
        (list((gallery[0].get("attributions") or {})) if gallery else [])
    if gallery and task == "image-classification":
        blocks.append(ctx.page.figure(_image_gallery(gallery, ok, ctx)))
    elif gallery and task == "text-classification":
        blocks.append(_token_gallery(gallery, ok, ctx))
    elif gallery and task == "tabular-classification":
        blocks.append(_heading("Explained samples"))
        blocks.extend(_tabular_gallery(gallery, ok, ctx))
    if d.get("global_importance"):
        blocks.append(_heading("Global importance"))
        blocks.append(ctx.page.figure(charts.feature_importance(d["global_importance"], ctx.src("global_importance"))))
    if d.get("token_importance"):
        blocks.append(_heading("Most important tokens"))
        blocks.append(ctx.page.figure(charts.token_importance(d["token_importance"], ctx.src("token_importance"))))
    return blocks


def _image_gallery(gallery: list[dict[str, Any]], methods: list[str], ctx: _Ctx) -> Chart:
    rows = []
    for r, item in enumerate(gallery):
        kind, img = charts.as_image(item.get("input"))
        title = f"#{item.get('index')} y={item.get('label_name') or item.get('label')} ŷ={item.get('prediction_name') or item.get('prediction')}"
        row: list[Panel | None] = [Panel(img, title, kind, zrange=ctx.bounds, hover="pixel")]
        for m in methods:
            a = (item.get("attributions") or {}).get(m)
            row.append(None if a is None else Panel(a, m if r == 0 else "", "signed", under=item.get("input"),
                                                    zrange=ctx.bounds, hover=m))
        rows.append(row)
    chart = charts.image_grid(rows, "", ctx.src("gallery"), cell_px=125)
    chart.caption = ("Each row is one explained test sample (true class y, prediction ŷ); each column one "
                     "method's attribution over the input (red raises the explained logit, blue lowers it; "
                     "each panel scaled to its own largest |value|).")
    return chart


def _token_gallery(gallery: list[dict[str, Any]], methods: list[str], ctx: _Ctx) -> Block:
    rows = []
    for item in gallery:
        tokens = item.get("input") or []
        lines = []
        for m in methods:
            a = (item.get("attributions") or {}).get(m) or []
            top = max((abs(v) for v in a if v is not None), default=0.0)
            lines.append({"method": m, "tokens": [
                {"text": t, "style": _token_style(v or 0.0, top), "title": f"{m}: {fmt(v)}"}
                for t, v in zip(tokens, a)]})
        rows.append({"label": f"#{item.get('index')} true {item.get('label_name') or item.get('label')}, "
                              f"predicted {item.get('prediction_name') or item.get('prediction')}", "lines": lines})
    return {"kind": "tokens", "rows": rows, "source": ctx.src("gallery"),
            "caption": "Tokens of each explained sentence, shaded by attribution (red raises the explained "
                       "class, blue lowers it; each line scaled to its largest |value|; hover for the value)."}


def _tabular_gallery(gallery: list[dict[str, Any]], methods: list[str], ctx: _Ctx) -> list[Block]:
    blocks: list[Block] = []
    for n, item in enumerate(gallery):
        values = item.get("input") or {}
        attrs = item.get("attributions") or {}
        tops = {m: max((abs(v) for v in (attrs.get(m) or {}).values() if v is not None), default=0.0) for m in methods}
        rows = []
        for feat, value in values.items():
            row: list[Any] = [feat, value]
            for m in methods:
                v = (attrs.get(m) or {}).get(feat)
                row.append({"text": fmt(v), "style": _token_style(v or 0.0, tops[m]), "cls": "num"})
            rows.append(row)
        table = _table(["feature", "value", *methods], rows, source=f"{ctx.src('gallery')}[{n}]")
        label = (f"#{item.get('index')}: true {item.get('label_name') or item.get('label')}, "
                 f"predicted {item.get('prediction_name') or item.get('prediction')}")
        blocks.append({"kind": "details", "summary": label, "open": n == 0, "blocks": [table]})
    return blocks


# --------------------------------------------------------------------------- explanation quality


def _verdict(verdict: Any) -> list[Any]:
    """A short pass/fail badge and the verdict's explanation, as two table cells."""
    v = str(verdict or "")
    ok = v.startswith("passes")
    head, _, why = v.partition(":")
    return [_badge("pass" if ok else "fail", "passes" if ok else "fails" if v else "—"), why.strip() or None]


def _quality(d: dict[str, Any], ctx: _Ctx) -> list[Block]:
    blocks: list[Block] = []
    comp = d.get("ig_completeness")
    blocks.append(_heading("Integrated gradients: completeness"))
    if isinstance(comp, dict):
        blocks.append(_kv([("steps", comp.get("n_steps")),
                           ("met", Markup(f'<span class="badge badge-{"pass" if comp.get("met") else "fail"}">'
                                          f'{"yes" if comp.get("met") else "no"}</span>')),
                           ("median relative error", comp.get("median")), ("p95 relative error", comp.get("p95")),
                           ("max relative error", comp.get("max")), ("tolerance (p95)", comp.get("tol")),
                           ("samples", comp.get("n_samples"))], ctx.src("ig_completeness")))
        if comp.get("history"):
            blocks.append(ctx.page.figure(charts.ig_history(comp["history"], comp.get("tol"),
                                                            ctx.src("ig_completeness.history"))))
    else:
        blocks.append(_note("Not run: integrated gradients is not available for this model."))

    blocks.append(_heading("Model-parameter randomisation test"))
    rand = d.get("randomisation")
    if isinstance(rand, dict) and rand.get("methods"):
        blocks.append(ctx.page.figure(charts.randomisation(rand, ctx.src("randomisation.methods"))))
        blocks.append(_table(
            ["method", RHO_ABS_LABEL, RHO_SIGNED_LABEL, "similarity to |input|", "verdict", "why"],
            [[m, r.get("final_spearman_abs"), r.get("final_spearman_raw"), r.get("input_similarity"),
              *_verdict(r.get("verdict"))] for m, r in rand["methods"].items()],
            source=ctx.src("randomisation.methods")))
    else:
        blocks.append(_note("Not run: no gradient method that the test applies to was available "
                            "(it needs an eager module)."))
    for m, reason in ((rand or {}).get("skipped") or {}).items():
        blocks.append(_note(f"{m}: skipped — {reason}"))

    blocks.append(_heading("Deletion and insertion"))
    curves = d.get("deletion_insertion") or {}
    if curves:
        blocks.append(ctx.page.figure(charts.deletion_insertion(curves, ctx.src("deletion_insertion"))))
        blocks.append(_table(
            ["method", "deletion AUC", "random", "insertion AUC", "random", "deletion wins", "insertion wins",
             "beats random"],
            [[m, c.get("deletion_auc"), c.get("deletion_auc_random"), c.get("insertion_auc"),
              c.get("insertion_auc_random"), fmt(c.get("deletion_win_rate"), "pct"),
              fmt(c.get("insertion_win_rate"), "pct"), _beats(c)]
             for m, c in curves.items()],
            caption="AUC: area under the mean curve (deletion: lower is better; insertion: higher is better); "
                    "wins: share of samples whose own curve beats the random order. A method "
                    + BEATS_RANDOM_RULE + ".",
            source=ctx.src("deletion_insertion")))
    else:
        blocks.append(_note("Not run: none of the ranked methods (IG, saliency, occlusion, Grad-CAM) ran."))

    blocks.append(_heading("Infidelity and sensitivity"))
    inf = d.get("infidelity_sensitivity")
    if isinstance(inf, dict) and inf:
        rows, skipped = [], []
        for m, r in inf.items():
            if isinstance(r, dict) and "skipped" in r:
                skipped.append(f"{m}: {r['skipped']}")
            elif isinstance(r, dict):
                rows.append([m, r.get("infidelity_mean"), r.get("infidelity_median"), r.get("sensitivity_mean"),
                             r.get("sensitivity_median"), r.get("n_samples")])
        if rows:
            blocks.append(_table(["method", "infidelity mean", "median", "max-sensitivity mean", "median", "n"], rows,
                                 caption="captum's infidelity (squared logit units, normalised) and "
                                         "max-sensitivity (relative change of the map); smaller is better.",
                                 source=ctx.src("infidelity_sensitivity")))
        blocks.extend(_note(f"Skipped {s}") for s in skipped)
    elif ctx.card.get("task") == "text-classification":
        blocks.append(_note("Not run: infidelity and sensitivity perturb continuous inputs; token ids are discrete."))
    else:
        blocks.append(_note("Not run: neither saliency nor integrated gradients was available."))

    gt = d.get("ground_truth")
    blocks.append(_heading("Agreement with the known causes"))
    if isinstance(gt, dict) and gt:
        blocks.append(_ground_truth(gt, ctx))
    else:
        blocks.append(_note("Not run: the data carries no ground truth (only the zoo's synthetic datasets do)."))
    return blocks


def _beats(curves: dict[str, Any]) -> dict[str, Any]:
    """On which curves the method beats a random ranking, by the one rule (BEATS_RANDOM_RULE)."""
    c = DeletionInsertion.model_validate(curves)
    deletion, insertion = c.beats_random("deletion"), c.beats_random("insertion")
    return _badge("pass" if deletion and insertion else "warn" if deletion or insertion else "fail",
                  "deletion and insertion" if deletion and insertion else "deletion only" if deletion
                  else "insertion only" if insertion else "neither")


def _ground_truth(gt: dict[str, Any], ctx: _Ctx) -> Block:
    first = next(iter(gt.values()))
    if isinstance(first, dict) and "precision_at_k" in first:
        return _table(
            ["method", "precision@k", "k", "AUROC", "causal above all distractors", "causal feature ranks"],
            [[m, r.get("precision_at_k"), r.get("k"), r.get("auroc"),
              _badge("pass" if r.get("causal_outrank_non_causal") else "fail",
                     "yes" if r.get("causal_outrank_non_causal") else "no"),
              ", ".join(f"{f} {fmt(v)}" for f, v in (r.get("ranks") or {}).items())] for m, r in gt.items()],
            caption="Global importance against the features that cause the label (1 = most important).",
            source=ctx.src("ground_truth"))
    return _table(
        ["method", "hit@1", "random", "hit@k", "random", "first relevant rank", "random", "sentences"],
        [[m, r.get("hit_at_1"), (r.get("random") or {}).get("hit_at_1"), r.get("hit_at_k"),
          (r.get("random") or {}).get("hit_at_k"), r.get("mean_first_rank"),
          (r.get("random") or {}).get("mean_first_rank"), r.get("n_sentences")] for m, r in gt.items()],
        caption="Per-token attributions against the tokens that decide the label (random: a random ranking).",
        source=ctx.src("ground_truth"))


# --------------------------------------------------------------------------- robustness


def is_ensemble(v: Any) -> bool:
    """An ``EnsembleResult.to_dict()`` (a threat model's results)."""
    return isinstance(v, dict) and isinstance(v.get("curve"), list) and "per_attack" in v


def _robustness(d: dict[str, Any], ctx: _Ctx) -> list[Block]:
    blocks: list[Block] = []
    if d.get("budget"):
        blocks.append(_kv([("attack budget", d.get("budget"))]))
    masking = d.get("masking")
    if isinstance(masking, dict):
        blocks.append(_heading("Gradient-masking checklist"))
        blocks.extend(_masking(masking, ctx))
    tms = d.get("threat_models") or {}
    for norm, tm in tms.items():
        blocks.extend(_threat_model(tm, norm, ctx, f"threat_models.{norm}", d))
    generic = _Generic(ctx.page)
    for key in [k for k in d if k not in ("budget", "threat_models", "masking", "headline_eps", "skipped")]:
        v = d[key]
        if is_ensemble(v):
            blocks.extend(_threat_model(v, str(v.get("norm", key)), ctx, key, d, title=key))
        elif isinstance(v, dict) and v and any(is_ensemble(x) for x in v.values()):
            for sub, x in v.items():
                if is_ensemble(x):
                    blocks.extend(_threat_model(x, str(x.get("norm", sub)), ctx, f"{key}.{sub}", d,
                                                title=f"{key}: {sub}"))
                else:
                    blocks.extend(generic.part(f"{key}: {sub}", x, ctx.src(f"{key}.{sub}"), 0))
        elif isinstance(v, dict):
            blocks.append(_heading(_ROBUSTNESS_PARTS.get(key, key.replace("_", " ").capitalize())))
            blocks.extend(generic.blocks(v, ctx.src(key), depth=1))
        else:
            blocks.extend(generic.part(key, v, ctx.src(key), 0) if not _leaf(v) else [_kv([(key, _leaf_text(v))])])
    skipped = d.get("skipped")
    if isinstance(skipped, dict):
        for part, reason in skipped.items():
            blocks.append(_note(f"{part}: not run — {reason}"))
    elif skipped:
        blocks.append(_note(f"Not run: {skipped}"))
    return blocks


_ROBUSTNESS_PARTS = {
    "tabular": "Tabular threat model (feature constraints)",
    "text": "Word substitutions",
    "text_unconstrained": "Word substitutions without the label-preserving rule",
    "embedding_diagnostic": "Embedding-space diagnostic",
    "discriminator": "Discriminator under attack",
}


def _masking(m: dict[str, Any], ctx: _Ctx) -> list[Block]:
    checks = [c for c in m.get("checks") or [] if isinstance(c, dict)]
    blocks: list[Block] = []
    if checks:  # the summary's statement, which agrees with the checklist below it
        masking = Masking.model_validate(m)
        blocks.append(_note(masking.statement + (" (Carlini et al. 2019)" if masking.suspected else ""),
                            "info" if masking.outcome == "clean" else "warn"))
    blocks.append({"kind": "checklist", "source": ctx.src("masking.checks"),
                   "items": [{"name": str(c.get("name", "?")), "status": str(c.get("status", "?")),
                              "evidence": str(c.get("evidence", "") or "")} for c in checks]})
    return blocks


def _threat_model(tm: dict[str, Any], norm: str, ctx: _Ctx, path: str, section: dict[str, Any],
                  title: str | None = None) -> list[Block]:
    label = NORMS.get(norm, norm)
    blocks: list[Block] = [_heading(title or f"{label} threat model")]
    if not isinstance(tm, dict):
        return blocks + [_json_block(path, tm, ctx.src(path))]
    if tm.get("skipped") or tm.get("reason") and not tm.get("curve"):
        return blocks + [_note(f"Not run: {tm.get('skipped') or tm.get('reason')}")]
    attacks = tm.get("attacks") or list(tm.get("per_attack") or {})
    blocks.append(_kv([("attacks, in order", ", ".join(attacks)), ("budget", tm.get("budget")),
                       ("input bounds", str(tm.get("bounds"))), ("seed", tm.get("seed"))]))
    fine = "fine_curve" if tm.get("fine_curve") else "curve"
    blocks.append(ctx.page.figure(charts.robustness_curve(tm, norm, ctx.src(f"{path}.{fine}"))))
    try:  # THE headline ε, as the threat model's typed curve chooses it
        head = NormBallThreatModel.model_validate(tm).to_curve(norm, ctx.src(path)).headline
    except ValueError:
        head = None
    eps_head = None if head is None else head.x
    curve = tm.get("curve") or []
    blocks.append(_table(
        ["ε", "robust accuracy", "95% CI", "robust / n"],
        [[{"text": fmt(p.get("eps")), "cls": "strong" if p.get("eps") == eps_head else ""},
          fmt(p.get("robust_accuracy"), "pct"), _ci_range(p.get("ci_low"), p.get("ci_high")),
          f"{p.get('n_robust', '—')} / {p.get('n', '—')}"] for p in curve],
        caption="Worst case over the ensemble at each ε of the grid: a sample counts as robust when it is "
                "classified correctly and no attack found an adversarial point within ε"
                + (f" (headline ε = {eps_head:g} in bold)." if eps_head is not None else ".")
                + " Fixed-ε attacks sweep the grid from the largest ε down: a sample an attack failed on at a "
                  "larger ε counts as robust to it at the smaller ones (the balls are nested).",
        source=ctx.src(f"{path}.curve")))
    per = tm.get("per_attack") or {}
    if per:
        grid = tm.get("epsilons") or [p.get("eps") for p in curve]
        last = len(grid) - 1
        rows = []
        for name, a in per.items():
            own = a.get("robust_accuracy") or []
            cum = a.get("cumulative_robust_accuracy") or []
            rows.append([name, a.get("kind"), a.get("family"), a.get("source"),
                         fmt(own[last] if last < len(own) else None, "pct"),
                         fmt(cum[last] if last < len(cum) else None, "pct"), a.get("n_smallest"),
                         a.get("n_attacked"), a.get("forward_passes"), a.get("backward_passes"), a.get("queries"),
                         a.get("seconds")])
        eps_last = grid[last] if grid else None
        blocks.append(_table(
            ["attack", "kind", "family", "source", f"alone @ε={fmt(eps_last)}", f"ensemble so far @ε={fmt(eps_last)}",
             "smallest δ on", "attacked", "forwards", "backwards", "queries", "seconds"], rows,
            caption="Per attack, in run order: its own robust accuracy at the largest ε (— where it did not run on "
                    "every sample), the ensemble's after it, and on how many samples it found the smallest "
                    "perturbation.", source=ctx.src(f"{path}.per_attack")))
    gallery = tm.get("gallery") or []
    if gallery:
        blocks.append(_heading(f"{label} adversarial examples"))
        blocks.extend(_adversarial_gallery(gallery, ctx, ctx.src(f"{path}.gallery")))
    return blocks


def _adversarial_gallery(gallery: list[dict[str, Any]], ctx: _Ctx, source: str) -> list[Block]:
    images = [g for g in gallery if isinstance(g.get("shape"), list) and len(g["shape"]) >= 2]
    blocks: list[Block] = []
    if images:
        rows = []
        for g in images:
            shape = g["shape"]
            kind, clean = charts.as_image(g.get("clean"), shape)
            _, adv = charts.as_image(g.get("adversarial"), shape)
            _, delta = charts.as_image(g.get("perturbation"), shape)
            if kind == "rgb":
                delta = charts.sum_channels(delta)  # one signed map per pixel
            rows.append([
                Panel(clean, f"clean: y={ctx.cls(g.get('label'))} ŷ={ctx.cls(g.get('clean_pred'))}", kind,
                      zrange=ctx.bounds, hover="pixel"),
                Panel(adv, f"adversarial: ŷ={ctx.cls(g.get('adv_pred'))}", kind, zrange=ctx.bounds, hover="pixel"),
                Panel(delta, f"δ: ‖δ‖={fmt(g.get('norm'))} ({g.get('attack')})", "signed", hover="δ"),
            ])
        chart = charts.image_grid(charts.pack(rows, 2), "", source, cell_px=130)
        chart.caption = ("Clean input, the smallest adversarial input any attack found, and the perturbation δ "
                         "(blue negative, red positive), with the true class y and the predictions ŷ.")
        blocks.append(ctx.page.figure(chart))
    others = [g for g in gallery if g not in images]
    features = [f.get("name") for f in ctx.card.get("features") or []]
    for n, g in enumerate(others):
        clean, adv, delta = g.get("clean"), g.get("adversarial"), g.get("perturbation")
        head = (f"#{g.get('index')}: y={ctx.cls(g.get('label'))}, ŷ {ctx.cls(g.get('clean_pred'))} → "
                f"{ctx.cls(g.get('adv_pred'))} ({g.get('attack')}, ‖δ‖={fmt(g.get('norm'))})")
        if isinstance(clean, list) and isinstance(adv, list) and charts.depth(clean) == 1:
            names = features if len(features) == len(clean) else [str(i) for i in range(len(clean))]
            rows = [[names[i], clean[i], adv[i], (delta or [None] * len(clean))[i]]
                    for i in range(len(clean)) if clean[i] != adv[i]]
            blocks.append({"kind": "details", "summary": head, "open": n == 0,
                           "blocks": [_table(["feature", "clean", "adversarial", "δ"], rows,
                                             caption="Changed features only.", source=source)]})
        else:
            blocks.append(_json_block(head, g, source))
    return blocks


# --------------------------------------------------------------------------- GAN


def _gan(d: dict[str, Any], ctx: _Ctx) -> list[Block]:
    blocks: list[Block] = []
    judge = d.get("judge") or {}
    blocks.append(_kv([("samples generated", d.get("n_samples")), ("latent dimensions", d.get("latent_dim")),
                       ("seed", d.get("seed")), ("judge classifier", judge.get("name")),
                       ("judge available", judge.get("available"))], ctx.src()))
    for part, reason in (d.get("skipped") or {}).items():
        blocks.append(_note(f"{part}: not run — {reason}"))
    grid = d.get("sample_grid") or []
    if grid:
        blocks.append(_heading("Samples"))
        per_row = 8
        rows: list[list[Panel | None]] = []
        for i, s in enumerate(grid):
            if i % per_row == 0:
                rows.append([])
            kind, img = charts.as_image(s.get("image"))
            title = "" if s.get("prediction") is None else \
                f"{s.get('prediction_name') or s.get('prediction')} ({fmt(s.get('confidence'))})"
            rows[-1].append(Panel(img, title, kind, zrange=ctx.bounds, hover="pixel"))
        chart = charts.image_grid(rows, "", ctx.src("sample_grid"), cell_px=110)
        chart.caption = "Generated samples with the judge's class and confidence."
        blocks.append(ctx.page.figure(chart))
    cov = d.get("coverage")
    if isinstance(cov, dict):
        blocks.append(_heading("Class coverage"))
        blocks.append(ctx.page.figure(charts.class_histogram(cov, ctx.class_names, ctx.src("coverage.histogram"))))
        blocks.append(_kv([("classes covered", f"{cov.get('classes_covered')} of {len(cov.get('histogram') or [])}"),
                           ("missing classes", ", ".join(map(str, cov.get("missing_classes") or [])) or "none"),
                           ("class entropy (1 = uniform)", cov.get("entropy")),
                           ("largest class share", cov.get("largest_share")),
                           ("confident fraction", fmt(cov.get("confident_fraction"), "pct")),
                           ("mode collapse", cov.get("mode_collapse"))], ctx.src("coverage")))
    q = d.get("quality")
    if isinstance(q, dict):
        blocks.append(_heading("Sample quality (Fréchet distance)"))
        blocks.append(ctx.page.figure(charts.fid(q, ctx.src("quality"))))
        blocks.append(_kv([("FID", q.get("fid")), ("real-vs-real reference", q.get("fid_real_vs_real")),
                           ("ratio", q.get("fid_ratio")), ("features", q.get("features")),
                           ("samples", q.get("n_samples"))], ctx.src("quality")))
    mem = d.get("memorisation")
    if isinstance(mem, dict):
        blocks.append(_heading("Memorisation"))
        blocks.append(_kv([("suspected", mem.get("memorisation_suspected")),
                           ("median distance to nearest train / test image", mem.get("ratio")),
                           ("same ratio for real test images", mem.get("ratio_real")),
                           ("relative ratio (threshold)", f"{fmt(mem.get('relative_ratio'))} "
                                                          f"(< {fmt(mem.get('relative_ratio_threshold'))} suspected)"),
                           ("near-copy fraction (threshold)", f"{fmt(mem.get('near_copy_fraction'), 'pct')} "
                                                              f"(> {fmt(mem.get('near_copy_fraction_threshold'), 'pct')} suspected)")],
                          ctx.src("memorisation")))
        pairs = [p for p in mem.get("closest_pairs") or [] if p.get("sample_image") is not None]
        if pairs:
            rows = [[Panel(charts.as_image(p["sample_image"])[1], f"sample #{p.get('sample')}",
                           charts.as_image(p["sample_image"])[0], zrange=ctx.bounds) for p in pairs],
                    [Panel(charts.as_image(p.get("train_image"))[1], f"train #{p.get('train')} (d={fmt(p.get('distance'))})",
                           charts.as_image(p.get("train_image"))[0], zrange=ctx.bounds) for p in pairs]]
            chart = charts.image_grid(rows, "", ctx.src("memorisation.closest_pairs"), cell_px=110)
            chart.caption = "The generated samples closest to a training image (top) and that training image (bottom)."
            blocks.append(ctx.page.figure(chart))
    disc = d.get("discriminator")
    if isinstance(disc, dict):
        blocks.append(_heading("What the discriminator looks at"))
        blocks.extend(_discriminator(disc, ctx))
    lat = d.get("latent")
    if isinstance(lat, dict):
        blocks.append(_heading("Latent dimensions"))
        blocks.append(ctx.page.figure(charts.latent_importance(lat, ctx.src("latent.mean_abs_attribution"))))
        blocks.append(_kv([("top dimensions", ", ".join(map(str, lat.get("top_dims") or []))),
                           (f"class flips when the top {lat.get('top_k')} move by {fmt(lat.get('step'))}",
                            fmt(lat.get("flip_rate_top"), "pct")),
                           ("same for random dimensions", fmt(lat.get("flip_rate_random"), "pct")),
                           ("top dimensions change more", lat.get("top_changes_more"))], ctx.src("latent")))
    return blocks


def _discriminator(disc: dict[str, Any], ctx: _Ctx) -> list[Block]:
    blocks: list[Block] = []
    real = disc.get("realness") or {}
    if real:
        blocks.append(_kv([("mean realness on real images", real.get("mean_on_real")),
                           ("mean realness on generated", real.get("mean_on_fake")),
                           ("AUC real vs generated", real.get("auc_real_vs_fake"))], ctx.src("discriminator.realness")))
    for m, reason in (disc.get("skipped") or {}).items():
        blocks.append(_note(f"{m}: not run — {reason}"))
    methods = disc.get("methods") or []
    rows: list[list[Panel | None]] = []
    for which in ("real", "fake"):
        for ex in ((disc.get(which) or {}).get("examples") or [])[:4]:
            kind, img = charts.as_image(ex.get("input"))
            row: list[Panel | None] = [Panel(img, f"{which}: realness {fmt(ex.get('realness'))}", kind,
                                             zrange=ctx.bounds, hover="pixel")]
            for m in methods:
                mp = (ex.get("maps") or {}).get(m)
                row.append(None if mp is None else Panel(mp, m, "signed", under=ex.get("input"), zrange=ctx.bounds,
                                                         hover=m))
            rows.append(row)
    if rows:
        chart = charts.image_grid(charts.pack(rows, 2 if len(methods) < 4 else 1), "", ctx.src("discriminator"),
                                  cell_px=110)
        chart.caption = ("Discriminator attributions of its realness score on real and generated images "
                         "(red raises realness).")
        blocks.append(ctx.page.figure(chart))
    return blocks


# --------------------------------------------------------------------------- card, summary, provenance


def _card_blocks(card: dict[str, Any]) -> list[Block]:
    pre = card.get("preprocessing") or {}
    items = [("name", card.get("name")), ("task", card.get("task")),
             ("input shape", " × ".join(map(str, card.get("input_shape") or [])) or None),
             ("input dtype", card.get("input_dtype")),
             ("bounds", None if card.get("bounds") is None else f"[{card['bounds'][0]}, {card['bounds'][1]}]"),
             ("preprocessing", f"mean {pre.get('mean')}, std {pre.get('std')}, applied {pre.get('applied')} the model"
              if pre else "none"),
             ("classes", ", ".join(map(str, card.get("class_names") or [])) or None),
             ("positive class", card.get("positive_class")), ("architecture", card.get("architecture")),
             ("architecture arguments", json.dumps(card.get("arch_kwargs") or {})),
             ("reference dataset", card.get("dataset")), ("latent dimensions", card.get("latent_dim")),
             ("description", card.get("description"))]
    for norm, eps in (card.get("epsilons") or {}).items():
        items.append((f"attack radii ({NORMS.get(norm, norm)})", ", ".join(fmt(e) for e in eps)))
    text = card.get("text")
    if isinstance(text, dict):
        vocab = text.get("vocab") or []
        items += [("vocabulary size", len(vocab)), ("special tokens", f"pad {text.get('pad_token')}, unk {text.get('unk_token')}"),
                  ("first tokens", ", ".join(vocab[:20]) + (" …" if len(vocab) > 20 else ""))]
    blocks = [_kv([(k, v) for k, v in items if v is not None], "provenance.card")]
    features = card.get("features")
    if features:
        blocks.append(_heading("Features"))
        blocks.append(_table(
            ["feature", "kind", "min", "max", "categories", "attacker can change", "unit", "description"],
            [[f.get("name"), f.get("kind"), f.get("min"), f.get("max"), ", ".join(f.get("categories") or []) or None,
              f.get("changeable"), f.get("unit"), f.get("description")] for f in features],
            source="provenance.card.features"))
    return blocks


def _metrics(heads: list[Headline]) -> Block:
    """Headline figures as metric cards, each with its interval, n, note and evidence path."""
    return {"kind": "metrics", "items": [
        {"label": h.label, "value": h.display, "ci": f"95% CI {h.ci_display}" if h.ci_display else "",
         "n": "" if h.n is None else f"n = {h.n}", "note": h.note, "source": h.evidence} for h in heads]}


def _summary_blocks(result: AuditResult, gate_decision: Any, order: list[str], summary: AuditSummary) -> list[Block]:
    blocks: list[Block] = []
    v = summary.verdict
    blocks.append({"kind": "verdict", "status": v.status, "label": f"Verdict: {v.status.upper()}",
                   "meaning": VERDICT_MEANING[v.status], "reasons": list(v.reasons), "source": "verdict"})
    heads = summary.headlines()
    if heads:
        blocks.append(_metrics(heads))
    if gate_decision is not None:
        rules = gate_rules(gate_decision)
        ok = gate_passed(gate_decision)
        blocks.append(_heading("Gate"))
        blocks.append(_note(f"Gate {'passed' if ok else 'failed'}: {sum(r.passed for r in rules)} of {len(rules)} "
                            "rules passed.", "info" if ok else "warn"))
        blocks.append(_table(["rule", "result", "detail"],
                             [[r.name, _badge("skipped" if r.skipped else "pass" if r.passed else "fail",
                                              "skipped" if r.skipped else "pass" if r.passed else "fail"), r.message]
                              for r in rules]))
    groups = summary.findings_by_severity()
    blocks.append(_heading("Findings"))
    if summary.findings:
        counts = ", ".join(f"{len(groups[s])} {s}" for s in SEVERITIES)
        blocks.append(_findings_block(result, [f for sev in SEVERITIES for f in groups[sev]], counts))
    else:
        blocks.append(_note("No findings: no check reported anything a reader must know first."))
    if summary.masking is not None and summary.masking.outcome != "clean":
        blocks.append(_note(summary.masking.statement + " See the robustness section's checklist.", "warn"))
    blocks.append(_heading("Checks"))
    blocks.append(_table(["check", "status", "seconds", "findings", "reason"],
                         [[{"text": n, "href": f"#{_anchor(n)}"}, _badge(s.status), s.seconds, len(s.findings),
                           s.reason] for n in order for s in [result.sections[n]]],
                         source="sections"))
    return blocks


VERDICT_MEANING = {
    "pass": "Every core check ran in full and nothing about the model needs attention.",
    "attention": "The model can ship only after someone has read the findings below.",
    "fail": "Do not ship as is: at least one high-severity finding about the model (or the gate failed).",
    "incomplete": "A core check could not run in full: this audit cannot vouch for the model.",
}
SUBJECT_TAG = {"model": "", "defense": "about an optional defense", "evaluation": "about the audit itself"}


def _findings_block(result: AuditResult, findings: list[Any], caption: str) -> Block:
    """Findings in display order, each with why it matters, what to do and where its evidence is."""
    items = []
    for f in findings:
        href = f"#{_anchor(f.section)}" if f.section in result.sections else None
        items.append({"severity": f.severity, "title": f.title, "subject": SUBJECT_TAG.get(f.subject, f.subject),
                      "why": f.why or "", "action": f.action or "", "evidence": f.evidence,
                      "evidence_path": f.evidence_path or f"sections.{f.section}", "section": f.section,
                      "href": href})
    return {"kind": "findings", "items": items, "caption": caption, "source": "findings"}


def _provenance_blocks(result: AuditResult, page: _Page) -> list[Block]:
    p = result.provenance
    blocks = [_kv([("auditkit", p.auditkit), ("torch", p.torch), ("captum", p.captum), ("foolbox", p.foolbox),
                   ("python", p.python), ("platform", p.platform), ("model file", p.model_path),
                   ("model format", p.model_format), ("model sha256", p.model_sha256), ("data", p.data_spec),
                   ("data sha256", p.data_sha256), ("seed", p.seed), ("device", p.device),
                   ("started", p.started_at), ("wall time (s)", p.wall_seconds),
                   ("results schema", result.schema_version)], "provenance")]
    blocks.append(_heading("Configuration"))
    blocks.append(_kv([(k, v if _is_scalar(v) else json.dumps(v)) for k, v in p.config.items()], "provenance.config"))
    if p.timings:
        blocks.append(page.figure(charts.timings(p.timings, "provenance.timings")))
    blocks.append(_json_block("the card, as JSON", p.card, "provenance.card"))
    return blocks


# --------------------------------------------------------------------------- page


FIGURE_WORDS = {"robust": "robust accuracy", "certified": "certified accuracy", "evasion": "evasion rate"}


def _defenses(d: dict[str, Any], ctx: _Ctx) -> list[Block]:
    """Defenses: one comparison chart and one table at each defense's headline point first, then
    each defense's curves and verdict (collapsed by the section layout)."""
    data = DefensesData.model_validate(d)
    heads = data.headlines()
    blocks: list[Block] = []
    if heads:
        figures = {h.figure for h in heads.values()}
        y_title = FIGURE_WORDS[next(iter(figures))] if len(figures) == 1 else "accuracy under attack"
        rows = [{"name": f"{name} ({h.x_symbol} {h.x:g})",
                 "undefended": None if h.undefended is None else h.undefended.model_dump(),
                 "non_adaptive": None if h.non_adaptive is None else h.non_adaptive.model_dump(),
                 "adaptive": h.value.model_dump()} for name, h in heads.items()]
        chart = ctx.page.figure(charts.defense_comparison(rows, y_title, ctx.src("defenses")))
        chart["lead"] = True
        blocks.append(chart)
    table_rows = []
    for name, entry in data.defenses.items():
        h = heads.get(name)
        over = entry.max_overstatement
        cost = (f"{1000 * entry.seconds_per_sample:.3g} ms per sample" if entry.seconds_per_sample is not None
                else f"training {entry.training_cost_ratio:.3g}x" if entry.training_cost_ratio is not None else "—")
        table_rows.append([
            name, entry.kind,
            _badge("skipped") if entry.status != "ok" else
            _badge("pass" if entry.real_gain else "fail", "real gain" if entry.real_gain else "no real gain"),
            "—" if h is None else f"{FIGURE_WORDS[h.figure]} at {h.x_symbol} {h.x:g}",
            "—" if h is None else _estimate(h.value, "proportion"),
            "—" if h is None else _estimate(h.non_adaptive, "proportion"),
            "—" if h is None else _estimate(h.undefended, "proportion"),
            "—" if over is None else f"{over.points:+.0f} points",
            f"{_estimate(entry.clean_accuracy, 'proportion')} vs {_estimate(entry.undefended_clean_accuracy, 'proportion')}",
            cost,
        ])
    table = _table(["defense", "kind", "outcome", "figure", "adaptive attack", "non-adaptive", "undefended",
                    "overstated by (max)", "clean accuracy (defended vs not)", "cost"], table_rows,
                   caption="Each defense at its headline point; 'adaptive attack' is the figure to believe.",
                   source=ctx.src("defenses"))
    table["lead"] = True
    blocks.append(table)
    for name, entry in data.defenses.items():
        blocks.append(_heading(name))
        if entry.status != "ok":
            blocks.append(_note(f"Not evaluated: {entry.reason or 'no reason recorded'}", "warn"))
            continue
        if entry.verdict or entry.summary:
            blocks.append(_note(entry.summary or entry.verdict or ""))
        if entry.curve:
            xs = [p.x for p in entry.curve]
            x_title = "feature-cost budget" if entry.tabular else f"{NORM_LABELS.get(entry.norm or 'linf', 'L∞')} ε"
            series = {}
            for key, label in (("undefended", "undefended"), ("non_adaptive", "non-adaptive"),
                               ("adaptive", "adaptive attack")):
                ps = [getattr(p, key) for p in entry.curve]
                series[label] = (xs, [p.value for p in ps], [p.ci_low for p in ps],
                                 [p.ci_high for p in ps])
            y_title = "evasion rate" if entry.tabular else "robust accuracy"
            chart = charts.curve_chart(series, x_title, f"{name}: {y_title} against the attack budget: undefended, "
                                       "and defended under a non-adaptive and an adaptive evaluation (shaded: 95% "
                                       "intervals).", ctx.src(f"defenses.{name}.curve"), y_title=y_title)
            blocks.append(ctx.page.figure(chart))
        if entry.certified:
            series = {"certified (smoothing)": ([c.radius for c in entry.certified],
                                                [c.certified_accuracy for c in entry.certified],
                                                [c.ci[0] for c in entry.certified], [c.ci[1] for c in entry.certified])}
            if entry.undefended_empirical_l2:
                e = entry.undefended_empirical_l2
                series["undefended, empirical (attack)"] = ([p.radius for p in e], [p.value for p in e],
                                                            [p.ci_low for p in e], [p.ci_high for p in e])
            chart = charts.curve_chart(series, "L2 radius", f"{name}: certified accuracy against the L2 radius "
                                       "(shaded: 95% intervals).", ctx.src(f"defenses.{name}.certified"),
                                       y_title="accuracy")
            blocks.append(ctx.page.figure(chart))
    blocks.append(_json_block("all defense figures, as recorded", d, ctx.src()))
    return blocks


def _estimate(e: Any, kind: str) -> str:
    """An estimate with its interval in the summary's formatting (``"0.362 (0.293–0.417)"``)."""
    if e is None or e.value is None:
        return "—"
    ci = format_interval(e.ci_low, e.ci_high, kind)  # type: ignore[arg-type]
    return format_value(e.value, kind) + (f" ({ci})" if ci else "")  # type: ignore[arg-type]


def _baselines(d: dict[str, Any], ctx: _Ctx) -> list[Block]:
    """Baselines: one designed comparison table (the network first, then each baseline on the
    same test split: primary metric, accuracy, the paired test against the network, calibration,
    agreement of feature importances, size), the verdict, then the setups and raw figures."""
    data = BaselinesData.model_validate(d)
    metric = data.primary_metric
    metric_label = {"pr_auc": "PR-AUC", "accuracy": "accuracy"}[metric]
    metric_kind = "score" if metric == "pr_auc" else "proportion"
    rows = []
    for name, m in [("network (audited)", data.network), *data.baselines.items()]:
        q = m.quality
        test = q.pr_auc_vs_network if metric == "pr_auc" and q.pr_auc_vs_network is not None else q.vs_network
        winner = m.winner(metric)
        if winner is None:
            outcome: Any = "—"
        else:
            status = {"network": "pass", "tie": "warn", "baseline": "fail"}[winner]
            text = {"network": "network better", "tie": "tie", "baseline": "baseline better"}[winner]
            p = getattr(test, "p_value", None)
            outcome = _badge(status, text + (f" (p = {p:.2g})" if p is not None else ""))
        spearman = (m.interpretability or {}).get("spearman_with_network")
        rows.append([name, _estimate(m.primary(metric), metric_kind),
                     _estimate(q.accuracy, "proportion") if metric != "accuracy" else "",
                     outcome,
                     "—" if m.calibration is None else f"{m.calibration.ece:.3f}",
                     "—" if spearman is None else f"{spearman:.2f}",
                     "—" if m.cost is None else f"{m.cost.parameters:,}"])
    columns = ["model", f"{metric_label} (95% CI)", "accuracy (95% CI)", f"on {metric_label} vs the network",
               "ECE", "importance agreement (Spearman ρ)", "learned parameters"]
    if metric == "accuracy":
        columns.pop(2)
        rows = [r[:2] + r[3:] for r in rows]
    table = _table(columns, rows, caption=f"Every model on the same {data.n_test} test samples of {data.dataset} "
                   f"(trained on {data.n_train}); the paired test decides who is better on {metric_label}.",
                   source=ctx.src("baselines"))
    table["lead"] = True
    blocks: list[Block] = [table, _note(data.verdict)]
    for title, key, value in (("Robustness setup", "robustness_setup", data.robustness_setup),
                              ("Interpretability setup", "interpretability_setup", data.interpretability_setup)):
        if value:
            blocks.append(_heading(title))
            blocks.append(_kv([(k, v if _is_scalar(v) else json.dumps(v)) for k, v in value.items()
                               if k != "sample_index"], ctx.src(key)))
    blocks.append(_json_block("every baseline figure, as recorded", d, ctx.src()))
    return blocks


BUILDERS: dict[str, Callable[[dict[str, Any], _Ctx], list[Block]]] = {
    "baselines": _baselines,
    "defenses": _defenses,
    "performance": _performance,
    "attributions": _attributions,
    "explanation-quality": _quality,
    "robustness": _robustness,
    "gan": _gan,
}


def _anchor(name: str) -> str:
    return "sec-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _section_order(result: AuditResult) -> list[str]:
    """Known sections in reading order, then unknown ones; sections that did not run last."""
    return display_order(result)


# A section longer than this many blocks opens with its summary and first chart; the rest is
# collapsed under "Details" (the reader decides in one screen, the evidence is one click away).
LEAD_MAX_BLOCKS = 3


def _lead_and_details(blocks: list[Block], sec: SectionSummary | None) -> list[Block]:
    """The section's takeaway and headline figures, its first chart, then everything else
    collapsed in one "Details" group (in the builder's order)."""
    lead: list[Block] = []
    if sec is not None and sec.takeaway:
        lead.append(_note(sec.takeaway))
    if sec is not None and sec.headlines:
        lead.append(_metrics(sec.headlines))
    if len(blocks) <= LEAD_MAX_BLOCKS:
        return lead + blocks
    marked = [b for b in blocks if b.get("lead")]
    if marked:  # the builder chose what opens the section
        lead += marked
        rest = [b for b in blocks if not b.get("lead")]
    else:
        first_figure = next((i for i, b in enumerate(blocks) if b["kind"] == "figure"), None)
        rest = list(blocks)
        if first_figure is not None:
            lead.append(rest.pop(first_figure))
    kinds = [b["kind"] for b in rest]
    n_fig, n_tab = kinds.count("figure"), kinds.count("table") + kinds.count("kv")
    what = ", ".join(t for t in (f"{n_fig} chart{'s' * (n_fig != 1)}" if n_fig else "",
                                 f"{n_tab} table{'s' * (n_tab != 1)}" if n_tab else "") if t) or "notes"
    return lead + [{"kind": "details", "summary": f"Details: {what} and the data behind these figures",
                    "open": False, "blocks": rest, "cls": "section-details"}]


def _section_view(name: str, section: Section, card: dict[str, Any], page: _Page,
                  sec: SectionSummary | None = None) -> dict[str, Any]:
    ctx = _Ctx(card, page, name)
    view = {"id": _anchor(name), "name": name, "title": TITLES.get(name, name.replace("-", " ").capitalize()),
            "status": section.status, "reason": section.reason, "seconds": section.seconds,
            "findings": section.findings, "source": f"sections.{name}", "blocks": []}
    if section.status != "ok":
        return view
    builder = BUILDERS.get(name)
    if builder is None:
        generic = generic_blocks(section.data, ctx.src(), page) or [_note("This check returned no data.")]
        view["blocks"] = _lead_and_details(generic, sec)
        return view
    n_charts = len(page.charts)
    try:
        blocks = builder(section.data, ctx)
    except Exception as exc:  # a newer or unexpected layout of the data must not cost the whole report
        del page.charts[n_charts:]
        page.fallbacks.append(name)
        warnings.warn(f"report: section {name!r} drawn generically ({type(exc).__name__}: {exc})", stacklevel=2)
        try:
            generic = generic_blocks(section.data, ctx.src(), page)
        except Exception:  # the last resort: the data as it is
            del page.charts[n_charts:]
            generic = [_json_block("data", section.data, ctx.src())]
        blocks = [_note(f"This section could not be drawn in detail ({type(exc).__name__}: {exc}); its data "
                        "follows as recorded.", "render-error")] + generic
    view["blocks"] = _lead_and_details([b for b in blocks if b is not None], sec)
    return view


PLOTLY_BUNDLE = "plotly-cartesian-{version}.min.js.gz"


@lru_cache(maxsize=1)
def plotly_bundle() -> tuple[str, str]:
    """``(version, base64 of the gzip-compressed plotly.js)`` embedded in every report.

    The vendored cartesian bundle (``report/vendor``: every trace type the reports draw, 1.5 MB
    instead of the full 4.8 MB) of the plotly.js version that the ``plotly`` package embeds; the
    page decompresses it with the browser's ``DecompressionStream``. Without a vendored file of
    that version (a newer ``plotly``), the package's full plotly.js is compressed instead:
    larger, never wrong.
    """
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    version = get_plotlyjs_version()
    vendored = files("auditkit.report").joinpath("vendor", PLOTLY_BUNDLE.format(version=version))
    data = vendored.read_bytes() if vendored.is_file() else gzip.compress(get_plotlyjs().encode(), 9, mtime=0)
    return version, base64.b64encode(data).decode("ascii")


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(loader=PackageLoader("auditkit.report", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _figure_ids(blocks: list[Block]) -> list[str]:
    out = []
    for b in blocks:
        if b["kind"] == "figure":
            out.append(b["id"])
        elif b["kind"] == "details":
            out.extend(_figure_ids(b["blocks"]))
    return out


def render_html(result: AuditResult, gate_decision: Any = None) -> str:
    """The whole report page as one string (plotly.js inline, no external resources)."""
    from auditkit import __version__

    page = _Page()
    card = result.provenance.card or {}
    order = _section_order(result)
    audit_summary = summarize(result)
    summary = {"id": "sec-summary", "title": "Summary", "status": "ok", "reason": None, "seconds": None,
               "findings": [], "source": "findings",
               "blocks": _summary_blocks(result, gate_decision, order, audit_summary)}
    card_view = {"id": "sec-card", "title": "Model card", "status": "ok", "reason": None, "seconds": None,
                 "findings": [], "source": "provenance.card", "blocks": _card_blocks(card)}
    sections = [_section_view(n, result.sections[n], card, page, audit_summary.section(n)) for n in order]
    prov = {"id": "sec-provenance", "title": "Provenance", "status": "ok", "reason": None, "seconds": None,
            "findings": [], "source": "provenance", "blocks": [b for b in _provenance_blocks(result, page) if b]}
    views = [summary, card_view, *sections, prov]
    n_figures = sum(len(_figure_ids(v["blocks"])) for v in views)
    if n_figures != len(page.charts):  # every chart registered is placed exactly once
        raise RuntimeError(f"report: {len(page.charts)} charts built but {n_figures} placed")
    plotly_version, plotly_gz_b64 = plotly_bundle()
    return _env().get_template("report.html.j2").render(
        title=model_title(result), task=card.get("task", ""), result=result, sections=views,
        n_figures=n_figures, version=__version__, plotly_version=plotly_version, plotly_gz_b64=plotly_gz_b64,
        gate=None if gate_decision is None else gate_passed(gate_decision),
        fallbacks=page.fallbacks,
    )


__all__ = ["generic_blocks", "is_ensemble", "render_html"]
