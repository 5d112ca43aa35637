"""Card inference: what the model and the data reveal, so a user need not write a card (DESIGN.md §3).

:func:`infer_card` looks at the data (kind, shapes, dtype, labels, value range) and probes the
model with a small batch (output width, logits or probabilities, one output for a binary task,
vocabulary size), then fills every card field it can and records, per field, where the value
came from (``inferred``, ``flag``, ``file``, ``embedded``, ``sidecar``, ``argument``,
``default``) and, for inferred fields, what was assumed. :func:`resolve` is the one place where
the scan turns (model, data, card, flags) into a loaded model, loaded data and a card, for the
CLI and the Python API alike.

Rules (each is said in the card's notes when it is applied):

- task: the data's kind (image arrays ``[N, C, H, W]`` or ``[N, H, W]``, tables, text CSV);
  integer ``[N, L]`` arrays are token ids when the model refuses float input; a module with
  ``generator`` and ``discriminator`` is a GAN.
- class names: the labels' names (integer labels ``0..K-1`` are named ``"0".."K-1"``; string
  labels are taken in sorted order), cross-checked with the model's output width.
- output: ``[N, C]`` rows in [0, 1] summing to 1 are probabilities; one value per sample on a
  binary task is a logit (or a probability when every value lies in [0, 1]) of class 1.
- positive class (binary only): the minority class when the smaller class holds under 40 % of
  the labels, else the second class.
- bounds (images): [0, 1], [0, 255] or [-1, 1] when the data lie inside; else the observed
  min/max widened by 5 % of the range.
- epsilons (images): Linf ``w * (1, 2, 4, 8, 16)/255`` with ``w = high - low``; L2 the same
  times ``sqrt(d) / 4`` (``d`` values per sample), the usual L2/Linf ratio of image benchmarks
  (0.5 vs 8/255 on CIFAR-10); text: 1..3 word substitutions.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from auditkit.card import AuditCard, FeatureSpec, Preprocessing, TextSpec
from auditkit.data.base import AuditData
from auditkit.errors import CardError, DataError, ScanInputError, one_line
from auditkit.loading import AuditModel

PROBE_SAMPLES = 32
IMBALANCED = 0.4  # share of the smaller class below which a binary task is called imbalanced
LINF_STEPS = (1, 2, 4, 8, 16)  # in 1/255 of the bounds' width
L2_RATIO = 0.25  # L2 eps = Linf eps * sqrt(d) * L2_RATIO
SUBSTITUTIONS = (1, 2, 3)
SOURCES = ("file", "embedded", "sidecar", "argument", "flag", "inferred", "default")


@dataclass
class CardResolution:
    """The card a scan uses, where each field came from, and what inference assumed.

    ``sources`` maps every card field to one of :data:`SOURCES`; ``notes`` maps inferred
    fields to a sentence saying how (and what was assumed); ``origin`` is the card file's
    description (``"file PATH"``, ``"embedded in PATH"``...) or ``"inferred"``.
    """

    card: AuditCard
    sources: dict[str, str]
    notes: dict[str, str] = field(default_factory=dict)
    origin: str = "inferred"

    @property
    def inferred(self) -> bool:
        return any(s == "inferred" for s in self.sources.values())


# --------------------------------------------------------------------------- outputs


class OutputAdapter(nn.Module):
    """Turns a model's outputs into logits ``[N, C]`` (card field ``output``).

    - ``probabilities`` ``[N, C]`` → ``log(p)`` (equal to the logits up to a per-row constant);
    - ``binary-logit`` ``[N]`` or ``[N, 1]`` (logit of class 1) → ``[0, z]``, whose softmax is
      ``[1 - sigmoid(z), sigmoid(z)]``;
    - ``binary-probability`` (probability of class 1) → ``[0, log(p / (1 - p))]``.
    """

    def __init__(self, module: nn.Module, output: str):
        super().__init__()
        self.inner = module
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.output == "logits":
            return out
        if self.output == "probabilities":
            return torch.log(out.clamp_min(1e-12))
        z = out.reshape(len(out), -1)[:, :1]
        if self.output == "binary-probability":
            p = z.clamp(1e-7, 1 - 1e-7)
            z = torch.log(p) - torch.log1p(-p)
        return torch.cat([torch.zeros_like(z), z], dim=1)


def adapt_outputs(model: AuditModel) -> None:
    """Wrap ``model.module`` in an :class:`OutputAdapter` when its card says it does not return
    logits (idempotent)."""
    if model.card.output != "logits" and not isinstance(model.module, OutputAdapter):
        model.module = OutputAdapter(model.module, model.card.output).eval()


# --------------------------------------------------------------------------- probing


def _device(module: nn.Module, fallback: torch.device | str = "cpu") -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device(fallback)


@torch.no_grad()
def probe(module: nn.Module, x: np.ndarray, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """``module`` on ``x`` as ``dtype``: the raw output (a tensor), or :class:`ScanInputError`
    saying that the model does not accept the data."""
    dev = device or _device(module)
    t = torch.as_tensor(np.ascontiguousarray(x)).to(device=dev, dtype=dtype)
    try:
        out = module(t)
    except Exception as exc:  # the model refuses these inputs: shapes or dtypes do not fit
        raise ScanInputError(
            f"the model fails on {len(x)} data samples of shape {list(x.shape[1:])} ({str(dtype).replace('torch.', '')}): "
            f"{one_line(exc, 300)}; pass data in the model's input shape and scaling, or a card (--card)"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise ScanInputError(f"the model returns a {type(out).__name__}, not a tensor of logits [N, C]; "
                             "wrap it so that forward returns the logits tensor")
    return out.detach().float().cpu()


def _accepts(module: nn.Module, x: np.ndarray, dtype: torch.dtype) -> bool:
    try:
        probe(module, x, dtype)
        return True
    except ScanInputError:
        return False


def embedding_rows(module: nn.Module) -> int | None:
    """Rows of the model's first embedding table (its vocabulary size), when it can be read:
    an ``nn.Embedding`` in an eager module, or a TorchScript submodule compiled from one."""
    for m in module.modules():
        if isinstance(m, nn.Embedding):
            return int(m.num_embeddings)
        if getattr(m, "original_name", None) == "Embedding":
            weight = getattr(m, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.dim() == 2:
                return int(weight.shape[0])
    return None


def _output_kind(out: torch.Tensor, n_labels: int) -> tuple[str, int, str]:
    """``(output, width, note)`` from raw outputs ``out`` of the probe batch."""
    flat = out.reshape(len(out), -1) if out.dim() != 2 else out
    if out.dim() > 2 and flat.shape[1] != 1:
        raise ScanInputError(f"the model returns {list(out.shape[1:])} values per sample; auditkit needs "
                             "logits [N, C] (one value per class)")
    if not torch.isfinite(flat).all():
        from auditkit.errors import ModelLoadError

        raise ModelLoadError("the model returns NaN or infinite outputs on the first test samples; "
                             "check its weights (and that it was saved after training)")
    width = flat.shape[1]
    in_unit = bool(((flat >= 0) & (flat <= 1)).all())
    if width == 1 or out.dim() == 1:
        if n_labels > 2:
            raise ScanInputError(f"the model returns one value per sample but the labels hold {n_labels} "
                                 "classes; pass the matching model or data")
        if in_unit:
            return "binary-probability", 2, ("one value per sample, all in [0, 1]: read as the probability of "
                                             "class 1 (a sigmoid output); turned into logits [0, logit(p)]")
        return "binary-logit", 2, ("one value per sample: read as the logit of class 1 (sigmoid); turned into "
                                   "logits [0, z]")
    if in_unit and bool(torch.allclose(flat.sum(1), torch.ones(len(flat)), atol=1e-3)):
        return "probabilities", width, (f"{width} values per sample in [0, 1] summing to 1: read as "
                                        "probabilities (a softmax inside the model); auditkit attacks log(p)")
    return "logits", width, f"{width} values per sample: read as logits"


# --------------------------------------------------------------------------- inference


def _round(v: float) -> float:
    return float(f"{v:.4g}")


def infer_bounds(x: np.ndarray) -> tuple[tuple[float, float], str]:
    """Valid input range of images ``x`` from their values, and the sentence that says how."""
    lo, hi = float(x.min()), float(x.max())
    seen = f"data range [{lo:.4g}, {hi:.4g}]"
    if lo >= 0 and hi <= 1:
        return (0.0, 1.0), f"{seen} lies in [0, 1]: assumed pixels scaled to [0, 1]"
    if lo >= 0 and hi <= 255:
        return (0.0, 255.0), f"{seen} lies in [0, 255]: assumed raw 8-bit pixel values"
    if lo >= -1 and hi <= 1:
        return (-1.0, 1.0), f"{seen} lies in [-1, 1]: assumed pixels scaled to [-1, 1]"
    margin = 0.05 * (hi - lo) if hi > lo else 1.0
    return (_round(lo - margin), _round(hi + margin)), (
        f"{seen} is not [0, 1], [0, 255] or [-1, 1] (standardised data?): bounds are the observed min/max "
        "widened by 5% of the range; pass --bounds LO,HI with the true range of valid inputs")


def default_epsilons(task: str, bounds: tuple[float, float] | None, input_shape: list[int]) -> tuple[dict[str, list[float]], str]:
    """Default attack budgets for ``task`` scaled to the bounds' width and the input size."""
    if task == "text-classification":
        ks = [float(k) for k in SUBSTITUTIONS if k <= input_shape[0]]
        return {"substitutions": [0.0, *ks]}, f"{', '.join(str(int(k)) for k in ks)} word substitutions"
    if task == "tabular-classification":
        return {}, "tables are attacked within the feature schema's ranges; no epsilons needed"
    if bounds is None:
        return {}, "no bounds, so no budgets in input units: pass --bounds LO,HI (or --eps)"
    width = bounds[1] - bounds[0]
    d = math.prod(input_shape)
    linf = [0.0, *(_round(width * s / 255) for s in LINF_STEPS)]
    l2 = [0.0, *(_round(width * s / 255 * math.sqrt(d) * L2_RATIO) for s in LINF_STEPS)]
    return {"linf": linf, "l2": l2}, (
        f"Linf (1..16)/255 of the bounds' width {width:g}; L2 the same x sqrt({d}) x {L2_RATIO:g} "
        "(the usual L2/Linf ratio of image benchmarks)")


