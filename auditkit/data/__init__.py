"""Datasets: the built-in ones (no download) and readers for the user's files.

A *data spec* names a dataset in one string, as on the command line:

- a built-in, with optional query arguments: ``digits``, ``fraud``, ``fraud?rows=20000&seed=3``,
  ``reviews?n=2000`` (see :func:`list_datasets`);
- a file or folder, ``KIND:PATH[?k=v&...]``: ``mnist:ROOT``, ``fashion-mnist:ROOT``,
  ``cifar10:ROOT``, ``csv:PATH?target=COL``, ``parquet:PATH?target=COL``,
  ``text-csv:PATH?text=COL&label=COL[&maxlen=32][&vocab=FILE][&pad=TOKEN&unk=TOKEN]``,
  ``npz:PATH`` (arrays ``x``, ``y``, or ``x_train``, ``y_train``, ``x_test``, ``y_test``).
  Tables, text and npz files also take ``test_fraction`` (default 0.25) and ``seed`` (default
  0). PATH may not contain "?". Whole numbers may be written ``1e5``; each argument has a
  range (:data:`ARG_LIMITS`), so that a typo cannot ask for terabytes.

Built-in loads are cached in-process on the normalised spec (each call returns a copy, so
callers may modify it) and are deterministic for a given seed.
"""

from __future__ import annotations

import copy
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl

from auditkit.card import AuditCard
from auditkit.data.base import AuditData, DataError
from auditkit.data.digits import load_digits
from auditkit.data.fraud import load_fraud
from auditkit.data.readers import (
    as_text_data,
    check_data,
    check_fits_card,
    data_from_arrays,
    read_npz,
    read_tabular,
    read_text_csv,
    read_torchvision,
    tabular_from_frame,
)
from auditkit.data.reviews import load_reviews

__all__ = [
    "ARG_LIMITS",
    "AuditData",
    "DataError",
    "FILE_KINDS",
    "as_text_data",
    "check_fits_card",
    "data_from_arrays",
    "tabular_from_frame",
    "describe_dataset",
    "list_datasets",
    "load_data",
    "parse_spec",
]


@dataclass(frozen=True)
class _Builtin:
    loader: Callable[..., AuditData]
    description: str


_BUILTINS: dict[str, _Builtin] = {
    "digits": _Builtin(load_digits, "sklearn's 8x8 handwritten digits, 10 classes, [N,1,8,8]"),
    "fraud": _Builtin(load_fraud, "simulated card transactions, 1.5% fraud, 11 features with "
                                  "known causes"),
    "reviews": _Builtin(load_reviews, "generated review sentences, binary sentiment, negation "
                                      "and contrast, token-level ground truth"),
}

# File kinds and the query arguments each accepts, with their types.
_SPLIT_ARGS: dict[str, type] = {"test_fraction": float, "seed": int}
FILE_KINDS: dict[str, dict[str, type]] = {
    "mnist": {},
    "fashion-mnist": {},
    "cifar10": {},
    "csv": {"target": str, **_SPLIT_ARGS},
    "parquet": {"target": str, **_SPLIT_ARGS},
    "text-csv": {"text": str, "label": str, "maxlen": int, "vocab": str, "pad": str, "unk": str, **_SPLIT_ARGS},
    "npz": dict(_SPLIT_ARGS),
}


def list_datasets() -> list[str]:
    """Names of the built-in datasets (file kinds are the keys of ``FILE_KINDS``)."""
    return sorted(_BUILTINS)


def describe_dataset(name: str) -> str:
    """One line about a built-in dataset."""
    if name not in _BUILTINS:
        raise DataError(f"unknown dataset {name!r}; built-ins are {', '.join(list_datasets())}")
    return _BUILTINS[name].description


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """Split a data spec into ``(name_or_kind, path_or_None, query_args)``; values unchecked."""
    spec = spec.strip()
    if not spec:
        raise DataError(
            "empty data spec; give a built-in name (digits, fraud, reviews) or KIND:PATH"
        )
    head, _, query = spec.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise DataError(
            f"data spec {spec!r}: bad query {query!r}; write it as ?key=value&key=value"
        ) from None
    args: dict[str, str] = {}
    for key, value in pairs:
        if key in args:
            raise DataError(f"data spec {spec!r}: {key!r} is given twice; keep one")
        args[key] = value
    kind, colon, path = head.partition(":")
    if not colon:
        return head.lower(), None, args
    if not path:
        raise DataError(f"data spec {spec!r}: no path after '{kind}:'; write {kind}:PATH")
    return kind.lower(), path, args


