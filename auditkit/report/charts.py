"""Plotly figures of the HTML report and the dashboard, built from results JSON only (DESIGN.md §1).

Every builder takes parts of a section's ``data`` (the dashboard's: several audits' curves or
one sample's entry) and returns a :class:`Chart`: the figure as a compact plotly JSON spec (no
template: the page supplies one shared base layout), the caption and the JSON path it was
drawn from. Numbers are rounded to four significant digits, which is
all a chart can show and keeps the report small. Nothing here computes an audit figure; the
only arithmetic is for display (normalising bars to compare methods, scaling pixels to colours).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from auditkit.sections.common import NORM_LABELS

# Tableau 10: distinguishable, colour-blind friendlier than plotly's default.
COLORWAY = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
            "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
# Signed attributions: blue negative, transparent near zero (the image beneath shows through),
# red positive.
SIGNED_OVERLAY = [[0.0, "rgba(33,102,172,0.95)"], [0.5, "rgba(255,255,255,0)"], [1.0, "rgba(178,24,43,0.95)"]]
SIGNED = [[0.0, "rgb(33,102,172)"], [0.5, "rgb(247,247,247)"], [1.0, "rgb(178,24,43)"]]
GREYS = [[0.0, "rgb(255,255,255)"], [1.0, "rgb(0,0,0)"]]
FADED = [[0.0, "rgb(255,255,255)"], [1.0, "rgb(110,110,110)"]]  # an image beneath an overlay
HEAT = [[0.0, "rgb(255,255,255)"], [0.5, "rgb(253,174,97)"], [1.0, "rgb(165,0,38)"]]
# How a threat model's norm is written in titles and labels: the one table, in auditkit.sections.
NORM_LABEL = NORM_LABELS


@dataclass
class Chart:
    """One figure of the report: plotly ``spec`` ({"data", "layout"}), its caption and source.

    ``source`` is the JSON path in results.json the figure is drawn from, e.g.
    ``sections.robustness.data.threat_models.linf.fine_curve``.
    """

    spec: dict[str, Any]
    caption: str
    source: str
    height: int = 360
    width: int | None = None  # the most the figure needs (small multiples); None: the page's width

    def to_json(self) -> str:
        """Compact JSON, safe to embed in a <script> element: ``<``, ``>`` and ``&`` are written as
        JSON escapes, so no text in the data (``</script>``, ``<!--``) can end or re-open the element."""
        text = json.dumps(self.spec, separators=(",", ":"), allow_nan=False)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@dataclass
class Panel:
    """One image cell of :func:`image_grid`.

    ``z`` is ``[H][W]`` (grey or signed values) or ``[H][W][3]`` (RGB in ``zrange`` units).
    ``kind``: ``"gray"`` (pixels in ``zrange``), ``"rgb"``, ``"signed"`` (diverging around 0),
    ``"heat"`` (non-negative magnitudes). ``under`` is an image drawn beneath a signed overlay.
    """

    z: Any
    title: str = ""
    kind: Literal["gray", "rgb", "signed", "heat"] = "gray"
    under: Any = None
    zrange: tuple[float, float] | None = None
    hover: str = ""


# --------------------------------------------------------------------------- helpers


def sig(v: Any, digits: int = 4) -> Any:
    """``v`` with every float rounded to ``digits`` significant digits (None for NaN/inf)."""
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return float(f"{v:.{digits}g}")
    if isinstance(v, (list, tuple)):
        return [sig(x, digits) for x in v]
    if isinstance(v, dict):
        return {k: sig(x, digits) for k, x in v.items()}
    try:
        return sig(float(v), digits)
    except (TypeError, ValueError):
        return v


def _spec(fig: go.Figure) -> dict[str, Any]:
    fig.layout.template = None
    spec = json.loads(fig.to_json())
    spec["layout"].pop("template", None)
    return spec


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def finite_float(v: Any) -> float | None:
    """``v`` as a finite float, None if it is not a number (or NaN/inf)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _legend_top() -> dict[str, Any]:
    return {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "xanchor": "left"}


def depth(v: Any) -> int:
    """Nesting depth of a list (0 for a scalar)."""
    d = 0
    while isinstance(v, list) and v:
        v, d = v[0], d + 1
    return d


def as_image(z: Any, shape: Sequence[int] | None = None) -> tuple[str, Any]:
    """``("gray", [H][W])`` or ``("rgb", [H][W][C])`` from ``[H][W]``, ``[H][W][C]`` or, when
    ``shape`` says so (``[C, H, W]``), channel-first nested lists."""
    d = depth(z)
    if d == 3 and shape is not None and len(shape) == 3:  # [C][H][W]
        c = len(z)
        if c == 1:
            return "gray", z[0]
        return "rgb", [[[z[k][i][j] for k in range(min(c, 3))] for j in range(len(z[0][0]))]
                       for i in range(len(z[0]))]
    if d == 3:
        if len(z[0][0]) == 1:
            return "gray", [[p[0] for p in row] for row in z]
        return "rgb", z
    return "gray", z