def _text_spec_for_ids(vocab_size: int) -> tuple[TextSpec, str]:
    """A placeholder vocabulary for token ids with no vocabulary: ``<pad>`` = 0, ``<unk>`` = 1."""
    vocab = ["<pad>", "<unk>", *(f"tok{i}" for i in range(2, vocab_size))]
    return TextSpec(vocab=vocab), (f"token ids without a vocabulary: {vocab_size} ids, id 0 assumed <pad> and "
                                   "id 1 <unk>, words shown as tokN; pass a card with the model's 'text.vocab' "
                                   "for readable reports")


def _as_text(module: nn.Module, data: AuditData, device: torch.device | None) -> tuple[AuditData, str] | None:
    """Integer ``[N, L]`` tabular-read arrays as token ids, when the model wants ids (it refuses
    float input, or holds an embedding table); None otherwise."""
    from auditkit.data import as_text_data

    x = data.x_test[:4]
    if data.meta.get("x_integral") is not True or x.ndim != 2 or data.x_train.min() < 0:
        return None
    rows = embedding_rows(module)
    wants_ids = rows is not None or not _accepts(module, x, torch.float32)
    if not wants_ids or not _accepts(module, x, torch.int64):
        return None
    top = int(max(data.x_train.max(), data.x_test.max()))
    size = rows or top + 1
    if top >= size:
        raise ScanInputError(f"token ids reach {top} but the model embeds only {size} tokens; encode the text "
                             "with the model's vocabulary")
    text, note = _text_spec_for_ids(size)
    return as_text_data(data, text), note


