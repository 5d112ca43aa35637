"""The Python API on objects: a model and data held in memory rather than in files.

``auditkit.scan(module, data=(x, y))`` takes what a notebook has at hand:

- ``(x, y)``, or ``(x_train, y_train, x_test, y_test)``: NumPy arrays or torch tensors, with the
  rules of :func:`auditkit.data.data_from_arrays` (the same as an ``npz:`` file of those arrays,
  so the result equals the CLI's on that file);
- a ``torch.utils.data.Dataset`` or ``DataLoader`` yielding ``(x, y)`` pairs (each sample
  ``x`` of one shape, ``y`` an integer label);
- ``(DataFrame, "target")``: a pandas table and the name of its label column (the rules of
  ``csv:`` files);
- an :class:`~auditkit.data.AuditData`, used as it is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from auditkit.card import AuditCard
from auditkit.data.base import AuditData
from auditkit.errors import DataError
from auditkit.loading import AuditModel

MAX_SAMPLES = 10_000_000  # samples drawn from a Dataset or DataLoader


def _array(value: Any, what: str) -> np.ndarray:
    """A NumPy array from a NumPy array, torch tensor or list (a copy for tensors)."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover  (torch is a dependency)
        pass
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:
        raise DataError(f"{what}: cannot turn a {type(value).__name__} into an array ({exc})") from None


def _from_batches(items: Any, what: str, batched: bool) -> tuple[np.ndarray, np.ndarray]:
    """``x`` ``[N, ...]`` and ``y`` ``[N]`` from ``(x, y)`` pairs: batches (concatenated) when
    ``batched``, else single samples (stacked)."""
    xs, ys, n = [], [], 0
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{what} must yield (x, y) pairs, got a {type(item).__name__}")
        x, y = _array(item[0], what), _array(item[1], what)
        if batched and (x.ndim == 0 or y.ndim != 1 or len(x) != len(y)):
            raise DataError(f"{what} yields batches x {list(x.shape)} and y {list(y.shape)}; "
                            "y must be [B] labels for a batch x [B, ...]")
        xs.append(x)
        ys.append(y)
        n += len(x) if batched else 1
        if n > MAX_SAMPLES:
            raise DataError(f"{what} yields more than {MAX_SAMPLES} samples; pass a subset")
    if not xs:
        raise DataError(f"{what} is empty")
    if len({x.shape[1:] if batched else x.shape for x in xs}) > 1:
        raise DataError(f"{what} yields samples of different shapes; pad or resize them to one shape")
    if batched:
        return np.concatenate(xs), np.concatenate(ys)
    if any(y.size != 1 for y in ys):
        raise DataError(f"{what} yields labels of shape {list(ys[0].shape)}; each label must be one integer")
    return np.stack(xs), np.stack([y.reshape(()) for y in ys])


def data_from_objects(data: Any, card: AuditCard | None = None, test_fraction: float = 0.25,
                      seed: int = 0) -> AuditData:
    """:class:`AuditData` from in-memory objects (forms in this module's docstring).

    Raises :class:`DataError` for an unsupported object, with the forms that are.
    """
    from auditkit.data.readers import check_data, data_from_arrays, tabular_from_frame

    if isinstance(data, AuditData):
        return data
    try:
        from torch.utils.data import DataLoader, Dataset
    except ImportError:  # pragma: no cover
        DataLoader = Dataset = ()  # type: ignore[assignment,misc]
    if isinstance(data, DataLoader):
        # Batches unless the loader was built with batch_size=None (then it yields samples).
        x, y = _from_batches(data, "the DataLoader", batched=data.batch_sampler is not None)
        arrays, what = {"x": x, "y": y}, "DataLoader"
    elif isinstance(data, Dataset):
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise DataError("the Dataset has no len(); pass a DataLoader or arrays (x, y)") from None
        if n > MAX_SAMPLES:
            raise DataError(f"the Dataset holds {n} samples, more than {MAX_SAMPLES}; pass a subset")
        x, y = _from_batches((data[i] for i in range(n)), "the Dataset", batched=False)
        arrays, what = {"x": x, "y": y}, "Dataset"
    elif isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], str) and _is_frame(data[0]):
        frame, target = data
        out = tabular_from_frame(frame, target, card, what="DataFrame", name="dataframe",
                                 test_fraction=test_fraction, seed=seed)
        out.meta["spec"] = f"<DataFrame target={target}>"
        return check_data(out)
    elif isinstance(data, (tuple, list)) and len(data) in (2, 4):
        keys = ["x", "y"] if len(data) == 2 else ["x_train", "y_train", "x_test", "y_test"]
        arrays = {k: _array(v, f"data[{i}]") for i, (k, v) in enumerate(zip(keys, data))}
        what = "arrays"
    else:
        raise DataError(
            f"cannot read data from a {type(data).__name__}; pass a data spec string, (x, y) or "
            "(x_train, y_train, x_test, y_test) arrays or tensors, a Dataset or DataLoader of (x, y), "
            "or (DataFrame, 'target_column')")
    out = data_from_arrays(arrays, card, what=what, name=what.lower(), test_fraction=test_fraction, seed=seed)
    out.meta["spec"] = f"<{what} {'x'.join(str(s) for s in arrays[next(iter(arrays))].shape)}>"
    return check_data(out)


def _is_frame(value: Any) -> bool:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, pd.DataFrame)


@dataclass
class ModuleModel(AuditModel):
    """An :class:`~auditkit.loading.AuditModel` around a module object: eager (layer hooks
    work) unless it is TorchScript."""

    @property
    def eager(self) -> bool:  # type: ignore[override]
        return self.format == "module" or super().eager


def model_from_module(module: Any, device: str = "auto") -> ModuleModel:
    """An :class:`~auditkit.loading.AuditModel` (card unset) around a module in memory.

    Eager modules keep layer hooks (Grad-CAM, layer IG); a ``torch.jit.ScriptModule`` is
    treated as TorchScript. The module is moved to ``device`` and put in eval mode (the
    caller's object itself, as ``model.eval()`` would).
    """
    import torch

    from auditkit.training import resolve_device

    if not isinstance(module, torch.nn.Module):
        raise DataError(f"expected an nn.Module, got a {type(module).__name__}")
    scripted = isinstance(module, torch.jit.ScriptModule)
    was_training = any(m.training for m in module.modules())
    dev = resolve_device(device)
    module = module.to(dev).eval()
    return ModuleModel(module=module, card=None, format="torchscript" if scripted else "module",  # type: ignore[arg-type]
                       path=Path(f"<{type(module).__name__}>"), sha256=state_sha256(module), device=dev,
                       notes=["module passed as a Python object"], loaded_in_train_mode=was_training,
                       card_source=None)


def state_sha256(module: Any) -> str:
    """Content hash of an ``nn.Module``'s parameters and buffers (names, dtypes, shapes, values)."""
    import torch

    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(key.encode() + str(t.dtype).encode() + str(list(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()
