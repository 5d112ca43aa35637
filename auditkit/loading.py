"""Safe model loading (DESIGN.md §4).

Every file is first checked by :func:`auditkit.safety.open_model_file` (the one place for
safety: no library sees the file before it), then loaded from the open file it returns.

The zoo format is one ``torch.save`` file holding only tensors and plain data:
``{"format": "auditkit/1", "card": {...}, "state_dict": {...}}``. It loads with
``torch.load(weights_only=True)`` and is rebuilt as an eager module from the registered
architecture named by the card: built on the ``meta`` device first, so that absurd
``arch_kwargs`` (negative widths, 10**9 classes) are refused before any memory is allocated.

``torch.export`` programs with a fixed batch size (``torch.export.export(model, (x,))`` without
``dynamic_shapes``) run through :class:`ExportedProgramModule`, which chunks and pads every batch
to the sizes the program accepts.
"""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from auditkit.errors import ModelInputError, ModelLoadError, UnsafeModelError  # noqa: F401  (re-exported)
from auditkit.card import AuditCard, CardError
from auditkit.files import atomic_write_bytes
from auditkit.safety import MAX_MODEL_BYTES, ModelFile, describe_pickle, open_model_file

ZOO_FORMAT = "auditkit/1"



@dataclass
class LoadedModel:
    """An eager (or scripted/exported) module in eval mode, its card and where it came from."""

    module: nn.Module
    card: AuditCard
    format: str
    path: Path
    notes: list[str] = field(default_factory=list)


def save_zoo_file(path: str | Path, module: nn.Module, card: AuditCard, **extra: Any) -> Path:
    """Write ``module`` and ``card`` in the safe zoo format. ``extra`` must be plain data."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    payload = {
        "format": ZOO_FORMAT,
        "card": card.model_dump(mode="json"),
        "state_dict": state,
        **extra,
    }
    atomic_write_bytes(path, lambda tmp: torch.save(payload, tmp))
    return path


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _short(kwargs: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return "{" + (text if len(text) <= 120 else text[:119] + "…") + "}"


def _as_state_dict(obj: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    """``obj`` if it is a non-empty mapping of names to tensors, else a one-line ModelLoadError."""
    fix = "re-save it with torch.save(model.state_dict(), PATH)"
    if not isinstance(obj, dict):
        raise ModelLoadError(f"{path}: {what} is a {type(obj).__name__}, not a mapping of parameter names to "
                             f"tensors; {fix}")
    if not obj:
        raise ModelLoadError(f"{path}: {what} is empty (no weights); {fix}")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"{path}: {what} maps {str(key)[:60]!r} to a {type(value).__name__}, not a "
                                 f"tensor; {fix}")
    return obj


def _check_fit(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str, what: str,
               kwargs: dict[str, Any]) -> None:
    """The file's weights have exactly the names and shapes of the module ``kwargs`` build."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        raise ModelLoadError(f"{source}: weights do not fit {what}: {'; '.join(parts)}")
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise ModelLoadError(
                f"{source}: weights do not fit {what}: {key} is {list(state[key].shape)} in the file but "
                f"{list(ref.shape)} for arch_kwargs {_short(kwargs)}; fix the card's arch_kwargs")


def _build_checked(builder: Callable[..., Any], kwargs: dict[str, Any], state: dict[str, torch.Tensor],
                   source: str, what: str, kwargs_error: type[Exception], meta_optional: bool = False) -> nn.Module:
    """``builder(**kwargs)`` with ``state`` loaded strictly, refused before allocating memory.

    The module is first built on the ``meta`` device (no memory): kwargs it cannot be built with
    raise ``kwargs_error``, and weights whose names or shapes differ raise ModelLoadError, before
    the real module (whose size then equals the file's weights) is built. ``meta_optional``: user
    code (``--arch``) that cannot run on meta is built for real directly.
    """
    meta: Any = None
    try:
        with torch.device("meta"):
            meta = builder(**kwargs)
    except TypeError as exc:
        raise kwargs_error(f"{source}: card 'arch_kwargs' {_short(kwargs)} do not fit {what}: {_first(exc)}") from None
    except Exception as exc:  # noqa: BLE001  (negative widths, absurd values: the builder says why)
        if not meta_optional:
            raise kwargs_error(f"{source}: card 'arch_kwargs' {_short(kwargs)} cannot build {what}: "
                               f"{_first(exc)}") from None
    if meta is not None:
        if not isinstance(meta, nn.Module):
            raise ModelInputError(f"{what} builds a {type(meta).__name__}, not a torch.nn.Module")
        _check_fit(meta.state_dict(), state, source, what, kwargs)
        total = sum(t.numel() * t.element_size() for t in (*meta.parameters(), *meta.buffers()))
        if total > MAX_MODEL_BYTES:
            raise ModelLoadError(f"{source}: {what} with arch_kwargs {_short(kwargs)} would take "
                                 f"{total / 2**30:.1f} GiB, more than auditkit loads")
        del meta
    try:
        module = builder(**kwargs)
    except Exception as exc:  # noqa: BLE001
        raise kwargs_error(f"{source}: card 'arch_kwargs' {_short(kwargs)} cannot build {what}: {_first(exc)}") from None
    if not isinstance(module, nn.Module):
        raise ModelInputError(f"{what} builds a {type(module).__name__}, not a torch.nn.Module")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{source}: weights do not fit {what}: {_first(exc)}") from None
    return module