def _truncate_vocab(data: AuditData, rows: int) -> AuditData:
    """Text data over the first ``rows`` tokens of its vocabulary; later ids become <unk>."""
    assert data.text is not None
    text = TextSpec(vocab=data.text.vocab[:rows], pad_token=data.text.pad_token, unk_token=data.text.unk_token)
    out = copy.copy(data)
    out.x_train = np.where(data.x_train >= rows, text.unk_id, data.x_train)
    out.x_test = np.where(data.x_test >= rows, text.unk_id, data.x_test)
    out.text = text
    return out


def _class_names(data: AuditData, width: int, names_given: list[str] | None) -> tuple[list[str], str]:
    m = data.num_classes
    strings = data.meta.get("labels") == "strings"
    if names_given is not None:
        return names_given, ""
    if width < m:
        raise ScanInputError(f"the model returns {width} values per sample but the labels hold {m} classes "
                             f"({', '.join(data.class_names[:10])}); pass the matching model or data")
    names = list(data.class_names)
    note = ("string labels taken in sorted order as the model's output order; pass --class-names in the "
            "model's output order if it differs" if strings else
            "integer labels: class i is the model's output i")
    if width > m:
        extra = [str(i) if not strings else f"class{i}" for i in range(m, width)]
        names += extra
        note += f"; the model has {width} outputs but the labels only {m} classes: outputs {m}..{width - 1} named {extra[:3]}"
    return names, note