# Inclusive ranges of numeric arguments, checked before anything is allocated.
ARG_LIMITS: dict[str, tuple[float, float]] = {
    "rows": (400, 2_000_000),  # fraud: 2M rows x 11 features is about 200 MB while simulated
    "n": (40, 1_000_000),  # reviews sentences
    "maxlen": (1, 4096),  # tokens per text
    "seed": (0, 2**32 - 1),  # NumPy seeds are unsigned 32-bit here
    "test_fraction": (1e-6, 1 - 1e-6),
}


def _parse_int(value: str) -> int:
    """``"12"`` or ``"1e5"`` (a whole number in float notation) as int; ValueError otherwise."""
    try:
        return int(value)
    except ValueError:
        f = float(value)  # raises ValueError for non-numbers
        if not f.is_integer():
            raise ValueError(value) from None
        return int(f)


def _convert(args: dict[str, str], types: dict[str, type], what: str) -> dict[str, Any]:
    """Convert query strings to the declared types and check their ranges (:data:`ARG_LIMITS`);
    unknown keys are an error (typos)."""
    unknown = sorted(set(args) - set(types))
    if unknown:
        allowed = ", ".join(sorted(types)) or "none"
        raise DataError(f"{what}: unknown argument(s) {unknown}; allowed: {allowed}")
    out: dict[str, Any] = {}
    for key, value in args.items():
        kind = types[key]
        try:
            out[key] = _parse_int(value) if kind is int else kind(value)
        except (ValueError, OverflowError):
            expected = {"int": "whole number", "float": "number"}.get(kind.__name__, kind.__name__)
            raise DataError(f"{what}: {key}={value!r} is not a valid {expected}") from None
        if key in ARG_LIMITS and kind in (int, float):
            lo, hi = ARG_LIMITS[key]
            if not lo <= out[key] <= hi:
                show = (lambda v: str(int(v)) if kind is int else f"{v:g}")  # noqa: E731
                size = "too small" if out[key] < lo else "too large" if out[key] > hi else "out of range"
                raise DataError(f"{what}: {key}={value} is {size}; use a value from {show(lo)} to {show(hi)}")
    return out


@functools.lru_cache(maxsize=16)
def _load_builtin_cached(name: str, args: tuple[tuple[str, Any], ...]) -> AuditData:
    return check_data(_BUILTINS[name].loader(**dict(args)))


def _load_builtin(name: str, raw_args: dict[str, str]) -> AuditData:
    loader = _BUILTINS[name].loader
    signature = inspect.signature(loader)
    types = {k: type(p.default) for k, p in signature.parameters.items()}
    bound = signature.bind(**_convert(raw_args, types, name))
    bound.apply_defaults()  # "fraud" and "fraud?rows=60000" share one cache entry
    key = tuple(sorted(bound.arguments.items()))
    data = copy.deepcopy(_load_builtin_cached(name, key))
    data.meta["spec"] = name + "?" + "&".join(f"{k}={v}" for k, v in key)
    return data


def load_data(spec: str, card: AuditCard | None = None) -> AuditData:
    """Load the dataset named by ``spec`` (grammar in this module's docstring).

    ``card`` matters to file readers only: tables read the card's feature schema, text uses its
    vocabulary and length, and string labels map to its ``class_names``. Raises
    :class:`DataError` with a one-line message for unknown names or kinds, missing files or
    columns, NaN values, empty data and labels that are not classes ``0..K-1``.
    """
    name, path, raw_args = parse_spec(spec)
    if path is None:
        if name not in _BUILTINS:
            hint = ""
            if "/" in name or "." in name or Path(name).exists():
                hint = f"; for a file, prefix its kind, e.g. csv:{name}?target=COL"
            raise DataError(
                f"unknown dataset {name!r}; built-ins are {', '.join(list_datasets())}, files are "
                f"KIND:PATH with KIND one of {', '.join(FILE_KINDS)}{hint}"
            )
        return _load_builtin(name, raw_args)
    if name not in FILE_KINDS:
        raise DataError(f"unknown data kind {name!r} in {spec!r}; use one of "
                        f"{', '.join(FILE_KINDS)} (or a built-in: {', '.join(list_datasets())})")
    args = _convert(raw_args, FILE_KINDS[name], name)
    if name in ("mnist", "fashion-mnist", "cifar10"):
        data = read_torchvision(name, path, card)
    elif name in ("csv", "parquet"):
        data = read_tabular(path, kind=name, card=card, **args)
    elif name == "text-csv":
        data = read_text_csv(path, card=card, **args)
    else:
        data = read_npz(path, card=card, **args)
    data.meta["spec"] = spec.strip()
    return check_data(data)