def _rgb255(z: Any, lo: float, hi: float) -> list:
    span = (hi - lo) or 1.0
    return [[[int(round(255 * min(1.0, max(0.0, ((c if c is not None else lo) - lo) / span))))
              for c in px[:3]] for px in row] for row in z]


def sum_channels(z: Any) -> Any:
    """``[H][W][C]`` → ``[H][W]`` (signed maps of RGB perturbations)."""
    return [[sum(c or 0.0 for c in px) for px in row] for row in z]


# --------------------------------------------------------------------------- generic images


def image_grid(rows: list[list[Panel | None]], caption: str, source: str, cell_px: int = 118,
               title_lines: int = 1) -> Chart:
    """Small multiples of images, heatmaps and overlays, one :class:`Panel` per cell."""
    n_rows = len(rows)
    n_cols = max(len(r) for r in rows)
    titles = [(row[c].title if c < len(row) and row[c] is not None else "") for row in rows for c in range(n_cols)]
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=titles,
                        horizontal_spacing=min(0.02, 0.2 / n_cols),
                        vertical_spacing=min(0.12, (0.06 + 0.03 * title_lines) * 4 / max(n_rows, 1)))
    for r, row in enumerate(rows, start=1):
        for c, panel in enumerate(row, start=1):
            if panel is None:
                continue
            for trace in _panel_traces(panel):
                fig.add_trace(trace, row=r, col=c)
    for i in range(1, n_rows * n_cols + 1):
        suffix = "" if i == 1 else str(i)
        fig.layout[f"xaxis{suffix}"].update(visible=False, constrain="domain")
        fig.layout[f"yaxis{suffix}"].update(visible=False, autorange="reversed",
                                            scaleanchor=f"x{suffix}", constrain="domain")
    for ann in fig.layout.annotations:
        ann.font = {"size": 10}
    height = int(n_rows * (cell_px + 14 * title_lines) + 40)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False)
    return Chart(_spec(fig), caption, source, height, width=int(n_cols * (cell_px + 12) + 20))


def pack(rows: list[list[Panel | None]], per_line: int) -> list[list[Panel | None]]:
    """Place ``per_line`` consecutive rows side by side (narrow rows waste a wide page)."""
    if per_line <= 1:
        return rows
    width = max(len(r) for r in rows)
    out = []
    for i in range(0, len(rows), per_line):
        line: list[Panel | None] = []
        for r in rows[i : i + per_line]:
            line.extend(list(r) + [None] * (width - len(r)))
        out.append(line)
    return out


def _panel_traces(p: Panel) -> list[Any]:
    lo, hi = p.zrange or (0.0, 1.0)
    traces: list[Any] = []
    hover = (p.hover or p.title or "value") + ": %{z:.3g}<extra></extra>"
    if p.kind == "rgb":
        traces.append(go.Image(z=_rgb255(p.z, lo, hi), hoverinfo="skip"))
        return traces
    if p.under is not None:
        kind, base = as_image(p.under)
        if kind == "rgb":
            traces.append(go.Image(z=_rgb255(base, lo, hi), hoverinfo="skip"))
        else:
            traces.append(go.Heatmap(z=sig(base, 3), colorscale=FADED, zmin=lo, zmax=hi, showscale=False,
                                     hoverinfo="skip"))
    if p.kind == "gray":
        traces.append(go.Heatmap(z=sig(p.z, 3), colorscale=GREYS, zmin=lo, zmax=hi, showscale=False,
                                 hovertemplate=hover))
    elif p.kind == "heat":
        traces.append(go.Heatmap(z=sig(p.z, 3), colorscale=HEAT, zmin=0, showscale=False,
                                 hovertemplate=hover))
    else:
        flat = [abs(v) for row in p.z for v in row if v is not None]
        m = max(flat) if flat else 1.0
        m = m or 1.0
        traces.append(go.Heatmap(z=sig(p.z, 3), colorscale=SIGNED_OVERLAY if p.under is not None else SIGNED,
                                 zmin=-m, zmax=m, showscale=False, hovertemplate=hover))
    return traces


# --------------------------------------------------------------------------- performance


def confusion_matrix(cm: list[list[int]], class_names: list[str], source: str) -> Chart:
    """Heatmap of ``[true][predicted]``: text shows the count, colour the share of the true
    class's samples (so that a rare class's errors show on an imbalanced test set)."""
    k = len(cm)
    names = [str(n) for n in class_names] if len(class_names) == k else [str(i) for i in range(k)]
    share = [[sig(v / sum(row)) if sum(row) else 0.0 for v in row] for row in cm]
    fig = go.Figure(go.Heatmap(
        z=share, x=names, y=names, colorscale=HEAT, zmin=0, zmax=1, showscale=False,
        text=[[str(v) for v in row] for row in cm], texttemplate="%{text}" if k <= 15 else None,
        hovertemplate="true %{y}, predicted %{x}: %{text} (%{z:.1%} of true %{y})<extra></extra>"))
    height = max(300, min(620, 40 * k + 120))
    fig.update_layout(height=height, xaxis={"title": {"text": "predicted"}, "type": "category", "side": "bottom"},
                      yaxis={"title": {"text": "true"}, "type": "category", "autorange": "reversed"},
                      margin={"l": 70, "r": 20, "t": 20, "b": 60})
    return Chart(_spec(fig), "Confusion matrix on the whole test split (rows: true class, columns: predicted; "
                 "numbers are counts, colour the share of the row's true class).", source, height)