def _positive(data: AuditData, names: list[str]) -> tuple[str | None, str]:
    if len(names) != 2:
        return None, "multi-class: no positive class"
    y = np.concatenate([data.y_train, data.y_test])
    counts = np.bincount(y, minlength=2)
    share = counts / counts.sum()
    minority = int(share.argmin())
    if share[minority] < IMBALANCED:
        return names[minority], (f"binary and imbalanced: {names[minority]!r} holds {share[minority]:.1%} of the "
                                 "labels, so it is the positive class (PR-AUC, tabular evasion)")
    return names[1], (f"binary and balanced ({share[1]:.0%} {names[1]!r}): the second class is taken as positive; "
                      "pass --positive-class to choose")


def _relabel(data: AuditData, names: list[str]) -> AuditData:
    """``data`` with its classes named ``names`` (the --class-names flag): string labels are
    matched by name, integer labels renamed in order."""

    if data.meta.get("labels") == "strings":
        unknown = [n for n in data.class_names if n not in names]
        if unknown:
            raise DataError(f"labels {unknown[:5]} are not among --class-names {names[:10]}; list every label")
        index = np.asarray([names.index(n) for n in data.class_names], dtype=np.int64)
    else:
        if len(names) < data.num_classes:
            raise DataError(f"--class-names gives {len(names)} names but the labels run to "
                            f"{data.num_classes - 1}; name every class")
        index = np.arange(data.num_classes, dtype=np.int64)
    out = copy.copy(data)
    out.y_train, out.y_test = index[data.y_train], index[data.y_test]
    out.class_names = list(names)
    return out


