"""The audit card: what the scan needs to know about a model that its weights do not say.

The card travels inside a zoo ``model.pt`` (key ``"card"``), inside a TorchScript archive
(``_extra_files["card.json"]``), or beside any model file as ``<stem>.card.json``; without one,
``auditkit scan MODEL --data SPEC`` infers it (:mod:`auditkit.inference`). See DESIGN.md §3 and
``docs/card.md``; ``auditkit card schema`` prints the JSON Schema generated from
:class:`AuditCard`, the published contract.

Card files are JSON objects. Keys starting with ``_`` (and ``$schema``) are comments: a draft
written by ``auditkit card init`` puts a ``"_field"`` description before each ``"field"``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from auditkit.errors import CardError  # noqa: F401  (re-exported)
from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

Task = Literal["image-classification", "text-classification", "tabular-classification", "gan"]
TASKS: tuple[str, ...] = ("image-classification", "text-classification", "tabular-classification", "gan")
FeatureKind = Literal["continuous", "integer", "categorical", "binary"]
Output = Literal["logits", "probabilities", "binary-logit", "binary-probability"]
EPSILON_NORMS: tuple[str, ...] = ("linf", "l2", "substitutions")
MAX_INPUT_SIZE = 2**28  # values in one sample; more is no model this tool can audit on a CPU
MAX_CLASSES = 100_000

# The CLI flag of `auditkit scan` that sets each card field (errors name only flags that exist).
FIELD_FLAGS: dict[str, str] = {
    "task": "--task",
    "bounds": "--bounds LO,HI",
    "epsilons": "--eps linf=A,B l2=C",
    "class_names": "--class-names A,B,...",
    "positive_class": "--positive-class NAME",
    "preprocessing": "--preprocessing 'mean=..;std=..'",
}

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
PositiveInt = Annotated[int, Field(ge=1)]
# Epsilons are checked by hand (NaN, negative, too large for the bounds), all problems at once.
AnyFloat = Annotated[float, AllowInfNan(True)]


class FeatureSpec(BaseModel):
    """One column of a tabular model's input, in the model's own (raw, unscaled) units.

    Categorical features are encoded as integer codes ``0..len(categories)-1``.
    """

    model_config = _STRICT

    name: str = Field(description="Column name (the CSV/Parquet header).")
    kind: FeatureKind = Field(description="continuous, integer, categorical (integer codes) or binary (0/1).")
    min: float = Field(description="Smallest valid value, in the model's input units.")
    max: float = Field(description="Largest valid value, in the model's input units.")
    categories: list[str] | None = Field(
        None, description="Categorical only: the category of each code 0..len-1.")
    changeable: bool = Field(
        True, description="Whether an attacker (e.g. a fraudster) can change this feature.")
    unit: str | None = Field(None, description="Unit shown in reports (e.g. EUR).")
    description: str | None = Field(None, description="Free text shown in reports.")

    @model_validator(mode="after")
    def _check(self) -> "FeatureSpec":
        if self.max < self.min:
            raise ValueError(f"feature {self.name!r}: max {self.max} < min {self.min}")
        if self.kind == "categorical":
            if not self.categories:
                raise ValueError(f"categorical feature {self.name!r} needs 'categories'")
            if self.min != 0 or self.max != len(self.categories) - 1:
                raise ValueError(
                    f"categorical feature {self.name!r}: range must be 0..{len(self.categories) - 1}"
                )
        if self.kind == "binary" and (self.min, self.max) != (0, 1):
            raise ValueError(f"binary feature {self.name!r}: range must be 0..1")
        return self


class Preprocessing(BaseModel):
    """Per-channel normalisation. ``applied="inside"`` means the model does it itself."""

    model_config = _STRICT

    mean: list[float] = Field(description="Per-channel mean (one value, or one per channel).")
    std: list[float] = Field(description="Per-channel standard deviation, > 0.")
    applied: Literal["inside", "outside"] = Field(
        "inside", description="'inside': the model normalises its inputs itself (bounds are raw pixel "
                              "bounds); 'outside': the data are already normalised.")

    @model_validator(mode="after")
    def _check(self) -> "Preprocessing":
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean ({len(self.mean)} values) and std ({len(self.std)}) need the same, "
                             "non-zero number of values")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be > 0, got {self.std}")
        return self


class TextSpec(BaseModel):
    """Vocabulary of a token-id model. Index in ``vocab`` is the token id."""

    model_config = _STRICT

    vocab: list[str] = Field(description="Token of each id: vocab[i] is the word of token id i.")
    pad_token: str = Field("<pad>", description="Padding token (must be in vocab).")
    unk_token: str = Field("<unk>", description="Out-of-vocabulary token (must be in vocab).")

    @model_validator(mode="after")
    def _check(self) -> "TextSpec":
        for tok in (self.pad_token, self.unk_token):
            if tok not in self.vocab:
                raise ValueError(f"special token {tok!r} is not in the vocabulary")
        return self

    @property
    def pad_id(self) -> int:
        return self.vocab.index(self.pad_token)

    @property
    def unk_id(self) -> int:
        return self.vocab.index(self.unk_token)


class AuditCard(BaseModel):
    """Typed, validated model metadata (DESIGN.md §3). Every field is documented in docs/card.md."""

    model_config = _STRICT

    name: str | None = Field(None, description="Model name shown in reports.")
    task: Task = Field(description="image-classification, text-classification, tabular-classification or gan.")
    input_shape: list[PositiveInt] = Field(
        description="Shape of one sample, without the batch axis: [C, H, W] images, [L] token ids, [F] features.")
    input_dtype: Literal["float32", "int64"] = Field(
        "float32", description="float32 (images, tables) or int64 (token ids).")
    bounds: tuple[float, float] | None = Field(
        None, description="Valid input range [low, high] of every value; attacks stay inside it. "
                          "Images: e.g. [0, 1] or [0, 255]. null for token ids and tables (features carry ranges).")
    preprocessing: Preprocessing | None = Field(
        None, description="Normalisation, for the report: mean/std and whether the model applies it itself.")
    class_names: list[str] = Field(
        default_factory=list, description="Name of each output class, in the order of the model's outputs.")
    positive_class: str | None = Field(
        None, description="The class of interest in an imbalanced task (fraud, disease): PR-AUC is computed for "
                          "it and the tabular attacker tries to escape it. Must be one of class_names.")
    features: list[FeatureSpec] | None = Field(
        None, description="Tabular only: one entry per input column, in the model's input order.")
    text: TextSpec | None = Field(None, description="Text only: the vocabulary and special tokens.")
    dataset: str | None = Field(None, description="Data spec of the reference dataset (used when --data is not given).")
    architecture: str | None = Field(
        None, description="Registered architecture to rebuild weights-only files (zoo models).")
    arch_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the architecture (or of --arch's class).")
    latent_dim: PositiveInt | None = Field(None, description="GAN only: size of the latent vector.")
    epsilons: dict[str, list[AnyFloat]] = Field(
        default_factory=dict,
        description="Attack budgets per threat model: 'linf' and 'l2' (input units, at most the bounds allow), "
                    "'substitutions' (text: words changed). 0 is always added (clean accuracy).")
    output: Output = Field(
        "logits", description="What the model returns: 'logits' [N, C] (or log-probabilities), 'probabilities' "
                              "[N, C] summing to 1, 'binary-logit' or 'binary-probability' (one value per "
                              "sample for class_names[1]). auditkit turns the last three into logits.")
    description: str | None = Field(None, description="Free text shown in reports.")

    @model_validator(mode="after")
    def _check(self) -> "AuditCard":
        problems = cross_field_problems(self)
        if problems:
            raise ValueError("; ".join(f"{field}: {msg}" if field else msg for field, msg in problems))
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def positive_index(self) -> int | None:
        return None if self.positive_class is None else self.class_names.index(self.positive_class)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "card",
                  sources: dict[str, str] | None = None) -> "AuditCard":
        """Validate ``data``; raise :class:`CardError` with ONE line listing every problem.

        Keys starting with ``_`` and ``$schema`` are comments and are dropped. ``sources`` maps
        a field to where its value came from (``"flag"``...), so that the message points there.
        """
        if not isinstance(data, dict):
            raise CardError(f"{source}: a card is a JSON object of fields, not a {type(data).__name__}")
        clean = strip_comments(data)
        try:
            return cls.model_validate(clean)
        except ValidationError:
            problems = card_problems(clean)
        except RecursionError:
            raise CardError(f"{source}: nested too deeply to be a card") from None
        raise CardError(format_problems(problems, source, sources))

    @classmethod
    def read(cls, path: str | Path) -> "AuditCard":
        path = Path(path)
        return cls.from_dict(read_card_json(path), source=str(path))

    def write(self, path: str | Path) -> None:
        from auditkit.files import atomic_write_text

        atomic_write_text(path, self.to_json() + "\n")

    def updated(self, **overrides: Any) -> "AuditCard":
        """A copy with ``overrides`` applied (None values ignored), validated again."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return AuditCard.from_dict(data, source="card with overrides",
                                   sources={k: "flag" for k, v in overrides.items() if v is not None})