def reliability(bins: list[dict[str, Any]], ece: float | None, source: str) -> Chart:
    """Reliability diagram: accuracy per confidence bin against the diagonal."""
    used = [b for b in bins if b.get("n")]
    centres = [sig((b["lo"] + b["hi"]) / 2) for b in used]
    width = [sig(b["hi"] - b["lo"]) for b in used]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=centres, y=sig([b.get("accuracy") for b in used]), width=width, name="accuracy",
                         marker={"color": COLORWAY[0], "line": {"color": "white", "width": 1}},
                         customdata=[[b["n"], sig(b.get("confidence"))] for b in used],
                         hovertemplate="bin %{x}: accuracy %{y:.3f}, mean confidence %{customdata[1]:.3f}, "
                                       "n=%{customdata[0]}<extra></extra>"))
    fig.add_trace(go.Scatter(x=centres, y=sig([b.get("confidence") for b in used]), mode="markers",
                             name="mean confidence", marker={"color": COLORWAY[1], "size": 8}))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line={"dash": "dot", "color": "#888"}))
    fig.update_layout(height=340, xaxis={"title": {"text": "confidence of the predicted class"}, "range": [0, 1]},
                      yaxis={"title": {"text": "accuracy"}, "range": [0, 1.02]}, legend=_legend_top(),
                      margin={"l": 60, "r": 20, "t": 40, "b": 50})
    ece_txt = "" if ece is None else f" Expected calibration error {ece:.3f}."
    return Chart(_spec(fig), "Reliability diagram: accuracy of the samples in each confidence bin; bars on "
                 f"the diagonal mean calibrated confidences.{ece_txt}", source, 340)


# --------------------------------------------------------------------------- attributions


def feature_importance(importance: dict[str, list[dict[str, Any]]], source: str) -> Chart:
    """Grouped horizontal bars of global feature importance, one colour per method.

    Each method's mean |attribution| is divided by its largest value so that methods with
    different units share an axis; the hover shows the raw value."""
    methods = list(importance)
    order = [r["feature"] for r in sorted(importance[methods[0]], key=lambda r: r.get("mean_abs") or 0)]
    fig = go.Figure()
    for i, m in enumerate(methods):
        rows = {r["feature"]: r for r in importance[m]}
        top = max((r.get("mean_abs") or 0.0) for r in importance[m]) or 1.0
        fig.add_trace(go.Bar(
            y=order, x=[sig((rows.get(f, {}).get("mean_abs") or 0.0) / top) for f in order], orientation="h",
            name=m, marker={"color": COLORWAY[i % len(COLORWAY)]},
            customdata=[[sig(rows.get(f, {}).get("mean_abs")), sig(rows.get(f, {}).get("mean_signed"))] for f in order],
            hovertemplate=f"{m} · %{{y}}: mean |attr| %{{customdata[0]}}, mean signed %{{customdata[1]}}<extra></extra>"))
    height = max(320, 22 * len(order) * max(1, len(methods)) // 2 + 100)
    height = min(height, 900)
    fig.update_layout(barmode="group", height=height, legend=_legend_top(),
                      xaxis={"title": {"text": "mean |attribution| / largest feature's (per method)"}},
                      margin={"l": 160, "r": 20, "t": 40, "b": 50})
    return Chart(_spec(fig), "Global feature importance per attribution method (mean |attribution| over the "
                 "explained samples, scaled to each method's largest feature).", source, height)


def token_importance(tokens: dict[str, list[dict[str, Any]]], source: str, top: int = 10) -> Chart:
    """Top tokens by mean |attribution|, one panel per method."""
    methods = list(tokens)
    fig = make_subplots(rows=1, cols=len(methods), subplot_titles=methods, horizontal_spacing=0.07)
    for c, m in enumerate(methods, start=1):
        rows = tokens[m][:top][::-1]
        fig.add_trace(go.Bar(y=[r["token"] for r in rows], x=sig([r.get("mean_abs") for r in rows]),
                             orientation="h", marker={"color": COLORWAY[(c - 1) % len(COLORWAY)]},
                             customdata=[r.get("count") for r in rows],
                             hovertemplate="%{y}: %{x} (in %{customdata} sentences' tokens)<extra></extra>"),
                      row=1, col=c)
    fig.update_layout(height=340, showlegend=False, margin={"l": 80, "r": 10, "t": 30, "b": 30})
    for ann in fig.layout.annotations:
        ann.font = {"size": 11}
    return Chart(_spec(fig), f"Tokens with the largest mean |attribution| per method (top {top}).", source, 340)


# --------------------------------------------------------------------------- explanation quality


def ig_history(history: list[dict[str, Any]], tol: float | None, source: str) -> Chart:
    """Relative completeness error of IG (median, p95) against the number of steps."""
    steps = [h["n_steps"] for h in history]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps, y=sig([h.get("p95") for h in history]), mode="lines+markers", name="p95"))
    fig.add_trace(go.Scatter(x=steps, y=sig([h.get("median") for h in history]), mode="lines+markers",
                             name="median"))
    if tol is not None:
        fig.add_trace(go.Scatter(x=[min(steps), max(steps)], y=[tol, tol], mode="lines", name=f"tolerance {tol}",
                                 line={"dash": "dot", "color": "#888"}))
    fig.update_layout(height=300, legend=_legend_top(), margin={"l": 60, "r": 20, "t": 40, "b": 50},
                      xaxis={"title": {"text": "integration steps"}, "type": "log", "tickvals": steps},
                      yaxis={"title": {"text": "relative completeness error"}, "rangemode": "tozero"})
    return Chart(_spec(fig), "Integrated gradients' completeness error (|Σ attributions − (f(x) − f(baseline))| "
                 "relative to the output change) as the integration steps double.", source, 300)