def infer_card(
    module: nn.Module,
    data: AuditData,
    overrides: Mapping[str, Any] | None = None,
    name: str | None = None,
    dataset: str | None = None,
    device: torch.device | None = None,
) -> tuple[CardResolution, AuditData]:
    """Infer a card for ``module`` from ``data`` (rules in this module's docstring).

    ``overrides`` are card fields given by the user (flags): they win over inference and
    inference builds on them (e.g. epsilons scale to given bounds). Returns the resolution and
    the data as the card reads it (text ids from integer arrays, classes renamed by
    ``--class-names``). Raises :class:`ScanInputError` when model and data do not fit,
    :class:`CardError` when the result is not a valid card.
    """
    over = dict(overrides or {})
    values: dict[str, Any] = {}
    notes: dict[str, str] = {}
    if "class_names" in over:
        data = _relabel(data, list(over["class_names"]))
    is_gan = isinstance(getattr(module, "generator", None), nn.Module) and \
        isinstance(getattr(module, "discriminator", None), nn.Module)
    task = over.get("task")
    if task is None:
        if is_gan:
            task, notes["task"] = "gan", "the module has a generator and a discriminator"
        else:
            converted = _as_text(module, data, device) if data.task == "tabular-classification" else None
            if converted is not None:
                data, notes["text"] = converted
                notes["task"] = "integer [N, L] arrays and a model that takes token ids (int64)"
            task = data.task
            notes.setdefault("task", {
                "image-classification": f"{data.name}: samples of shape {data.input_shape} (images [C, H, W])",
                "tabular-classification": f"{data.name}: rows of {data.input_shape[0]} features",
                "text-classification": f"{data.name}: texts as {data.input_shape[0]} token ids",
            }.get(data.task, data.task))
    elif task == "text-classification" and data.task == "tabular-classification":
        converted = _as_text(module, data, device)
        if converted is None:
            raise ScanInputError("--task text-classification needs integer token ids [N, L] and a model that "
                                 "takes them (int64); use text-csv:PATH?text=COL&label=COL for raw text")
        data, notes["text"] = converted
    values["task"] = task
    values["input_shape"] = list(data.input_shape)
    values["input_dtype"] = "int64" if task == "text-classification" else "float32"
    notes["input_shape"] = f"shape of one data sample ({data.x_test.dtype} in the data)"
    notes["input_dtype"] = "token ids" if task == "text-classification" else "float inputs"
    values["name"] = name
    notes["name"] = "the model file's name"
    if dataset:
        values["dataset"], notes["dataset"] = dataset, "the --data spec of this scan"

    if task == "gan":
        latent = getattr(module, "latent_dim", None) or getattr(getattr(module, "generator", None), "latent_dim", None)
        if not latent and "latent_dim" not in over:
            raise CardError("a GAN needs 'latent_dim' and the module has no latent_dim attribute; pass a card with "
                            "latent_dim (auditkit card init writes a draft)")
        values["latent_dim"], notes["latent_dim"] = latent, "the module's latent_dim attribute"
        values["class_names"] = list(data.class_names)
    else:
        dtype = torch.int64 if task == "text-classification" else torch.float32
        if task == "text-classification" and data.text is not None:
            rows = embedding_rows(module)
            v = len(data.text.vocab)
            if rows is not None and rows < v and str(data.meta.get("vocab", "")).startswith("built"):
                # A vocabulary built from the data, larger than the model's: keep its most
                # frequent words (it is sorted by frequency) and map the rest to <unk>.
                data = _truncate_vocab(data, rows)
                notes["text"] = (f"vocabulary built from the training split, cut to the model's {rows} embedding "
                                 f"rows (its {rows - 2} most frequent words; the other {v - rows} map to <unk>); it "
                                 "fits only a model trained with that same vocabulary: pass the model's own with "
                                 "vocab=FILE in the text-csv spec")
                v = rows
            if rows is not None and rows != v:
                if int(max(data.x_train.max(), data.x_test.max())) >= rows:
                    raise ScanInputError(
                        f"the data's vocabulary has {v} tokens ({data.meta.get('vocab', 'built from the data')}) "
                        f"but the model embeds only {rows}; pass the model's vocabulary (text-csv ...&vocab=FILE) "
                        "or a card with its text.vocab")
                notes["text"] = (notes.get("text", "") + f" WARNING: the model embeds {rows} tokens but the "
                                 f"vocabulary has {v}: ids may not be the model's; pass vocab=FILE").strip()
        out = probe(module, data.x_test[:PROBE_SAMPLES], dtype, device)
        output, width, notes["output"] = _output_kind(out, data.num_classes)
        values["output"] = over.get("output", output)
        names, note = _class_names(data, width, over.get("class_names"))
        values["class_names"] = names
        if note:
            notes["class_names"] = note
        if "positive_class" not in over:
            positive, notes["positive_class"] = _positive(data, names)
            if len(names) == 2 or task == "tabular-classification":
                values["positive_class"] = positive
            if task == "tabular-classification" and positive is None:
                notes["positive_class"] += ("; the tabular evasion attack needs one: pass --positive-class "
                                            "with the class an attacker wants to escape")
    if task == "tabular-classification":
        values["features"] = [f.model_copy(deep=True) for f in data.features or []]
        kinds = [f.kind for f in values["features"]]
        notes["features"] = (", ".join(f"{kinds.count(k)} {k}" for k in ("continuous", "integer", "categorical",
                                                                            "binary") if k in kinds)
                             + " (kinds and ranges from the data; every feature assumed changeable by an "
                               "attacker: set changeable false in a card for those that are not)")
    if task == "text-classification":
        if data.text is None:
            raise ScanInputError("text data without a vocabulary; read it with text-csv:PATH?text=COL&label=COL")
        values["text"] = data.text.model_copy(deep=True)
        built = str(data.meta.get("vocab", "")).startswith("built")
        notes.setdefault("text", f"vocabulary of {len(data.text.vocab)} tokens, "
                                 f"{data.meta.get('vocab', 'from the data')}"
                         + ("; it fits only a model trained with this same vocabulary (<pad> 0, <unk> 1, words by "
                            "falling frequency): pass the model's own with vocab=FILE in the text-csv spec"
                            if built else ""))
    if task in ("image-classification", "gan") and "bounds" not in over:
        values["bounds"], notes["bounds"] = infer_bounds(np.concatenate([data.x_train.ravel(), data.x_test.ravel()]))
    bounds = over.get("bounds", values.get("bounds"))
    if "epsilons" not in over:
        eps, notes["epsilons"] = default_epsilons(task, tuple(bounds) if bounds else None, values["input_shape"])
        if eps:
            values["epsilons"] = eps
    values.update(over)
    sources = {f: ("flag" if f in over else "inferred" if f in values and values[f] is not None else "default")
               for f in AuditCard.model_fields}
    card = AuditCard.from_dict({k: _plain(v) for k, v in values.items() if v is not None},
                               source="the inferred card", sources=sources)
    data = copy.copy(data)  # the caller's AuditData keeps its own fields
    data.positive_class = card.positive_class
    data.class_names = list(card.class_names) or data.class_names
    return CardResolution(card=card, sources=sources, notes={k: v for k, v in notes.items()
                                                               if sources.get(k) == "inferred"},
                          origin="inferred"), data