# --------------------------------------------------------------------------- flags


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise CardError(f"{what}: {text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise CardError(f"{what}: no numbers given")
    return values


def parse_bounds(text: str) -> tuple[float, float]:
    """``"LO,HI"`` → ``(lo, hi)``; :class:`CardError` naming ``--bounds`` otherwise."""
    values = _floats(text, "--bounds")
    if len(values) != 2:
        raise CardError(f"--bounds {text!r}: give two numbers LO,HI, e.g. --bounds 0,1")
    return values[0], values[1]


def parse_eps(items: list[str]) -> dict[str, list[float]]:
    """``["linf=0.01,0.03", "l2=0.5"]`` (or one item ``"linf=0.01,0.03 l2=0.5"``) → epsilons."""
    out: dict[str, list[float]] = {}
    for item in " ".join(items).split():
        norm, eq, values = item.partition("=")
        norm = norm.strip().lower()
        if not eq or not norm:
            raise CardError(f"--eps {item!r}: write NORM=EPS[,EPS...], e.g. --eps linf=0.01,0.03 l2=0.5")
        if norm in out:
            raise CardError(f"--eps: {norm} is given twice; list its epsilons once, comma-separated")
        out[norm] = _floats(values, f"--eps {norm}")
    if not out:
        raise CardError("--eps: no epsilons given, e.g. --eps linf=0.01,0.03 l2=0.5")
    return out


def parse_preprocessing(text: str) -> dict[str, Any]:
    """``"mean=0.5,0.5,0.5;std=0.25,0.25,0.25[;applied=outside]"`` → a preprocessing dict."""
    out: dict[str, Any] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in ("mean", "std", "applied"):
            raise CardError(f"--preprocessing {text!r}: write 'mean=M1,M2,..;std=S1,S2,..[;applied=inside|outside]'")
        out[key] = value.strip() if key == "applied" else _floats(value, f"--preprocessing {key}")
    if "mean" not in out or "std" not in out:
        raise CardError(f"--preprocessing {text!r}: give both mean=... and std=...")
    return out


def flag_overrides(
    task: str | None = None,
    bounds: str | None = None,
    eps: list[str] | None = None,
    class_names: str | None = None,
    positive_class: str | None = None,
    preprocessing: str | None = None,
) -> dict[str, Any]:
    """Card fields set by ``auditkit scan`` flags (strings as typed) → ``{field: value}``."""
    out: dict[str, Any] = {}
    if task is not None:
        if task not in TASKS:
            raise CardError(f"--task {task!r} is not one of {', '.join(TASKS)}")
        out["task"] = task
    if bounds is not None:
        out["bounds"] = parse_bounds(bounds)
    if eps:
        out["epsilons"] = parse_eps(eps)
    if class_names is not None:
        names = [n.strip() for n in class_names.split(",")]
        if any(not n for n in names):
            raise CardError(f"--class-names {class_names!r}: empty name; write them comma-separated, e.g. cat,dog")
        out["class_names"] = names
    if positive_class is not None:
        out["positive_class"] = positive_class
    if preprocessing is not None:
        out["preprocessing"] = parse_preprocessing(preprocessing)
    check_overrides(out)
    return out


def check_overrides(overrides: dict[str, Any]) -> None:
    """Refuse bad flag values before anything heavy loads: each field on its own (types, finite
    numbers) and the epsilons against the bounds when both are given. :class:`CardError`, one line."""
    problems: list[tuple[str, str]] = []
    for name, value in overrides.items():
        try:
            _field_type(name).validate_python(value)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join([name, *(str(p) for p in err["loc"])])
                problems.append((where, err["msg"].removeprefix("Value error, ")))
    if not problems and "epsilons" in overrides:
        bounds = overrides.get("bounds")
        width = bounds[1] - bounds[0] if bounds and bounds[1] > bounds[0] else None
        problems += _epsilon_problems(overrides["epsilons"], width, None, None, None)
    if problems:
        raise CardError(format_problems(problems, "flags", {n: "flag" for n in overrides}))


# --------------------------------------------------------------------------- validation


def _input_size(shape: Any) -> int | None:
    try:
        return math.prod(int(s) for s in shape)
    except (TypeError, ValueError):
        return None


def cross_field_problems(card: Any) -> list[tuple[str, str]]:
    """Every problem between fields of ``card`` as ``(field, message)`` pairs, all at once.

    ``card`` may be a partly built card (:meth:`AuditCard.model_construct`): a field that is
    missing or did not validate is skipped by the rules that need it.
    """
    get = lambda name: getattr(card, name, None)  # noqa: E731
    bad = getattr(card, "bad_fields", set())  # fields that failed on their own: no "missing" noise
    problems: list[tuple[str, str]] = []
    task, shape, names = get("task"), get("input_shape"), get("class_names")
    size = _input_size(shape) if shape is not None else None
    if size is not None and size > MAX_INPUT_SIZE:
        problems.append(("input_shape", f"{list(shape)} holds {size} values per sample, more than "
                                        f"{MAX_INPUT_SIZE}"))
    if names is not None:
        if task is not None and task != "gan" and len(names) < 2 and "class_names" not in bad:
            problems.append(("class_names", "a classifier's card needs at least two class names"))
        if len(names) > MAX_CLASSES:
            problems.append(("class_names", f"{len(names)} classes is more than {MAX_CLASSES}"))
        dupes = sorted({n for n in names if names.count(n) > 1}) if len(names) <= MAX_CLASSES else []
        if dupes:
            problems.append(("class_names", f"names {dupes[:5]} appear more than once; class names must be unique"))
        positive = get("positive_class")
        if positive is not None and positive not in names:
            problems.append(("positive_class", f"{positive!r} is not one of class_names {names[:10]}"))
    features = get("features")
    if task == "tabular-classification":
        if not features and "features" not in bad:
            problems.append(("features", "a tabular card needs 'features' (the feature schema)"))
        elif features and shape is not None and list(shape) != [len(features)]:
            problems.append(("input_shape", f"{list(shape)} does not match the {len(features)} features"))
    if features:
        fnames = [f.name for f in features if hasattr(f, "name")]
        dupes = sorted({n for n in fnames if fnames.count(n) > 1})
        if dupes:
            problems.append(("features", f"feature names {dupes[:5]} appear more than once"))
    if task == "text-classification":
        if get("text") is None and "text" not in bad:
            problems.append(("text", "a text card needs 'text' (vocabulary and special tokens)"))
        if get("input_dtype") != "int64":
            problems.append(("input_dtype", "a text card's input_dtype must be 'int64' (token ids)"))
        if shape is not None and len(shape) != 1:
            problems.append(("input_shape", f"a text card's input_shape is [L] (token ids), got {list(shape)}"))
    if task == "image-classification" and shape is not None and len(shape) < 2:
        problems.append(("input_shape", f"an image card's input_shape is [C, H, W], got {list(shape)}"))
    if task == "gan" and not get("latent_dim") and "latent_dim" not in bad:
        problems.append(("latent_dim", "a GAN card needs 'latent_dim'"))
    bounds = get("bounds")
    width = None
    if bounds is not None:
        lo, hi = bounds
        if not hi > lo:
            problems.append(("bounds", f"{list(bounds)} is empty: low must be below high"))
        elif not math.isfinite(hi - lo):
            problems.append(("bounds", f"{list(bounds)} is too wide to be a valid input range"))
        else:
            width = hi - lo
    pre = get("preprocessing")
    if pre is not None and task == "image-classification" and shape and len(pre.mean) not in (1, shape[0]):
        problems.append(("preprocessing", f"{len(pre.mean)} mean/std values for {shape[0]} channels; "
                                          f"give 1 or {shape[0]}"))
    output = get("output")
    if output in ("binary-logit", "binary-probability") and names is not None and len(names) != 2:
        problems.append(("output", f"{output!r} needs exactly two class_names, got {len(names)}"))
    problems += _epsilon_problems(get("epsilons") or {}, width, size, task, shape)
    return problems


def _epsilon_problems(epsilons: dict[str, list[float]], width: float | None, size: int | None,
                      task: str | None, shape: Any) -> list[tuple[str, str]]:
    """Epsilons must be finite, >= 0 and no larger than the bounds allow (a budget larger than the
    whole input box attacks nothing meaningful, and 1e308 overflows the attacks' arithmetic)."""
    problems = []
    for norm, values in epsilons.items():
        where = f"epsilons.{norm}"
        if norm not in EPSILON_NORMS:
            problems.append((where, f"unknown threat model {norm!r}; use {', '.join(EPSILON_NORMS)}"))
            continue
        bad = [v for v in values if not (v >= 0 and math.isfinite(v))]
        if bad:
            problems.append((where, f"values must be finite and >= 0, got {bad[:3]}"))
        values = [v for v in values if v >= 0 and math.isfinite(v)]
        if norm == "substitutions":
            if any(v != int(v) for v in values):
                problems.append((where, f"substitutions count words, so they must be whole numbers, got {values}"))
            elif task == "text-classification" and shape and max(values, default=0) > shape[0]:
                problems.append((where, f"{max(values):g} substitutions exceed the {shape[0]} tokens per sample"))
            continue
        if width is None:
            continue
        limit = width if norm == "linf" else width * math.sqrt(size or 1)
        too_big = [v for v in values if v > limit * (1 + 1e-9)]
        if too_big:
            what = ("the bounds' width" if norm == "linf" else "the diameter of the input box, "
                    "(high - low) * sqrt(input size)")
            problems.append((where, f"{too_big[0]:g} is larger than {what} = {limit:g}; "
                                    f"an epsilon must lie in [0, {limit:g}]"))
    return problems


def strip_comments(data: Any) -> Any:
    """``data`` without comment keys (``_...`` and ``$schema``) in the card's objects."""
    if isinstance(data, dict):
        return {k: (v if k == "arch_kwargs" else strip_comments(v)) for k, v in data.items()
                if not (isinstance(k, str) and (k.startswith("_") or k == "$schema"))}
    if isinstance(data, list):
        return [strip_comments(v) for v in data]
    return data


def _field_type(name: str) -> TypeAdapter:
    info = AuditCard.model_fields[name]
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotation, config=_STRICT if _is_plain(annotation) else None)