def randomisation(rand: dict[str, Any], source: str) -> Chart:
    """Cascading randomisation: Spearman |ρ| with the trained model's map, layer by layer."""
    methods = rand.get("methods", {})
    fig = go.Figure()
    layers = rand.get("layers") or []
    x = ["trained"] + list(layers)
    for i, (m, r) in enumerate(methods.items()):
        cascade = r.get("cascade", [])
        colour = COLORWAY[i % len(COLORWAY)]
        ok = str(r.get("verdict", "")).startswith("passes")
        fig.add_trace(go.Scatter(
            x=["trained"] + [c["layer"] for c in cascade], y=[1.0] + sig([c.get("spearman_abs") for c in cascade]),
            mode="lines+markers", name=f"{m} ({'passes' if ok else 'fails'})",
            line={"color": colour, "dash": "solid" if ok else "dash"}))
    thr = rand.get("threshold")
    if thr is not None:
        fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[thr, thr], mode="lines", name=f"threshold {thr}",
                                 line={"dash": "dot", "color": "#888"}))
    fig.update_layout(height=340, legend=_legend_top(), margin={"l": 60, "r": 20, "t": 60, "b": 60},
                      xaxis={"title": {"text": "layers randomised (cumulative, from the top)"}, "type": "category"},
                      yaxis={"title": {"text": "Spearman |ρ| with the trained map"}, "range": [-0.05, 1.05]})
    return Chart(_spec(fig), "Cascading model-parameter randomisation (Adebayo et al. 2018): a faithful map "
                 "loses its similarity to the trained model's map as the layers are randomised.", source, 340)


def deletion_insertion(curves: dict[str, dict[str, Any]], source: str) -> Chart:
    """Deletion and insertion curves per method against a random ranking."""
    methods = list(curves)
    fig = make_subplots(rows=2, cols=len(methods), shared_xaxes=True, shared_yaxes=True,
                        subplot_titles=[f"{m}: deletion" for m in methods] + [f"{m}: insertion" for m in methods],
                        horizontal_spacing=0.03, vertical_spacing=0.12)
    for c, m in enumerate(methods, start=1):
        d = curves[m]
        f = sig(d.get("fractions", []))
        for r, key in ((1, "deletion"), (2, "insertion")):
            first = c == 1 and r == 1
            fig.add_trace(go.Scatter(x=f, y=sig(d.get(key, [])), mode="lines", name="attribution order",
                                     legendgroup="attr", showlegend=first, line={"color": COLORWAY[0]}),
                          row=r, col=c)
            fig.add_trace(go.Scatter(x=f, y=sig(d.get(f"{key}_random", [])), mode="lines", name="random order",
                                     legendgroup="rand", showlegend=first,
                                     line={"color": "#999", "dash": "dash"}), row=r, col=c)
    for ann in fig.layout.annotations:
        ann.font = {"size": 11}
    fig.update_layout(height=460, legend={**_legend_top(), "y": 1.08}, margin={"l": 60, "r": 10, "t": 80, "b": 50})
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="p(target)", row=1, col=1)
    fig.update_yaxes(title_text="p(target)", row=2, col=1)
    fig.update_xaxes(title_text="fraction of features", row=2)
    return Chart(_spec(fig), "Deletion (top: remove the most important features first; lower is better) and "
                 "insertion (bottom: add them first; higher is better), against a random order.", source, 460)


# --------------------------------------------------------------------------- robustness