def build_from_card(card: AuditCard, state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Rebuild the registered architecture named by ``card`` and load ``state_dict`` strictly.

    Raises :class:`CardError` for kwargs the architecture cannot be built with (negative
    widths...) and :class:`ModelLoadError` when the weights do not fit, both before allocating.
    """
    from auditkit.zoo.models import _ARCHITECTURES, build_architecture

    if not card.architecture:
        raise CardError(f"{source}: the card names no 'architecture' to rebuild the model from")
    if card.architecture not in _ARCHITECTURES:
        try:
            build_architecture(card.architecture)
        except KeyError as exc:
            raise ModelLoadError(f"{source}: {exc.args[0]}") from None
    builder = _ARCHITECTURES[card.architecture]
    return _build_checked(builder, dict(card.arch_kwargs), state_dict, source, f"architecture {card.architecture}",
                          CardError).eval()


def load_zoo_file(path: str | Path) -> LoadedModel:
    """Load a file in the zoo format (checked by :mod:`auditkit.safety`, ``weights_only=True``)."""
    path = Path(path)
    with open_model_file(path) as mf:
        payload = _torch_load_weights_only(mf)
    if not isinstance(payload, dict) or payload.get("format") != ZOO_FORMAT:
        raise ModelLoadError(f"{path} is not an {ZOO_FORMAT} file")
    card = AuditCard.from_dict(payload.get("card"), source=f"{path} (embedded card)")  # type: ignore[arg-type]
    module = build_from_card(card, _as_state_dict(payload.get("state_dict"), path, "its 'state_dict'"), str(path))
    return LoadedModel(module=module, card=card, format="zoo", path=path)


# ----------------------------------------------------------------------------- all formats



@dataclass
class AuditModel:
    """A loaded model ready to audit: module in eval mode on ``device``, card, provenance.

    ``eager`` is False for TorchScript and exported programs: layer hooks (Grad-CAM, layer IG)
    do not work on them, and checks that need hooks report themselves skipped.
    """

    module: nn.Module
    card: AuditCard
    format: str
    path: Path
    sha256: str
    device: torch.device
    notes: list[str] = field(default_factory=list)
    loaded_in_train_mode: bool = False  # as the file had it; the module itself is put in eval mode
    card_source: str | None = None  # where the card came from (argument, file, embedded, sidecar, inferred)

    @property
    def eager(self) -> bool:
        return self.format in {"zoo", "state_dict", "safetensors", "pickle"}

    def to_input(self, x: Any) -> torch.Tensor:
        """Array ``[N, *input_shape]`` → tensor of the card's dtype on the model's device."""
        t = torch.as_tensor(x)
        dtype = torch.int64 if self.card.input_dtype == "int64" else torch.float32
        return t.to(device=self.device, dtype=dtype)

    @torch.no_grad()
    def logits(self, x: Any, batch_size: int = 512) -> "np.ndarray":
        """Logits ``[N, C]`` float32 as NumPy, computed in batches (``[N, 1]`` for a discriminator)."""
        import numpy as np

        outs = []
        for start in range(0, len(x), batch_size):
            out = self.module(self.to_input(x[start : start + batch_size]))
            outs.append(out.float().cpu().numpy())
        if not outs:
            return np.zeros((0, max(1, self.card.num_classes)), np.float32)
        return np.concatenate(outs)


class ExportedProgramModule(nn.Module):
    """A ``torch.export`` program as a module that takes a batch of any size.

    Its train/eval behaviour was fixed when it was exported, and its graph module refuses
    ``.train()``/``.eval()``, so here they only set a flag. A program accepts batches of
    ``min_batch`` to ``max_batch`` samples (both ``B`` for one exported with a fixed batch of B;
    ``max_batch`` None: no upper limit): every call is cut into chunks of at most ``max_batch``,
    and a chunk smaller than ``min_batch`` is padded with copies of its last sample, whose outputs
    are dropped. Slicing and concatenation keep autograd working (attacks and attributions).
    Padding copies a real sample so that it stays a valid input (inside the bounds, a valid token
    id); in eval mode, samples do not influence each other's outputs.
    """

    def __init__(self, program: nn.Module, min_batch: int = 1, max_batch: int | None = None):
        super().__init__()
        self.program = program
        self.min_batch = max(1, min_batch)
        self.max_batch = max_batch

    def train(self, mode: bool = True) -> "ExportedProgramModule":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, lo, hi = x.shape[0], self.min_batch, self.max_batch
        if lo <= n and (hi is None or n <= hi):
            return self.program(x)
        step = hi if hi is not None else max(n, lo)
        outs = []
        for start in range(0, max(n, 1), step):
            chunk = x[start : start + step]
            k = chunk.shape[0]
            if k < lo:
                filler = chunk[-1:] if k else torch.zeros((1, *x.shape[1:]), dtype=x.dtype, device=x.device)
                chunk = torch.cat([chunk, filler.expand(lo - k, *x.shape[1:])])
            outs.append(self.program(chunk)[:k])
        return torch.cat(outs)


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


CardRef = tuple["AuditCard | None", "str | None"]  # the card and where it came from


def _read_card(explicit: AuditCard | str | Path | None, embedded: str | bytes | dict | None, path: Path,
               required: bool = True) -> CardRef:
    """Card precedence: explicit argument > embedded in the file > sidecar ``<stem>.card.json``.

    Returns the card and its source (``"argument"``, ``"file PATH"``, ``"embedded in PATH"``,
    ``"sidecar PATH"``), or ``(None, None)`` when there is none and ``required`` is False.
    """
    import json

    if isinstance(explicit, AuditCard):
        return explicit, "argument"
    if explicit is not None:
        return AuditCard.read(explicit), f"file {explicit}"
    if embedded:
        try:
            data = json.loads(embedded) if isinstance(embedded, (str, bytes)) else embedded
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CardError(f"{path}: the embedded card is not valid JSON: {exc}") from None
        except RecursionError:
            raise CardError(f"{path}: the embedded card is nested too deeply") from None
        return AuditCard.from_dict(data, source=f"{path} (embedded card)"), f"embedded in {path}"
    sidecar = path.with_name(path.name.split(".")[0] + ".card.json")
    if sidecar.is_file():
        return AuditCard.read(sidecar), f"sidecar {sidecar}"
    if not required:
        return None, None
    raise CardError(
        f"{path} carries no audit card and there is no {sidecar.name} beside it; pass --card FILE, or "
        "--data SPEC to have the card inferred"
    )


def import_arch(spec: str) -> Any:
    """Resolve ``--arch``: a registered architecture name, or ``package.module:Class``.

    Importing the user's module runs their code: that is the explicit choice ``--arch`` makes.
    """
    import importlib

    from auditkit.zoo.models import _ARCHITECTURES

    if spec in _ARCHITECTURES:
        return _ARCHITECTURES[spec]
    if ":" not in spec:
        raise ModelInputError(
            f"--arch {spec!r} is neither a registered architecture "
            f"({', '.join(sorted(_ARCHITECTURES))}) nor of the form package.module:Class"
        )
    mod_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ModelInputError(f"--arch {spec!r}: cannot import {mod_name!r} ({exc}); is it on PYTHONPATH?") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ModelInputError(f"--arch {spec!r}: module {mod_name!r} has no attribute {attr!r}") from None


def _from_state_dict(
    state: dict[str, torch.Tensor], card: AuditCard | None, arch: str | None, path: Path
) -> nn.Module:
    if arch is None:
        if card is not None and card.architecture:
            return build_from_card(card, state, str(path))
        raise ModelInputError(
            f"{path} holds only weights (a state_dict); pass --arch package.module:Class "
            "(or a registered architecture) to say which module they belong to"
        )
    from auditkit.zoo.models import _ARCHITECTURES

    builder = import_arch(arch)
    kwargs = dict(card.arch_kwargs) if card is not None else {}

    class _ArchError(ModelInputError):
        pass

    try:
        return _build_checked(builder, kwargs, state, str(path), f"--arch {arch}", _ArchError,
                              meta_optional=arch not in _ARCHITECTURES)
    except _ArchError as exc:
        raise ModelInputError(f"--arch {arch}: cannot build it with the card's arch_kwargs: "
                              f"{str(exc).split(': ', 1)[-1]}") from None


def _torch_load_weights_only(mf: ModelFile) -> Any:
    """``torch.load(weights_only=True)`` of a checked torch.save archive (never torch's default)."""
    import pickle

    mf.handle.seek(0)
    try:
        return torch.load(mf.handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeModelError(
            f"{mf.path}: torch's restricted unpickler refuses it ({_first(exc)}); "
            + describe_pickle(mf.path, mf.pickle_globals).split("; ", 1)[-1]
        ) from None
    except Exception as exc:  # noqa: BLE001  (truncated members, bad CRCs, size mismatches...)
        raise ModelLoadError(f"{mf.path} is a corrupt or truncated torch archive: {_first(exc)}") from None


def load_model(
    path: str | Path,
    card: AuditCard | str | Path | None = None,
    arch: str | None = None,
    trust_pickle: bool = False,
    device: str = "auto",
    require_card: bool = True,
) -> AuditModel:
    """Load any accepted model format safely (DESIGN.md §4).

    The file is first checked by :func:`auditkit.safety.open_model_file` (refusals: not a file
    -> :class:`ModelInputError`; broken or hostile -> :class:`ModelLoadError`; would run code ->
    :class:`UnsafeModelError` unless ``trust_pickle``), then loaded from the checked, open file.

    With ``require_card=False`` a file with no card (explicit, embedded or sidecar) loads with
    ``card=None``, for the caller to infer one; ``card_source`` says where the card came from.

    Accepted: the zoo's ``model.pt``; TorchScript (card in ``_extra_files['card.json']``);
    ``torch.export`` programs ``.pt2`` (card in ``extra_files['card.json']``; a fixed batch size is
    handled by :class:`ExportedProgramModule`); a state_dict (``torch.save``) or ``.safetensors``
    file plus ``arch``. A pickled whole module raises :class:`UnsafeModelError` unless
    ``trust_pickle``. Never unpickles arbitrary objects otherwise.
    """
    from auditkit.training import resolve_device

    path = Path(path)
    with open_model_file(path, trust_pickle=trust_pickle) as mf:
        dev = resolve_device(device)
        notes: list[str] = []
        if mf.kind == "safetensors":
            state = _load_safetensors(mf)
            the_card, source = _read_card(card, None, path, require_card)
            module, fmt = _from_state_dict(state, the_card, arch, path), "safetensors"
        elif mf.kind == "export":
            module, (the_card, source) = _load_export(mf, card, require_card)
            fmt = "export"
            notes.append("torch.export program: layer hooks unavailable; hook-based methods are skipped")
        elif mf.kind == "torchscript":
            module, (the_card, source) = _load_torchscript(mf, card, require_card)
            fmt = "torchscript"
            notes.append("TorchScript: layer hooks unavailable; hook-based methods are skipped")
        elif mf.kind == "torch-save" and not mf.unsafe:
            module, (the_card, source), fmt = _load_torch_save(mf, card, arch, trust_pickle, require_card)
        else:  # a pickle the user chose to trust (safety refused it otherwise)
            module, (the_card, source), fmt = _load_trusted_pickle(mf, card, require_card)
        sha256 = mf.sha256
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{path} does not hold a torch module (it holds a {type(module).__name__})")
    was_training = any(m.training for m in module.modules()) if fmt in ("torchscript", "pickle") else False
    module = module.to(dev).eval()
    return AuditModel(module=module, card=the_card, format=fmt, path=path, sha256=sha256, device=dev,  # type: ignore[arg-type]
                      notes=notes, loaded_in_train_mode=was_training, card_source=source)


def _load_safetensors(mf: ModelFile) -> dict[str, torch.Tensor]:
    from safetensors.torch import load as load_safetensors

    mf.handle.seek(0)
    try:
        return load_safetensors(mf.handle.read())
    except Exception as exc:  # noqa: BLE001  (safetensors raises its own error types for bad headers)
        raise ModelLoadError(f"{mf.path} is not a readable safetensors file: {_first(exc)}") from None


def _load_torchscript(mf: ModelFile, card: AuditCard | str | Path | None, require_card: bool) -> tuple[nn.Module, CardRef]:
    extra = {"card.json": ""}
    mf.handle.seek(0)
    try:
        module = torch.jit.load(mf.handle, map_location="cpu", _extra_files=extra)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{mf.path} is a TorchScript archive that failed to load: {_first(exc)}") from None
    return module, _read_card(card, extra.get("card.json") or None, mf.path, require_card)


_EXPORT_LOCK = threading.Lock()


@contextmanager
def _restricted_torch_load() -> Iterator[None]:
    """While ``torch.export.load`` runs, every ``torch.load`` it makes is ``weights_only=True``.

    torch.export.load calls ``torch.load(weights_only=False)`` on some archive members (a
    fallback for sample inputs, pickled weights and constants). auditkit.safety refuses the
    members it knows of; this is the second layer, for any that a torch version adds.
    """
    import torch.serialization as serialization

    original = torch.load

    def restricted(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    with _EXPORT_LOCK:
        torch.load = restricted  # type: ignore[assignment]
        serialization.load = restricted  # type: ignore[assignment]
        try:
            yield
        finally:
            torch.load = original  # type: ignore[assignment]
            serialization.load = original  # type: ignore[assignment]


@contextmanager
def _quiet_torch_export() -> Iterator[None]:
    """torch.export.load logs a warning with a traceback before falling back to an old format."""
    import logging

    logger = logging.getLogger("torch.export")
    previous = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = previous


def _load_export(mf: ModelFile, card: AuditCard | str | Path | None, require_card: bool) -> tuple[nn.Module, CardRef]:
    trusted = bool(mf.unsafe)
    if not trusted:
        # torch.export.load unpickles sample inputs with weights_only=True and, should that fail,
        # again with weights_only=False: make sure the first try succeeds.
        for name, blob in mf.sample_inputs.items():
            try:
                torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001
                raise UnsafeModelError(
                    f"{mf.path}: torch's restricted unpickler refuses {name} ({_first(exc)}); torch.export.load "
                    "would retry it with weights_only=False and run what it holds; re-export the model, or pass "
                    "--trust-pickle if you trust this file") from None
    extra = {"card.json": ""}
    mf.handle.seek(0)
    try:
        with _quiet_torch_export():
            if trusted:
                program = torch.export.load(mf.handle, extra_files=extra)
            else:
                with _restricted_torch_load():
                    program = torch.export.load(mf.handle, extra_files=extra)
            graph_module = program.module()
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{mf.path} is a torch.export archive that failed to load: {_first(exc)}") from None
    the_card, source = _read_card(card, extra.get("card.json") or None, mf.path, require_card)
    lo, hi, in_shape, dtype = _batch_range(program, mf.path)
    module = ExportedProgramModule(graph_module, lo, hi)
    if the_card is not None:
        want = torch.int64 if the_card.input_dtype == "int64" else torch.float32
        if None not in in_shape and list(in_shape) != list(the_card.input_shape):
            raise CardError(f"{mf.path}: the card's input_shape {the_card.input_shape} is not the exported "
                            f"program's {in_shape}; fix the card (or pass the matching model)")
        if dtype != want:
            raise CardError(f"{mf.path}: the card's input_dtype {the_card.input_dtype} is not the exported "
                            f"program's {str(dtype).replace('torch.', '')}; fix the card")
        in_shape = list(the_card.input_shape)
    if None not in in_shape:
        _probe_batches(module, in_shape, dtype, lo, hi, mf.path)
    return module, (the_card, source)


def _batch_range(program: Any, path: Path) -> tuple[int, int | None, list[int | None], torch.dtype]:
    """The batch sizes an exported program accepts, read from its signature (not guessed).

    Returns ``(min, max, sample shape, dtype)``; ``max`` None for no upper limit; a sample
    dimension is None where it is symbolic.
    """
    from torch.export.graph_signature import InputKind

    user = [s for s in program.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    if len(user) != 1:
        raise ModelLoadError(f"{path}: the exported program takes {len(user)} inputs; auditkit feeds one tensor "
                             "[N, *input_shape]: export a module whose forward takes one tensor")
    name = getattr(user[0].arg, "name", None)
    node = next((n for n in program.graph.nodes if n.op == "placeholder" and n.name == name), None)
    val = node.meta.get("val") if node is not None else None
    if not isinstance(val, torch.Tensor) or val.dim() < 1:
        raise ModelLoadError(f"{path}: the exported program's input is not a tensor with a batch axis")

    def concrete(d: Any) -> int | None:
        return d if isinstance(d, int) else None

    sample = [concrete(d) for d in val.shape[1:]]
    dim0 = val.shape[0]
    if isinstance(dim0, int):
        return dim0, dim0, sample, val.dtype
    lo, hi = 1, None
    ranges = program.range_constraints.get(getattr(getattr(dim0, "node", None), "expr", None))
    if ranges is not None:
        try:  # sympy bounds; infinite ones do not convert to int
            lo = max(1, int(ranges.lower))
        except Exception:  # noqa: BLE001
            lo = 1
        try:
            hi = int(ranges.upper)
            hi = None if hi >= 2**31 else max(hi, lo)
        except Exception:  # noqa: BLE001
            hi = None
    return lo, hi, sample, val.dtype


def _probe_batches(module: nn.Module, shape: list[int], dtype: torch.dtype, lo: int, hi: int | None,
                   path: Path) -> None:
    """Run batches of 1 and 3 samples; refuse, with the re-export command, if that cannot work."""
    accepted = f"exactly {lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any number of'}"
    for n in (1, 3):
        try:
            with torch.no_grad():
                out = module(torch.zeros([n, *shape], dtype=dtype))
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(
                f"{path}: the exported program (batches of {accepted} samples of shape {shape}) does not run on "
                f"{n} sample(s) even when padded or chunked to its batch size ({_first(exc)}); re-export it with a "
                "dynamic batch axis: torch.export.export(model, (x,), "
                "dynamic_shapes=({0: torch.export.Dim('batch')},))") from None
        if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != n:
            raise ModelLoadError(f"{path}: the exported program does not return one tensor of per-sample outputs "
                                 f"(got {type(out).__name__}); export a module that returns the logits")


def _load_torch_save(
    mf: ModelFile, card: AuditCard | str | Path | None, arch: str | None, trust_pickle: bool,
    require_card: bool = True,
) -> tuple[nn.Module, CardRef, str]:
    path = mf.path
    try:
        payload = _torch_load_weights_only(mf)
    except UnsafeModelError:
        if not trust_pickle:
            raise
        return _load_trusted_pickle(mf, card, require_card)
    if isinstance(payload, dict) and "format" in payload:
        if payload.get("format") != ZOO_FORMAT:
            raise ModelLoadError(f"{path} is of format {str(payload.get('format'))[:40]!r}; this auditkit reads "
                                 f"{ZOO_FORMAT} files (or a plain state_dict)")
        if "state_dict" not in payload:
            raise ModelLoadError(f"{path} is an {ZOO_FORMAT} file without a 'state_dict'; re-save it with "
                                 "auditkit.loading.save_zoo_file(path, module, card)")
        state = _as_state_dict(payload["state_dict"], path, "its 'state_dict'")
        ref = _read_card(card, payload.get("card"), path, required=require_card or arch is None)
        if arch is not None:
            return _from_state_dict(state, ref[0], arch, path), ref, "zoo"
        return build_from_card(ref[0], state, str(path)), ref, "zoo"  # type: ignore[arg-type]
    if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        state = _as_state_dict(payload, path, "the state_dict")
        ref = _read_card(card, None, path, require_card)
        return _from_state_dict(state, ref[0], arch, path), ref, "state_dict"
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        # A training checkpoint {"state_dict": ..., "epoch": ...}: its weights are the model.
        state = _as_state_dict(payload["state_dict"], path, "its 'state_dict'")
        ref = _read_card(card, None, path, require_card)
        return _from_state_dict(state, ref[0], arch, path), ref, "state_dict"
    what = f"a {type(payload).__name__}" + (f" with keys {', '.join(map(str, list(payload)[:4]))}"
                                            if isinstance(payload, dict) else "")
    raise ModelLoadError(
        f"{path} holds plain data ({what}) but neither an {ZOO_FORMAT} model nor a state_dict of tensors"
    )


def _load_trusted_pickle(mf: ModelFile, card: AuditCard | str | Path | None,
                         require_card: bool = True) -> tuple[nn.Module, CardRef, str]:
    # The user passed --trust-pickle: this is the one place that runs a file's pickled code.
    mf.handle.seek(0)
    try:
        module = torch.load(mf.handle, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{mf.path}: trusted pickle failed to load: {_first(exc)}") from None
    return module, _read_card(card, None, mf.path, require_card), "pickle"