def _is_plain(annotation: Any) -> bool:
    try:
        return not (isinstance(annotation, type) and issubclass(annotation, BaseModel))
    except TypeError:
        return True


def card_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Every problem of card ``data`` (comments already stripped) as ``(field, message)`` pairs:
    all field errors and all cross-field errors at once (empty when the card is valid)."""
    try:
        AuditCard.model_validate(data)
        return []
    except ValidationError as exc:
        errors = exc.errors()
    problems: list[tuple[str, str]] = []
    bad_fields: set[str] = set()
    for err in errors:
        loc = [str(p) for p in err["loc"]]
        if not loc:
            continue  # the cross-field validator: recomputed below, one problem per rule
        bad_fields.add(loc[0])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field (a typo? comments start with '_')"
        problems.append((".".join(loc), msg))
    values = {}
    for name in AuditCard.model_fields:
        if name in data and name not in bad_fields:
            try:
                values[name] = _field_type(name).validate_python(data[name])
            except ValidationError:
                continue
    problems += cross_field_problems(_Partial(values, bad_fields))
    return problems


class _Partial:
    """Attribute access over the fields of a card that validated on their own (others are None)."""

    def __init__(self, values: dict[str, Any], bad_fields: set[str]):
        defaults = {n: f.get_default(call_default_factory=True) for n, f in AuditCard.model_fields.items()
                    if not f.is_required()}
        self.__dict__.update({**defaults, **values, "bad_fields": bad_fields})

    def __getattr__(self, name: str) -> Any:  # a required field that was missing or bad
        return None


def format_problems(problems: list[tuple[str, str]], source: str,
                    sources: dict[str, str] | None = None) -> str:
    """One line: every problem, then how to fix them (the CLI flags named exist)."""
    sources = sources or {}
    parts, flags = [], []
    for field, msg in problems:
        top = field.split(".")[0]
        origin = " (from a flag)" if sources.get(top) == "flag" else ""
        parts.append(f"field '{field}'{origin}: {msg}" if field else msg)
        if top in FIELD_FLAGS and FIELD_FLAGS[top] not in flags:
            flags.append(FIELD_FLAGS[top])
    n = len(problems)
    head = f"{source}: {n} problem{'s' if n != 1 else ''}: " if n > 1 else f"{source}: "
    fix = "edit the card (`auditkit card check FILE` lists every problem)"
    if flags:
        fix += " or pass " + ", ".join(flags) + " to auditkit scan"
    return head + "; ".join(parts) + f". To fix: {fix}"


def read_card_json(path: Path) -> dict[str, Any]:
    """The JSON object of a card file; :class:`CardError` for unreadable or non-object JSON."""
    from auditkit.files import read_user_text

    text = read_user_text(path, "card file", CardError)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardError(f"card file {path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise CardError(f"card file {path} is nested too deeply to be a card") from None
    if not isinstance(data, dict):
        raise CardError(f"card file {path} holds a JSON {type(data).__name__}, not an object of card fields")
    return data


def check_card_file(path: str | Path) -> list[str]:
    """Every problem of the card file at ``path``, one message each (empty when it is valid).

    Raises :class:`CardError` only when the file cannot be read as a JSON object at all.
    """
    data = strip_comments(read_card_json(Path(path)))
    return [f"{field}: {msg}" if field else msg for field, msg in card_problems(data)]


def card_schema() -> dict[str, Any]:
    """The JSON Schema of a card (generated from :class:`AuditCard`): the published contract."""
    schema = AuditCard.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://auditkit.invalid/schemas/card.json"
    schema["description"] = ("auditkit audit card: what a scan needs to know about a model that its weights "
                             "do not say. Keys starting with '_' are comments. See docs/card.md.")
    # Comment keys are allowed wherever extra keys are not.
    for node in [schema, *schema.get("$defs", {}).values()]:
        if node.get("additionalProperties") is False:
            node["patternProperties"] = {"^(_|\\$schema$)": {}}
    return schema