def robustness_curve(tm: dict[str, Any], norm: str, source: str) -> Chart:
    """Robust accuracy against ε: the fine worst-case curve with its 95% band, the grid points
    with error bars, and each attack's own accuracy (dotted)."""
    fine = tm.get("fine_curve") or []
    pts = tm.get("curve") or []
    fig = go.Figure()
    label = NORM_LABEL.get(norm, norm)
    if fine:
        eps = sig([p["eps"] for p in fine])
        fig.add_trace(go.Scatter(x=eps, y=sig([p.get("ci_high") for p in fine]), mode="lines",
                                 line={"width": 0}, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=eps, y=sig([p.get("ci_low") for p in fine]), mode="lines", line={"width": 0},
                                 fill="tonexty", fillcolor="rgba(78,121,167,0.18)", name="95% CI (Wilson)",
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=eps, y=sig([p.get("robust_accuracy") for p in fine]), mode="lines",
                                 name="worst case over attacks", line={"color": COLORWAY[0], "width": 2.5},
                                 hovertemplate="ε %{x}: %{y:.3f}<extra></extra>"))
    if pts:
        acc = [p.get("robust_accuracy") for p in pts]
        fig.add_trace(go.Scatter(
            x=sig([p["eps"] for p in pts]), y=sig(acc), mode="markers", name="grid points",
            marker={"color": COLORWAY[0], "size": 8, "line": {"color": "white", "width": 1}},
            error_y={"type": "data", "symmetric": False,
                     "array": sig([(p.get("ci_high") or 0) - (a or 0) for p, a in zip(pts, acc)]),
                     "arrayminus": sig([(a or 0) - (p.get("ci_low") or 0) for p, a in zip(pts, acc)])},
            customdata=[[p.get("n_robust"), p.get("n")] for p in pts],
            hovertemplate="ε %{x}: %{y:.3f} (%{customdata[0]}/%{customdata[1]})<extra></extra>"))
    grid = tm.get("epsilons") or [p["eps"] for p in pts]
    for i, (name, a) in enumerate((tm.get("per_attack") or {}).items()):
        own = a.get("robust_accuracy") or []
        xs = [e for e, v in zip(grid, own) if v is not None]
        ys = [v for v in own if v is not None]
        if xs:
            fig.add_trace(go.Scatter(x=sig(xs), y=sig(ys), mode="lines+markers", name=f"{name} alone",
                                     line={"dash": "dot", "width": 1, "color": COLORWAY[(i + 1) % len(COLORWAY)]},
                                     marker={"size": 4}))
    fig.update_layout(height=380, legend=_legend_top(), margin={"l": 60, "r": 20, "t": 60, "b": 50},
                      xaxis={"title": {"text": f"ε ({label} radius, input units)"}},
                      yaxis={"title": {"text": "robust accuracy"}, "range": [-0.02, 1.02]})
    return Chart(_spec(fig), f"Accuracy under attack against the {label} radius: the per-sample worst case over "
                 "the ensemble (line, shaded 95% Wilson interval; dots are the ε grid with error bars), and each "
                 "attack alone where it ran on every sample (dotted).", source, 380)


# --------------------------------------------------------------------------- GAN


def class_histogram(coverage: dict[str, Any], class_names: list[str], source: str) -> Chart:
    """Judge-predicted classes of the generated samples: all, and confident only."""
    hist = coverage.get("histogram") or []
    names = [str(n) for n in class_names] if len(class_names) == len(hist) else [str(i) for i in range(len(hist))]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=hist, name="all samples", marker={"color": COLORWAY[0]}))
    if coverage.get("confident_histogram") is not None:
        thr = coverage.get("confidence_threshold")
        fig.add_trace(go.Bar(x=names, y=coverage["confident_histogram"], name=f"confidence ≥ {thr}",
                             marker={"color": COLORWAY[1]}))
    fig.update_layout(barmode="group", height=300, legend=_legend_top(), margin={"l": 50, "r": 20, "t": 40, "b": 40},
                      xaxis={"title": {"text": "class predicted by the judge"}, "type": "category"},
                      yaxis={"title": {"text": "samples"}})
    return Chart(_spec(fig), "Classes of the generated samples as the judge classifier sees them; a missing "
                 "or dominant class suggests mode collapse.", source, 300)


def fid(quality: dict[str, Any], source: str) -> Chart:
    """FID of the samples against the real-vs-real reference (± its standard deviation)."""
    fig = go.Figure(go.Bar(
        x=["generated vs test", "train vs test (reference)"],
        y=sig([quality.get("fid"), quality.get("fid_real_vs_real")]),
        error_y={"type": "data", "array": [0, sig(quality.get("fid_real_vs_real_std") or 0)]},
        marker={"color": [COLORWAY[2], COLORWAY[4]]}, hovertemplate="%{x}: %{y:.2f}<extra></extra>"))
    fig.update_layout(height=280, margin={"l": 50, "r": 20, "t": 20, "b": 40},
                      yaxis={"title": {"text": f"Fréchet distance ({quality.get('features', 'judge features')})"}})
    return Chart(_spec(fig), "Fréchet distance of generated samples to real test images, against real training "
                 "images of the same count (the reference, ± one standard deviation over draws).", source, 280)


