"""Safe model loading (DESIGN.md §4).

The zoo format is one ``torch.save`` file holding only tensors and plain data:
``{"format": "auditkit/1", "card": {...}, "state_dict": {...}}``. It loads with
``torch.load(weights_only=True)`` and is rebuilt as an eager module from the registered
architecture named by the card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from auditkit.errors import ModelInputError, ModelLoadError, UnsafeModelError  # noqa: F401  (re-exported)
from auditkit.card import AuditCard, CardError
from auditkit.files import atomic_write_bytes

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


def build_from_card(card: AuditCard, state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Rebuild the registered architecture named by ``card`` and load ``state_dict`` strictly."""
    from auditkit.zoo.models import build_architecture

    if not card.architecture:
        raise CardError(f"{source}: the card names no 'architecture' to rebuild the model from")
    try:
        module = build_architecture(card.architecture, **card.arch_kwargs)
    except KeyError as exc:
        raise ModelLoadError(f"{source}: {exc.args[0]}") from None
    except TypeError as exc:
        raise CardError(f"{source}: card 'arch_kwargs' do not fit {card.architecture}: {exc}") from None
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelLoadError(f"{source}: weights do not fit architecture {card.architecture}: {first}") from None
    return module.eval()


def load_zoo_file(path: str | Path) -> LoadedModel:
    """Load a file in the zoo format with ``weights_only=True``."""
    path = Path(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != ZOO_FORMAT:
        raise ModelLoadError(f"{path} is not an {ZOO_FORMAT} file")
    card = AuditCard.from_dict(payload["card"], source=f"{path} (embedded card)")
    module = build_from_card(card, payload["state_dict"], str(path))
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
    """A ``torch.export`` program as a module: its train/eval behaviour was fixed when it was
    exported, and its graph module refuses ``.train()``/``.eval()``, so here they only set a flag."""

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> "ExportedProgramModule":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_dynamic_batch(module: nn.Module, card: AuditCard, path: Path) -> None:
    """An exported program with a fixed batch size cannot be audited in batches: say so."""
    dtype = torch.int64 if card.input_dtype == "int64" else torch.float32
    try:
        with torch.no_grad():
            module(torch.zeros([3, *card.input_shape], dtype=dtype))
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: the exported program does not accept a batch of 3 samples of shape "
            f"{card.input_shape} ({str(exc).splitlines()[0]}); export it with a dynamic batch axis: "
            "torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim('batch')},))"
        ) from None