def _plain(value: Any) -> Any:
    if isinstance(value, (FeatureSpec, TextSpec, Preprocessing)):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def source_kind(card_source: str | None) -> str:
    """The kind of a loader's ``card_source`` string: file, embedded, sidecar or argument."""
    text = card_source or ""
    for kind in ("file", "embedded", "sidecar", "argument"):
        if text.startswith(kind):
            return kind
    return "file"


def with_overrides(card: AuditCard, origin: str | None, overrides: Mapping[str, Any]) -> CardResolution:
    """A given card with flag ``overrides`` applied, and every field's source."""
    kind = source_kind(origin)
    given = card.model_fields_set
    sources = {f: ("flag" if f in overrides else kind if f in given else "default") for f in AuditCard.model_fields}
    if overrides:
        data = card.model_dump()
        data.update({k: _plain(v) for k, v in overrides.items()})
        card = AuditCard.from_dict(data, source=f"card ({origin}) with flags", sources=sources)
    return CardResolution(card=card, sources=sources, origin=origin or kind)


# --------------------------------------------------------------------------- the one entry point


@dataclass
class Resolved:
    """What :func:`resolve` gives the scan: model (card set, outputs adapted), data, data
    spec as recorded in provenance, and the card's resolution."""

    model: AuditModel
    data: AuditData
    data_spec: str
    resolution: CardResolution


def resolve(
    model: Any,
    data: Any = None,
    *,
    card: AuditCard | str | Path | None = None,
    arch: str | None = None,
    trust_pickle: bool = False,
    device: str = "auto",
    overrides: Mapping[str, Any] | None = None,
) -> Resolved:
    """Load or wrap ``model`` and ``data``, and settle the card (given, overridden or inferred).

    ``model``: a path (any accepted format), an :class:`AuditModel` or an ``nn.Module``.
    ``data``: a data spec, an :class:`AuditData`, arrays ``(x, y)`` or ``(x_train, y_train,
    x_test, y_test)`` (NumPy or torch), a ``Dataset``/``DataLoader`` of ``(x, y)`` pairs, or
    ``(DataFrame, "target")``; None means the card's ``dataset``. ``overrides``: card fields
    (what the CLI flags set). Raises the :mod:`auditkit.errors` class that fits.
    """
    from auditkit.data import check_fits_card, load_data
    from auditkit.data.objects import data_from_objects, model_from_module
    from auditkit.loading import load_model

    over = dict(overrides or {})
    unknown = sorted(set(over) - set(AuditCard.model_fields))
    if unknown:
        raise CardError(f"unknown card field(s) {unknown} in overrides; fields: {', '.join(AuditCard.model_fields)}")
    if isinstance(model, (AuditModel, nn.Module)):
        audit_model = model if isinstance(model, AuditModel) else model_from_module(model, device=device)
        if isinstance(card, AuditCard):
            audit_model.card, audit_model.card_source = card, "argument"
        elif card is not None:
            audit_model.card, audit_model.card_source = AuditCard.read(card), f"file {card}"
    else:
        audit_model = load_model(model, card=card, arch=arch, trust_pickle=trust_pickle, device=device,
                                 require_card=False)
    given = audit_model.card
    resolution = with_overrides(given, audit_model.card_source, over) if given is not None else None
    the_card = resolution.card if resolution is not None else None

    if isinstance(data, AuditData):
        audit_data, data_spec = data, data.name
    elif data is None or isinstance(data, (str, Path)):
        data_spec = str(data) if data is not None else (the_card.dataset if the_card is not None else None)
        if not data_spec:
            what = "the card names no dataset" if the_card is not None else \
                f"{audit_model.path} carries no audit card"
            raise ScanInputError(f"{what}; pass --data SPEC (e.g. npz:test.npz or csv:table.csv?target=label) "
                                 "and the card is inferred from the model and the data, or pass --card FILE")
        audit_data = load_data(data_spec, card=the_card)
    else:
        audit_data = data_from_objects(data, card=the_card)
        data_spec = audit_data.meta.get("spec", "<objects>")

    if resolution is None:
        name = audit_model.path.name.split(".")[0] if audit_model.format != "module" else audit_model.path.name
        resolution, audit_data = infer_card(
            audit_model.module, audit_data, over, name=name,
            dataset=data_spec if isinstance(data, (str, Path)) else None, device=audit_model.device)
        audit_model.card_source = "inferred from the model and the data"
    else:
        if overrides:
            audit_model.card_source = f"{audit_model.card_source} with flags {', '.join(sorted(over))}"
        audit_data.positive_class = resolution.card.positive_class
    audit_model.card = resolution.card
    check_fits_card(audit_data, resolution.card)
    adapt_outputs(audit_model)
    return Resolved(model=audit_model, data=audit_data, data_spec=data_spec, resolution=resolution)