def latent_importance(latent: dict[str, Any], source: str) -> Chart:
    """Mean |IG attribution| of the judge's class on each latent dimension; top dims highlighted."""
    vals = latent.get("mean_abs_attribution") or []
    top = set(latent.get("top_dims") or [])
    fig = go.Figure(go.Bar(x=list(range(len(vals))), y=sig(vals),
                           marker={"color": [COLORWAY[2] if i in top else COLORWAY[0] for i in range(len(vals))]},
                           hovertemplate="z[%{x}]: %{y}<extra></extra>"))
    fig.update_layout(height=280, margin={"l": 50, "r": 20, "t": 20, "b": 40},
                      xaxis={"title": {"text": "latent dimension (top dimensions in red)"}},
                      yaxis={"title": {"text": "mean |attribution|"}})
    return Chart(_spec(fig), "Which latent dimensions decide the class the judge sees (integrated gradients "
                 "through generator and judge).", source, 280)


# --------------------------------------------------------------------------- provenance


def timings(t: dict[str, float], source: str) -> Chart:
    """Wall time per check (horizontal bars)."""
    names = list(t)[::-1]
    fig = go.Figure(go.Bar(y=names, x=sig([t[n] for n in names]), orientation="h",
                           marker={"color": COLORWAY[0]}, hovertemplate="%{y}: %{x} s<extra></extra>"))
    height = max(180, 28 * len(names) + 70)
    fig.update_layout(height=height, margin={"l": 150, "r": 20, "t": 10, "b": 40},
                      xaxis={"title": {"text": "seconds"}})
    return Chart(_spec(fig), "Wall time per check.", source, height)


def curve_chart(series: dict[str, tuple[list[Any], list[Any], list[Any] | None, list[Any] | None]], x_title: str,
                caption: str, source: str, y_title: str | None = None) -> Chart:
    """Lines ``{name: (xs, ys, ci_low or None, ci_high or None)}``, each with its shaded interval;
    the y axis titled ``y_title`` when given."""
    fig = go.Figure()
    proportions = True
    for i, (name, (xs, ys, lo, hi)) in enumerate(series.items()):
        colour = COLORWAY[i % len(COLORWAY)]
        xs = sig(list(xs))
        if lo is not None and hi is not None:
            fig.add_trace(go.Scatter(x=xs, y=sig(list(hi)), mode="lines", line={"width": 0}, hoverinfo="skip",
                                     showlegend=False, legendgroup=name))
            fig.add_trace(go.Scatter(x=xs, y=sig(list(lo)), mode="lines", line={"width": 0}, fill="tonexty",
                                     fillcolor=_rgba(colour, 0.18), hoverinfo="skip", showlegend=False,
                                     legendgroup=name))
        fig.add_trace(go.Scatter(x=xs, y=sig(list(ys)), mode="lines+markers", name=name, legendgroup=name,
                                 line={"color": colour}))
        proportions &= all(isinstance(v, (int, float)) and 0 <= v <= 1
                           for v in list(ys) + list(lo or []) + list(hi or []) if v is not None)
    yaxis: dict[str, Any] = {"range": [-0.02, 1.02]} if proportions else {}
    if y_title:
        yaxis["title"] = {"text": y_title}
    fig.update_layout(height=320, legend=_legend_top(), margin={"l": 60, "r": 20, "t": 40, "b": 50},
                      xaxis={"title": {"text": x_title}}, yaxis=yaxis)
    return Chart(_spec(fig), caption, source, 320)


def line_chart(series: dict[str, tuple[Iterable[float], Iterable[float]]], x_title: str, y_title: str,
               caption: str, source: str) -> Chart:
    """A plain multi-series line chart (for sections rendered generically)."""
    fig = go.Figure()
    for name, (xs, ys) in series.items():
        fig.add_trace(go.Scatter(x=sig(list(xs)), y=sig(list(ys)), mode="lines+markers", name=name))
    fig.update_layout(height=320, legend=_legend_top(), margin={"l": 60, "r": 20, "t": 40, "b": 50},
                      xaxis={"title": {"text": x_title}}, yaxis={"title": {"text": y_title}})
    return Chart(_spec(fig), caption, source, 320)


# --------------------------------------------------------------------------- several audits, one sample
# The report shows one audit; the dashboard compares several audits on one chart and explores
# single samples (attributions, adversarial examples, generated images).