def _pickle_globals(data: bytes) -> list[str] | None:
    """Classes a pickle would import, read from its opcodes WITHOUT executing anything.

    Returns None when ``data`` is not a parseable pickle (random bytes, truncation).
    """
    import pickletools

    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name in {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE"}:
                strings.append(str(arg))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:
        return None
    return sorted(set(found))


def _describe_pickle(path: Path, names: list[str]) -> str:
    user = [n for n in names if not n.startswith(("torch.", "collections.", "builtins.", "numpy."))]
    modules = [n for n in names if ".nn.modules." in n]
    what = "a pickled Python object"
    if modules or user:
        what = "a whole pickled nn.Module"
    shown = ", ".join((user or modules or names)[:4])
    return (
        f"{path} is {what} (it imports {shown}); loading it would run code from the file. "
        "Convert it where you trust it: torch.save(model.state_dict(), 'weights.pt') and scan with "
        "--arch package.module:Class, or export it (torch.export / TorchScript); or pass "
        "--trust-pickle if you trust this file"
    )


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
        except json.JSONDecodeError as exc:
            raise CardError(f"{path}: the embedded card is not valid JSON: {exc}") from None
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
    builder = import_arch(arch)
    try:
        module = builder(**(card.arch_kwargs if card is not None else {}))
    except TypeError as exc:
        raise ModelInputError(f"--arch {arch}: cannot build it with the card's arch_kwargs: {exc}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelLoadError(f"{path}: weights do not fit --arch {arch}: {first}") from None
    return module


def load_model(
    path: str | Path,
    card: AuditCard | str | Path | None = None,
    arch: str | None = None,
    trust_pickle: bool = False,
    device: str = "auto",
    require_card: bool = True,
) -> AuditModel:
    """Load any accepted model format safely (DESIGN.md §4).

    With ``require_card=False`` a file with no card (explicit, embedded or sidecar) loads with
    ``card=None``, for the caller to infer one; ``card_source`` says where the card came from.

    Accepted: the zoo's ``model.pt``; TorchScript (card in ``_extra_files['card.json']``);
    ``torch.export`` programs ``.pt2`` (card in ``extra_files['card.json']``); a state_dict
    (``torch.save``) or ``.safetensors`` file plus ``arch``. A pickled whole module raises
    :class:`UnsafeModelError` unless ``trust_pickle``. Never unpickles arbitrary objects otherwise.
    """
    import zipfile

    from auditkit.zoo.trainer import resolve_device

    path = Path(path)
    if not path.exists():
        raise ModelInputError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelInputError(f"{path} is a folder; pass the model file inside it (e.g. {path}/model.pt)")
    dev = resolve_device(device)
    digest = sha256_file(path)
    head = path.read_bytes()[:8]
    notes: list[str] = []
    embedded: str | dict | None = None

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise ModelLoadError(f"{path} is not a readable safetensors file: {exc}") from None
        the_card, source = _read_card(card, None, path, require_card)
        module, fmt = _from_state_dict(state, the_card, arch, path), "safetensors"
    elif head.startswith(b"PK"):
        try:
            names = zipfile.ZipFile(path).namelist()
        except zipfile.BadZipFile:
            raise ModelLoadError(f"{path} is a truncated or corrupt archive; re-save or re-download it") from None
        if any(n.endswith("/archive_format") or n.endswith("/models/model.json") for n in names):
            extra = {"card.json": ""}
            try:
                program = torch.export.load(str(path), extra_files=extra)
            except Exception as exc:
                raise ModelLoadError(f"{path} is a torch.export archive that failed to load: {exc}") from None
            the_card, source = _read_card(card, extra.get("card.json") or None, path, require_card)
            module, fmt = ExportedProgramModule(program.module()), "export"
            if the_card is not None:
                _check_dynamic_batch(module, the_card, path)
            notes.append("torch.export program: layer hooks unavailable; hook-based methods are skipped")
        elif any("/code/" in n or n.endswith("/constants.pkl") for n in names):
            extra = {"card.json": ""}
            try:
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            except Exception as exc:
                raise ModelLoadError(f"{path} is a TorchScript archive that failed to load: {exc}") from None
            the_card, source = _read_card(card, extra.get("card.json") or None, path, require_card)
            fmt = "torchscript"
            notes.append("TorchScript: layer hooks unavailable; hook-based methods are skipped")
        else:
            module, (the_card, source), fmt = _load_torch_save(path, names, card, arch, trust_pickle, require_card)
    else:
        # Not a zip: a legacy torch.save / plain pickle, or not a model file at all.
        globals_ = _pickle_globals(path.read_bytes())
        if globals_ is None:
            raise ModelLoadError(
                f"{path} is not a model file auditkit can read (not a zip archive, pickle or "
                "safetensors file); expected a zoo model.pt, TorchScript, .pt2 or state_dict"
            )
        if not trust_pickle:
            raise UnsafeModelError(_describe_pickle(path, globals_))
        module, (the_card, source), fmt = _load_trusted_pickle(path, card, require_card)
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{path} does not hold a torch module")
    was_training = any(m.training for m in module.modules()) if fmt in ("torchscript", "pickle") else False
    module = module.to(dev).eval()
    return AuditModel(module=module, card=the_card, format=fmt, path=path, sha256=digest, device=dev,  # type: ignore[arg-type]
                      notes=notes, loaded_in_train_mode=was_training, card_source=source)


def _load_torch_save(
    path: Path, names: list[str], card: AuditCard | str | Path | None, arch: str | None, trust_pickle: bool,
    require_card: bool = True,
) -> tuple[nn.Module, CardRef, str]:
    import pickle
    import zipfile

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pkl = [n for n in names if n.endswith("data.pkl")]
        globals_ = _pickle_globals(zipfile.ZipFile(path).read(pkl[0])) if pkl else None
        if globals_ is None:
            raise ModelLoadError(f"{path} is a corrupt torch archive (its data.pkl does not parse)") from None
        if not trust_pickle:
            raise UnsafeModelError(_describe_pickle(path, globals_)) from None
        return _load_trusted_pickle(path, card, require_card)
    except Exception as exc:  # truncated members, bad CRCs, ...
        raise ModelLoadError(f"{path} is a corrupt or truncated torch archive: {exc}") from None
    if isinstance(payload, dict) and payload.get("format") == ZOO_FORMAT:
        ref = _read_card(card, payload.get("card"), path)
        state = payload["state_dict"]
        if arch is not None:
            return _from_state_dict(state, ref[0], arch, path), ref, "zoo"
        return build_from_card(ref[0], state, str(path)), ref, "zoo"  # type: ignore[arg-type]
    if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        ref = _read_card(card, None, path, require_card)
        return _from_state_dict(payload, ref[0], arch, path), ref, "state_dict"
    raise ModelLoadError(
        f"{path} holds plain data but neither an {ZOO_FORMAT} model nor a state_dict of tensors"
    )


def _load_trusted_pickle(path: Path, card: AuditCard | str | Path | None,
                         require_card: bool = True) -> tuple[nn.Module, CardRef, str]:
    # The user passed --trust-pickle: this is the one place that runs a file's pickled code.
    try:
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelLoadError(f"{path}: trusted pickle failed to load: {exc}") from None
    return module, _read_card(card, None, path, require_card), "pickle"