# --------------------------------------------------------------------------- drafts


def draft_card(resolution: CardResolution) -> str:
    """The card as an editable JSON draft: before each ``"field"``, a ``"_field"`` comment says
    what it means, where its value came from and, when inferred, how (comments are ignored
    when the card is read)."""
    import json

    doc: dict[str, Any] = {
        "_about": "auditkit audit card (draft written by `auditkit card init`). Keys starting with '_' are "
                  "comments. Check the inferred values, edit, then `auditkit card check FILE`; every field is "
                  "documented in docs/card.md and `auditkit card schema` prints the JSON Schema.",
    }
    for name, value in resolution.card.model_dump(mode="json").items():
        info = AuditCard.model_fields[name]
        source = resolution.sources.get(name, "default")
        how = resolution.notes.get(name)
        doc[f"_{name}"] = f"{info.description} [{source}{': ' + how if how else ''}]"
        doc[name] = value
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- display


def _show(value: Any) -> str:
    if isinstance(value, TextSpec):
        return f"{len(value.vocab)} tokens (pad {value.pad_token!r}, unk {value.unk_token!r})"
    if isinstance(value, list) and value and isinstance(value[0], FeatureSpec):
        return f"{len(value)} features: " + ", ".join(f"{f.name} ({f.kind})" for f in value[:4]) + \
            (", ..." if len(value) > 4 else "")
    if isinstance(value, Preprocessing):
        return f"mean {value.mean}, std {value.std}, applied {value.applied}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {', '.join(f'{v:g}' for v in vs)}" for k, vs in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value[:10]) + (f", ... ({len(value)})" if len(value) > 10 else "")
        return f"[{text}]"
    return str(value)


SHOWN = ("task", "input_shape", "input_dtype", "output", "class_names", "positive_class", "bounds",
         "epsilons", "features", "text", "latent_dim", "preprocessing")


def card_rows(resolution: CardResolution) -> list[tuple[str, str, str, str]]:
    """``(field, value, source, how)`` rows of the fields a reader should check."""
    rows = []
    card = resolution.card
    for name in SHOWN:
        value = getattr(card, name)
        if value is None or value == {} or (name == "output" and value == "logits" and
                                            resolution.sources.get(name) == "default"):
            continue
        rows.append((name, _show(value), resolution.sources.get(name, "default"), resolution.notes.get(name, "")))
    return rows


def print_card(resolution: CardResolution, written_to: Path | None = None) -> None:
    """The card as a short table on stderr (what was inferred, and how)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    where = f"; written to {written_to}" if written_to else ""
    table = Table(title=escape(f"audit card ({resolution.origin}{where})"), title_justify="left")
    for col in ("field", "value", "source", "how it was inferred"):
        table.add_column(col, overflow="fold")
    for row in card_rows(resolution):
        table.add_row(*(escape(one_line(c, 300)) for c in row))
    Console(stderr=True, highlight=False).print(table)