def curve_overlay(series: dict[str, list[dict[str, Any]]], x_title: str, y_title: str, caption: str,
                  source: str) -> Chart:
    """Several audits' curves on one chart: one colour per audit, each with its 95% band.

    ``series``: ``{audit label: points}``, each point ``{"x", "y", "lo", "hi"}`` (``lo``/``hi``
    None without an interval), as :func:`auditkit.dashboard.curve_points` gives them.
    """
    fig = go.Figure()
    for i, (name, pts) in enumerate(series.items()):
        colour = COLORWAY[i % len(COLORWAY)]
        xs = sig([p["x"] for p in pts])
        if all(p["lo"] is not None and p["hi"] is not None for p in pts) and pts:
            fig.add_trace(go.Scatter(x=xs, y=sig([p["hi"] for p in pts]), mode="lines", line={"width": 0},
                                     hoverinfo="skip", showlegend=False, legendgroup=name))
            fig.add_trace(go.Scatter(x=xs, y=sig([p["lo"] for p in pts]), mode="lines", line={"width": 0},
                                     fill="tonexty", fillcolor=_rgba(colour, 0.15), hoverinfo="skip",
                                     showlegend=False, legendgroup=name))
        fig.add_trace(go.Scatter(x=xs, y=sig([p["y"] for p in pts]), mode="lines+markers" if len(pts) < 15 else "lines",
                                 name=name, legendgroup=name, line={"color": colour, "width": 2.5},
                                 hovertemplate=f"{name} · %{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(height=360, legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
                      margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      xaxis={"title": {"text": x_title}}, yaxis={"title": {"text": y_title}, "range": [-0.02, 1.02]})
    return Chart(_spec(fig), caption, source, 360)


def signed_feature_bars(attributions: dict[str, dict[str, float | None]], inputs: dict[str, Any],
                        source: str) -> Chart:
    """One tabular sample's attributions: a panel of signed bars per method (red pushes towards
    the explained class, blue away), each scaled to its largest |value|; hover shows the raw
    attribution and the feature's value.

    ``attributions``: ``{method: {feature: attribution or None}}``; ``inputs``: ``{feature:
    value}`` (its order is the features'; empty: the first method's features)."""
    methods = list(attributions)
    feats = list(inputs) or list(next(iter(attributions.values()), {}))

    def scaled(m: str) -> dict[str, float]:
        vals = {f: float(attributions[m].get(f) or 0.0) for f in feats}
        top = max((abs(v) for v in vals.values()), default=0.0) or 1.0
        return {f: v / top for f, v in vals.items()}

    scaled_all = {m: scaled(m) for m in methods}
    order = sorted(feats, key=lambda f: sum(abs(scaled_all[m][f]) for m in methods))
    cols = max(1, len(methods))
    fig = make_subplots(rows=1, cols=cols, shared_yaxes=True, subplot_titles=methods,
                        horizontal_spacing=min(0.03, 0.3 / cols))
    for c, m in enumerate(methods, start=1):
        xs = [scaled_all[m][f] for f in order]
        fig.add_trace(go.Bar(
            y=order, x=sig(xs), orientation="h", showlegend=False,
            marker={"color": ["rgb(178,24,43)" if v >= 0 else "rgb(33,102,172)" for v in xs]},
            customdata=[[sig(attributions[m].get(f)), inputs.get(f)] for f in order],
            hovertemplate=f"{m} · %{{y}} = %{{customdata[1]}}: attribution %{{customdata[0]}}<extra></extra>"),
            row=1, col=c)
        fig.update_xaxes(range=[-1.05, 1.05], row=1, col=c)
    for ann in fig.layout.annotations:
        ann.font = {"size": 10}
    height = min(900, max(300, 24 * len(order) + 90))
    fig.update_layout(height=height, margin={"l": 170, "r": 10, "t": 40, "b": 30})
    return Chart(_spec(fig), "Attributions of this sample per method, scaled to each method's largest |value| "
                 "(red: towards the explained class; blue: away from it).", source, height)


def _chunk(items: list[Any], size: int) -> list[list[Any]]:
    """A flat list cut into rows of ``size`` (the last may be shorter); ``[[]]`` for none."""
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def attribution_grid(item: dict[str, Any], titles: dict[str, str], zrange: tuple[float, float],
                     overlay: bool, source: str, per_row: int = 5, head: str | None = None,
                     caption: str | None = None) -> Chart:
    """One image sample: the input, then each method's signed map (over the input if ``overlay``).

    ``item`` is an attributions-gallery entry (``input`` ``[H][W]`` or ``[H][W][C]``, each
    attribution ``[H][W]``); ``titles`` maps method ids to names; ``head`` replaces the input
    panel's title (label and prediction) and ``caption`` the chart's. Maps are red for evidence
    for the explained class, blue against, each scaled to its own largest |value|."""
    kind, img = as_image(item["input"])
    head = head or (f"input · label {item.get('label_name') or item.get('label')} · pred "
                    f"{item.get('prediction_name') or item.get('prediction')}")
    panels: list[Panel | None] = [Panel(img, head, kind=kind, zrange=zrange)]  # type: ignore[arg-type]
    for m, a in (item.get("attributions") or {}).items():
        panels.append(Panel(a, titles.get(m, m), kind="signed", under=img if overlay else None, zrange=zrange,
                            hover=m))
    return image_grid(_chunk(panels, per_row), caption or "The input and each method's attribution map (red: "
                      "evidence for the explained class, blue: against; each map scaled to its own largest |value|).",
                      source, cell_px=150)


def adversarial_grid(item: dict[str, Any], class_name: Any, zrange: tuple[float, float], norm: str,
                     source: str) -> Chart:
    """Clean input, adversarial input and the perturbation of one sample, with predictions.

    ``item`` holds ``clean``, ``adversarial``, ``perturbation`` (channel-first nested lists of
    ``shape``), ``label``, ``clean_pred``, ``adv_pred`` and ``norm`` (the perturbation's size, as
    the robustness gallery and :func:`auditkit.dashboard.live_attack` give them); ``class_name``
    maps a class index to its name. An RGB perturbation is summed over its channels into one
    signed map (red: pixel increased, blue: decreased)."""
    shape = item.get("shape")
    ck, clean = as_image(item["clean"], shape)
    ak, adv = as_image(item["adversarial"], shape)
    pk, pert = as_image(item["perturbation"], shape)
    if pk == "rgb":
        pert = sum_channels(pert)
    size = finite_float(item.get("norm"))
    panels = [
        Panel(clean, f"clean · pred {class_name(item.get('clean_pred'))} (label {class_name(item.get('label'))})",
              kind=ck, zrange=zrange),  # type: ignore[arg-type]
        Panel(adv, f"adversarial · pred {class_name(item.get('adv_pred'))}", kind=ak, zrange=zrange),  # type: ignore[arg-type]
        Panel(pert, f"perturbation · {NORM_LABEL.get(norm, norm)} norm {size:.3g}" if size is not None
              else "perturbation", kind="signed", hover="δ"),
    ]
    return image_grid([panels], "Clean input, adversarial input and the perturbation between them "
                      "(red: pixel increased, blue: decreased).", source, cell_px=170)


def sample_grid(images: list[Any], titles: list[str], zrange: tuple[float, float], caption: str, source: str,
                per_row: int = 8) -> Chart:
    """Small multiples of images (GAN samples, memorisation pairs), ``per_row`` a row.

    Each image is ``[H][W]`` or ``[H][W][C]`` with pixels in ``zrange``."""
    panels: list[Panel | None] = []
    for z, t in zip(images, titles):
        kind, img = as_image(z)
        panels.append(Panel(img, t, kind=kind, zrange=zrange))  # type: ignore[arg-type]
    return image_grid(_chunk(panels, per_row), caption, source, cell_px=100)


__all__ = [
    "Chart", "Panel", "adversarial_grid", "as_image", "attribution_grid", "class_histogram",
    "confusion_matrix", "curve_chart", "curve_overlay", "deletion_insertion", "depth", "feature_importance", "fid",
    "finite_float", "ig_history", "image_grid", "latent_importance", "line_chart", "pack", "randomisation", "reliability",
    "robustness_curve", "sample_grid", "sig", "signed_feature_bars", "sum_channels", "timings", "token_importance",
]


def defense_comparison(rows: list[dict[str, Any]], y_title: str, source: str) -> Chart:
    """Grouped bars, one group per defense at its headline point: the undefended model, the
    defense under a non-adaptive evaluation and under the adaptive attack, each with its 95%
    interval. ``rows``: ``{"name", "undefended", "non_adaptive", "adaptive"}``, the last three
    ``{"value", "ci_low", "ci_high"}`` proportions or None. The gap between the last two bars is
    how much a non-adaptive evaluation would overstate the defense."""
    fig = go.Figure()
    names = [r["name"] for r in rows]
    for i, (key, label) in enumerate((("undefended", "undefended model"),
                                      ("non_adaptive", "defended, non-adaptive attack"),
                                      ("adaptive", "defended, adaptive attack (the honest figure)"))):
        ys, plus, minus = [], [], []
        for r in rows:
            p = r.get(key) or {}
            v, lo, hi = p.get("value"), p.get("ci_low"), p.get("ci_high")
            ys.append(v)
            plus.append(None if v is None or hi is None else hi - v)
            minus.append(None if v is None or lo is None else v - lo)
        fig.add_trace(go.Bar(x=names, y=sig(ys), name=label, marker={"color": [COLORWAY[9], COLORWAY[1], COLORWAY[0]][i]},
                             error_y={"type": "data", "array": sig(plus), "arrayminus": sig(minus), "visible": True,
                                      "thickness": 1.2, "width": 4},
                             hovertemplate="%{x}<br>" + label + ": %{y:.1%}<extra></extra>"))
    fig.update_layout(barmode="group", height=340, legend=_legend_top(),
                      margin={"l": 70, "r": 20, "t": 40, "b": 60},
                      xaxis={"title": {"text": "defense (headline point)"}},
                      yaxis={"title": {"text": y_title}, "range": [0, 1.05], "tickformat": ".0%"})
    return Chart(_spec(fig), "Each defense at its headline point: the undefended model, the defended model under "
                 "a non-adaptive evaluation, and under the adaptive attack (error bars: 95% intervals). Where the "
                 "middle bar stands above the right one, a non-adaptive evaluation would overstate the defense.",
                 source, 340)
