"""Inspect a model file before any library reads it (DESIGN.md §4): the one place for safety.

:func:`open_model_file` is the only way auditkit opens a model file. :func:`auditkit.loading.load_model`
(hence the CLI, the Python API and the dashboard) calls it first and hands the libraries
(``torch.load``, ``torch.jit.load``, ``torch.export.load``, ``safetensors``) the already-open,
already-checked file object, never the path again, so the file that was checked is the file that
is loaded (a path swapped for another in between is not read). This module imports no torch:
a refusal costs milliseconds and no memory.

Three kinds of refusal, each one line that says what and how to fix it:

* :class:`~auditkit.errors.ModelInputError` (exit 2): the path is not a file (missing, folder,
  FIFO, socket, device such as ``/dev/zero``, symlink loop, unreadable). Such a path is never
  opened for reading: ``os.stat`` first, then ``O_NONBLOCK`` and ``fstat`` on what was opened.
* :class:`~auditkit.errors.ModelLoadError` (exit 3): the file is broken or hostile in its structure
  (empty, over :data:`MAX_MODEL_BYTES`, corrupt or bomb-like archive, bad safetensors header).
  ``--trust-pickle`` never overrides these.
* :class:`~auditkit.errors.UnsafeModelError` (exit 3): loading the file could run code from it.
  Refused unless ``trust_pickle`` (``--trust-pickle``: the user trusts this file).

Rules per format:

* **every file**: a regular file, 1 byte to :data:`MAX_MODEL_BYTES`; the format is decided by
  content (zip / safetensors / pickle), never by the suffix alone.
* **zip archives** (torch.save, TorchScript, ``.pt2``), from the central directory and local
  headers only, before anything is decompressed: end record exactly at the end of the file (no
  comment, no prepended data), at most :data:`MAX_MEMBERS` members and :data:`MAX_CENTRAL_DIRECTORY`
  bytes of directory, one top-level folder, no ``..``/absolute/backslash/control-character names,
  no duplicates, no encryption, stored or deflated only, members that do not overlap (the
  "overlapping files" bomb), no deflated member expanding more than :data:`MAX_EXPANSION` times
  (deflate cannot exceed ~1032x; a legitimate torch archive is stored), total declared size under
  :data:`MAX_MODEL_BYTES`. Then every member is read once through ``zipfile``, which never
  yields more than the declared size, and its CRC-32 is checked (torch does not check the CRC
  of tensor storages: a flipped weight would load silently). The libraries' own readers
  (miniz) allocate a member's declared size, which is bounded above.
* **torch.save archive** (zoo ``model.pt``, a state_dict): ``data.pkl`` may import only tensor
  rebuilders, storages and plain containers (:data:`TENSOR_GLOBALS`); anything else (a pickled
  ``nn.Module``, a checkpoint with arbitrary objects) is unsafe. The loader then uses
  ``torch.load(weights_only=True)`` explicitly, so torch's restricted unpickler does the load.
* **TorchScript**: every pickle (``data.pkl``, ``constants.pkl``, ``*.debug_pkl``, ...) may
  import only TorchScript classes, tensors and the JIT's own list builders (it is read by the
  JIT's C++ unpickler, never Python's); the archive's TorchScript code must not call the ops
  that touch files (``torch.save``, ``torch.from_file``): a scripted ``forward`` can write any
  file the user can.
* **torch.export ``.pt2``**: only the members of the current archive layout
  (:data:`PT2_LAYOUT`); compiled AOTInductor code, pickled weights/constants (``use_pickle``),
  custom/opaque objects and legacy weight files are unsafe (``torch.export.load`` unpickles them
  with ``weights_only=False`` or ``pickle.loads``); each ``sample_inputs`` member is itself a
  checked torch.save archive of tensors (torch tries ``weights_only=True`` first and falls back
  to ``weights_only=False``; the loader checks that the first try succeeds); the program's JSON
  is checked where torch.export turns strings into code: every graph node calls a tensor
  operator (``torch.ops.aten...``, not ``torch.os.system`` or ``torch.save``), symbolic
  expressions (given to ``sympy.sympify``, i.e. ``eval``) and guard code (given to ``exec``)
  use only arithmetic, comparisons, sizes and sympy functions, string constants cannot break out
  of the code torch generates, and parameter names are plain dotted names.
* **safetensors**: a header length under :data:`MAX_SAFETENSORS_HEADER` and inside the file
  (nothing is allocated from it before that), header JSON an object without duplicate keys,
  known dtypes, shapes of non-negative integers, offsets inside the file that match each
  tensor's size, do not overlap and cover the data exactly (nothing appended).
* **anything else**: a legacy (non-zip) ``torch.save``/pickle file is unsafe, described (what
  it would import) and with the way to convert it; other bytes are not a model file.

Why this way for pickles. Scanning a pickle's opcodes with :mod:`pickletools` is bypassable:
``STACK_GLOBAL`` takes its module and name from the stack, which a pickle can fill from its memo
(``BINGET``) or by other opcodes. Instead each pickle is *executed* by Python's own pure-Python
unpickler (``pickle._Unpickler``, whose memo is a dict: no index bomb) with ``find_class``
overridden to record the name and return an inert stub, and ``persistent_load`` returning a stub:
every global the real unpickler would import is seen exactly as the real one would resolve it,
and nothing is imported or called. This inspector is the first layer, and it needs no torch.
The second layer is that no library is ever asked to unpickle with arbitrary globals unless
``trust_pickle``: torch.save archives load with ``weights_only=True`` (never torch's default);
TorchScript pickles are read by the JIT's C++ unpickler, which only knows TorchScript types;
``.pt2`` members that torch would unpickle with ``weights_only=False`` are refused outright
rather than vetted (a restricted re-reading that accepts them could still differ from the
unrestricted one that runs them), and the loader disables ``weights_only=False`` for the
duration of ``torch.export.load``. A change of a file between the check and the load needs write
access to that very file (the open descriptor is reused); that is out of scope.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import pickle
import re
import stat
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

from auditkit.errors import ModelInputError, ModelLoadError, UnsafeModelError

MAX_MODEL_BYTES = 16 * 2**30  # a model file, and the declared uncompressed size of an archive
MAX_MEMBERS = 100_000  # archive members (torch writes one per tensor storage)
MAX_CENTRAL_DIRECTORY = 64 * 2**20  # bytes of zip central directory
MAX_EXPANSION = 200  # declared size / compressed size of a deflated member over BOMB_FLOOR
BOMB_FLOOR = 2**20  # deflated members below this size are not checked for their ratio
MAX_PICKLE_BYTES = 256 * 2**20  # a pickle member read into memory to be inspected
MAX_JSON_BYTES = 256 * 2**20  # a JSON member (.pt2 program, configs) read into memory
MAX_SAFETENSORS_HEADER = 100 * 2**20  # the safetensors library's own limit
MAX_EXPRESSION = 10_000  # characters of a symbolic expression or guard in a .pt2 program

KINDS = ("torch-save", "torchscript", "export", "safetensors", "pickle")

# Globals a pickle of tensors and plain containers imports (torch.save of a state_dict, a zoo
# file, .pt2 sample inputs). Python 2 names (protocol < 3) are mapped first, as pickle does.
TENSOR_GLOBALS = frozenset({
    "collections.OrderedDict", "builtins.set", "builtins.frozenset", "builtins.slice",
    "builtins.complex", "builtins.bytearray", "_codecs.encode",
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_qtensor", "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_meta_tensor_no_storage", "torch._utils._rebuild_nested_tensor",
    "torch._utils._rebuild_device_tensor_from_numpy", "torch._utils._rebuild_wrapper_subclass",
    "torch.serialization._get_layout", "torch.device", "torch.Size",
    "torch.strided", "torch.sparse_coo", "torch.sparse_csr", "torch.sparse_csc", "torch.sparse_bsr",
    "torch.sparse_bsc", "torch._mkldnn", "torch.per_tensor_affine", "torch.per_channel_affine",
    "torch.per_tensor_symmetric", "torch.per_channel_symmetric", "torch.per_channel_affine_float_qparams",
})
_STORAGE = re.compile(r"^torch\.(\w+Storage|UntypedStorage)$")
_DTYPE = re.compile(r"^torch\.(u?int\d+|float\d*(_\w+)?|bfloat16|half|double|long|short|int|bool|"
                    r"complex\d+|cfloat|cdouble|chalf|q(u)?int\d+(x\d+)?|bits\w+)$")
# TorchScript pickles are read by the JIT's C++ unpickler: TorchScript classes, tensors and the
# JIT's own list builders.
_TORCHSCRIPT_GLOBAL = re.compile(r"^(__torch__(\.[A-Za-z_][A-Za-z0-9_]*)+|torch\.jit\._pickle\.\w+|"
                                 r"torch\.classes(\.\w+)+)$")

# The members of a torch.export archive (relative to its top-level folder) and what they hold.
PT2_LAYOUT = {
    "archive_format": r"archive_format",
    "archive_version": r"archive_version",
    "byteorder": r"byteorder",
    "data-meta": r"\.data/[A-Za-z0-9_.-]+",
    "model": r"models/([A-Za-z0-9_.-]+)\.json",
    "weights": r"data/weights/([A-Za-z0-9_.-]+)",
    "constants": r"data/constants/([A-Za-z0-9_.-]+)",
    "sample-inputs": r"data/sample_inputs/([A-Za-z0-9_.-]+)\.pt",
    "extra": r"extra/([^/]+)",
    "aotinductor": r"data/aotinductor/.+",
}
_PT2_LAYOUT = {kind: re.compile(f"^{rx}$") for kind, rx in PT2_LAYOUT.items()}

# Operators a .pt2 graph node may call. torch.export.load resolves a node's target string by
# walking attributes from torch, math or _operator and accepts ANY callable it finds
# ("torch.os.system" included), so only tensor operators and pure arithmetic pass.
_OP_NAMESPACES = frozenset({"aten", "prims", "quantized", "quantized_decomposed", "_quantized", "higher_order"})
_DENIED_OPS = frozenset({"save", "from_file", "load_tensor"})  # file I/O
_HIGHER_ORDER_OPS = frozenset({
    "cond", "while_loop", "while_loop_stack_output", "map_impl", "scan", "associative_scan", "wrap",
    "wrap_with_set_grad_enabled", "wrap_with_autocast", "auto_functionalized", "auto_functionalized_v2",
    "with_effects", "invoke_subgraph", "flex_attention", "out_dtype", "hints_wrapper",
    "tag_activation_checkpoint", "wrap_activation_checkpoint", "_export_tracepoint", "run_const_graph",
})
_OPERATOR_FUNCS = frozenset({
    "getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs", "eq", "ne",
    "lt", "le", "gt", "ge", "and_", "or_", "xor", "not_", "invert", "lshift", "rshift", "matmul", "truth",
})
_OP_TARGET = re.compile(r"^torch\.ops\.(\w+)\.(\w+)(\.\w+)?$")
_TORCH_TARGET = re.compile(r"^torch\.(sym_\w+|_sym_sqrt|_assert|_assert_async|_check|_check_is_size|"
                           r"_C\._set_grad_enabled|_functorch\.predispatch\.\w+)$")
_FQN = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# sympy names a symbolic expression may call: what torch prints (srepr) plus the functions of
# torch.utils._sympy.functions that the deserializer passes to sympify.
_SYMPY_CALLS = frozenset({
    "Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "Eq", "Ne",
    "Lt", "Le", "Gt", "Ge", "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan", "Equality",
    "Unequality", "And", "Or", "Not", "floor", "ceiling", "Piecewise", "ITE", "sqrt", "ExprCondPair",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal",
    "ToFloat", "Identity", "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or", "OpaqueUnaryFn_sqrt",
})
_SYMPY_CONSTANTS = frozenset({"oo", "zoo", "nan", "pi", "E", "true", "false", "True", "False", "int_oo", "S"})
_SYMBOL_NAME = re.compile(r"^[a-z]{1,4}\d+$")  # torch's shape symbols: s0, u3, zuf0, ...
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?(/\d+)?$")
# Guard code (exec'd by ep.module()): sizes of the inputs, arithmetic, comparisons.
_GUARD_NAMES = frozenset({"L", "math", "inf", "Max", "Min", "FloorDiv", "Mod", "PythonMod", "CeilDiv",
                          "IsNonOverlappingAndDenseIndicator", "cast_symbool_to_symint_guardless"})
_GUARD_ATTRS = frozenset({"size", "stride", "storage_offset", "dim", "numel", "floor", "ceil", "trunc",
                          "isnan", "isinf", "sqrt", "inf", "nan", "pi"})
_CODE_BREAKERS = re.compile(r"[\"\\#;\n\r\x00-\x1f]|__")
_PLAIN_STRING = re.compile(r"^[^'\"\\\n\r\x00-\x1f]*$")  # a .pt2 string constant: no way out of a literal

_NAME_FIX = None  # lazily: pickle's Python 2 -> 3 name mapping


@dataclass
class ModelFile:
    """A checked model file, open for the loader.

    ``handle`` is the open file (position 0) the loader must read: never re-open ``path``.
    ``kind`` is one of :data:`KINDS`; ``pickle_globals`` what its main pickle imports
    (torch.save archives and legacy pickles); ``unsafe`` why loading it would run code, set only
    when ``trust_pickle`` let it through; ``sample_inputs`` the ``.pt2`` sample-input archives
    (member name -> bytes) that the loader re-checks with torch's restricted unpickler.
    """

    path: Path
    kind: str
    size: int
    sha256: str
    handle: IO[bytes]
    pickle_globals: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)
    sample_inputs: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> "ModelFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_model_file(path: str | Path, trust_pickle: bool = False) -> ModelFile:
    """Check the model file at ``path`` and return it open for loading (see the module docstring).

    Raises :class:`ModelInputError` (not a file), :class:`ModelLoadError` (broken or hostile
    structure) or :class:`UnsafeModelError` (would run code; not raised with ``trust_pickle``,
    which records the reasons in :attr:`ModelFile.unsafe` instead).
    """
    path = Path(path)
    handle, size = _open_regular(path)
    try:
        model_file = _inspect(path, handle, size, trust_pickle)
        model_file.sha256 = _sha256(handle)
        handle.seek(0)
        return model_file
    except BaseException:
        handle.close()
        raise


# ----------------------------------------------------------------------------- the path


def _open_regular(path: Path) -> tuple[IO[bytes], int]:
    """Open ``path`` for reading if and only if it is a non-empty regular file under the limit."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ModelInputError(f"model file {path} is a broken symbolic link") from None
        raise ModelInputError(f"model file {path} does not exist") from None
    except OSError as exc:
        raise ModelInputError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    _check_stat(path, st)
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening does not wait.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ModelInputError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    try:
        st2 = os.fstat(fd)
        _check_stat(path, st2)
        if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
            raise ModelInputError(f"model file {path} was replaced while being opened; try again")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st2.st_size
    except BaseException:
        os.close(fd)
        raise


def _check_stat(path: Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ModelInputError(f"{path} is a folder; pass the model file inside it (e.g. {path}/model.pt)")
    if not stat.S_ISREG(st.st_mode):
        what = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise ModelInputError(f"model path {path} is {what}, not a model file; pass a regular file")
    if st.st_size == 0:
        raise ModelLoadError(f"model file {path} is empty (0 bytes); re-save or re-download it")
    if st.st_size > MAX_MODEL_BYTES:
        raise ModelLoadError(f"model file {path} is {st.st_size / 2**30:.1f} GiB, more than the "
                             f"{MAX_MODEL_BYTES // 2**30} GiB auditkit loads")


def _sha256(handle: IO[bytes]) -> str:
    handle.seek(0)
    h = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- dispatch


def _inspect(path: Path, handle: IO[bytes], size: int, trust_pickle: bool) -> ModelFile:
    handle.seek(0)
    head = handle.read(16)
    mf = ModelFile(path=path, kind="", size=size, sha256="", handle=handle)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        _inspect_zip(mf, trust_pickle)
    elif path.suffix.lower() == ".safetensors" or _looks_like_safetensors(head, size):
        _inspect_safetensors(mf)
    else:
        _inspect_legacy(mf, trust_pickle)
    return mf


def _unsafe(mf: ModelFile, message: str, trust_pickle: bool) -> None:
    """Refuse a file that would run code, or record why when the user trusts it."""
    if not trust_pickle:
        raise UnsafeModelError(message)
    mf.unsafe.append(message)


# ----------------------------------------------------------------------------- pickles


class _Stub:
    """What the inspecting unpickler builds instead of any imported object: accepts every call."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> "_Stub":
        return _Stub()

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, value: object) -> None:
        pass

    def extend(self, values: object) -> None:
        pass

    def add(self, value: object) -> None:
        pass


_BaseUnpickler: type = getattr(pickle, "_Unpickler", pickle.Unpickler)


class _Inspector(_BaseUnpickler):  # type: ignore[misc, valid-type]
    """Runs a pickle's opcodes for real, but imports and calls nothing (module docstring)."""

    def __init__(self, data: IO[bytes]):
        super().__init__(data)
        self.found: list[str] = []

    def find_class(self, module: str, name: str) -> type:  # noqa: D102
        self.found.append(_fix_name(str(module), str(name)))
        return _Stub

    def persistent_load(self, pid: object) -> _Stub:  # noqa: D102
        return _Stub()


def _fix_name(module: str, name: str) -> str:
    global _NAME_FIX
    if _NAME_FIX is None:
        import _compat_pickle

        _NAME_FIX = (_compat_pickle.NAME_MAPPING, _compat_pickle.IMPORT_MAPPING)
    names, modules = _NAME_FIX
    if (module, name) in names:
        module, name = names[(module, name)]
    elif module in modules:
        module = modules[module]
    return f"{module}.{name}"


def pickle_globals(data: bytes | IO[bytes], count: int = 1) -> tuple[list[str], str | None]:
    """Every global the first ``count`` pickles in ``data`` would import, found without importing.

    Returns ``(names, error)``: ``error`` is None when the pickles parsed to their STOP opcode,
    else a short reason (truncated, not a pickle); ``names`` then holds what was seen before it.
    """
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    inspector = _Inspector(stream)
    error = None
    for _ in range(count):
        try:
            inspector.load()
        except Exception as exc:  # noqa: BLE001  (any malformed pickle: report, never raise)
            error = f"{type(exc).__name__}: {str(exc)[:120]}" if str(exc) else type(exc).__name__
            break
        except RecursionError:
            error = "too deeply nested"
            break
    return sorted(set(inspector.found)), error


def _is_tensor_global(name: str) -> bool:
    return name in TENSOR_GLOBALS or bool(_STORAGE.match(name) or _DTYPE.match(name))


def _is_torchscript_global(name: str) -> bool:
    return _is_tensor_global(name) or bool(_TORCHSCRIPT_GLOBAL.match(name))


def describe_pickle(path: Path, names: list[str], what_file: str = "") -> str:
    """One line: what a pickled file is, that loading it runs code, and how to convert it."""
    user = [n for n in names if not _is_tensor_global(n)
            and not n.startswith(("torch.", "collections.", "builtins.", "numpy.", "_codecs."))]
    modules = [n for n in names if ".nn.modules." in n]
    what = "a pickled Python object"
    if modules or user:
        what = "a whole pickled nn.Module" if modules or any(n[:1].isupper() or "." in n for n in user) else what
    unsafe = [n for n in names if not _is_tensor_global(n)]
    shown = ", ".join((user or modules or unsafe or names)[:4]) or "nothing"
    return (
        f"{path} is {what_file or what} (it imports {shown}); loading it would run code from the file. "
        "Convert it where you trust it: torch.save(model.state_dict(), 'weights.pt') and scan with "
        "--arch package.module:Class, or export it (torch.export / TorchScript); or pass "
        "--trust-pickle if you trust this file"
    )


# ----------------------------------------------------------------------------- zip archives


@dataclass
class _Archive:
    """A checked zip archive: its ``zipfile`` view, members by name, and the top-level folder."""

    zf: zipfile.ZipFile
    members: dict[str, zipfile.ZipInfo]  # full name -> info
    prefix: str  # "name/" (torch archives keep everything under one folder)
    label: str  # how messages name it

    def rel(self) -> dict[str, zipfile.ZipInfo]:
        """Members by name relative to the top-level folder."""
        return {n[len(self.prefix):]: i for n, i in self.members.items()}

    def read(self, info: zipfile.ZipInfo, limit: int, what: str) -> bytes:
        """A member's bytes, at most ``limit`` (zipfile stops at the declared size, checks CRC)."""
        if info.file_size > limit:
            raise ModelLoadError(f"{self.label}: member {info.filename} ({what}) is "
                                 f"{info.file_size / 2**20:.0f} MiB, more than the {limit // 2**20} MiB "
                                 "auditkit reads to check it")
        try:
            with self.zf.open(info) as member:
                data = member.read(limit + 1)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
                NotImplementedError, RuntimeError) as exc:
            raise ModelLoadError(f"{self.label}: member {info.filename} is corrupt ({_first_line(exc)}); "
                                 "re-save or re-download the file") from None
        except Exception as exc:  # zlib.error and friends
            raise ModelLoadError(f"{self.label}: member {info.filename} is corrupt ({type(exc).__name__}: "
                                 f"{_first_line(exc)}); re-save or re-download the file") from None
        if len(data) != info.file_size:
            raise ModelLoadError(f"{self.label}: member {info.filename} holds {len(data)} bytes where its "
                                 f"header says {info.file_size}; the archive is corrupt")
        return data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _open_archive(f: IO[bytes], size: int, label: str) -> _Archive:
    """Check a zip archive's structure from its directory and headers (module docstring)."""
    corrupt = f"{label} is a truncated or corrupt archive"
    if size < 22:
        raise ModelLoadError(f"{corrupt} (too short to be a zip file); re-save or re-download it")
    f.seek(size - 22)
    eocd = f.read(22)
    if eocd[:4] != b"PK\x05\x06":
        raise ModelLoadError(f"{corrupt} (its end record is missing: truncated, or trailing data or a "
                             "comment after it); re-save or re-download it")
    _, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, _comment = struct.unpack("<4s4H2LH", eocd)
    end_of_cd = size - 22
    if size >= 42:
        f.seek(size - 42)
        locator = f.read(20)
        if locator[:4] == b"PK\x06\x07":
            _, _, z64_offset, _ = struct.unpack("<4sLQL", locator)
            if z64_offset > size - 42 - 56:
                raise ModelLoadError(f"{corrupt} (its zip64 end record points outside the file)")
            f.seek(z64_offset)
            z64 = f.read(56)
            if z64[:4] != b"PK\x06\x06":
                raise ModelLoadError(f"{corrupt} (its zip64 end record is missing)")
            (_, _, _, _, disk, cd_disk, n_disk, n_total, cd_size, cd_offset) = struct.unpack("<4sQ2H2L4Q", z64)
            end_of_cd = z64_offset
    if disk or cd_disk or n_disk != n_total:
        raise ModelLoadError(f"{label} is a multi-part (spanned) zip archive; auditkit reads single files only")
    if n_total > MAX_MEMBERS or cd_size > MAX_CENTRAL_DIRECTORY:
        raise ModelLoadError(f"{label} declares {n_total} members in a {cd_size / 2**20:.1f} MiB directory, "
                             f"more than the {MAX_MEMBERS} members / {MAX_CENTRAL_DIRECTORY // 2**20} MiB "
                             "auditkit accepts")
    if cd_offset + cd_size != end_of_cd:
        raise ModelLoadError(f"{corrupt} (its directory is not where its end record says: truncated, or "
                             "data prepended or hidden inside); re-save or re-download it")
    f.seek(0)
    try:
        zf = zipfile.ZipFile(f)
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error,
            UnicodeDecodeError, NotImplementedError) as exc:
        raise ModelLoadError(f"{corrupt} ({_first_line(exc)}); re-save or re-download it") from None
    if len(infos) != n_total:
        raise ModelLoadError(f"{corrupt} (its directory lists {len(infos)} members, its end record {n_total})")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        _check_member_name(name, label)
        if name in members:
            raise ModelLoadError(f"{label} holds two members named {name!r}; loaders would disagree on "
                                 "which one is read, so it is refused")
        members[name] = info
        if info.flag_bits & 0x1:
            raise ModelLoadError(f"{label}: member {name} is encrypted; torch archives never are")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelLoadError(f"{label}: member {name} uses compression method {info.compress_type}; "
                                 "torch archives are stored or deflated only")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise ModelLoadError(f"{corrupt} (stored member {name} declares {info.file_size} bytes but "
                                 f"occupies {info.compress_size})")
        if (info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > BOMB_FLOOR
                and info.file_size > MAX_EXPANSION * max(1, info.compress_size)):
            raise ModelLoadError(
                f"{label}: member {name} would expand from {info.compress_size} bytes to "
                f"{info.file_size / 2**20:.0f} MiB ({info.file_size // max(1, info.compress_size)}x): a "
                f"decompression bomb; refused before decompressing anything")
        total += info.file_size
    if total > MAX_MODEL_BYTES:
        raise ModelLoadError(f"{label} declares {total / 2**30:.1f} GiB of uncompressed members, more than "
                             f"the {MAX_MODEL_BYTES // 2**30} GiB auditkit loads")
    _check_member_ranges(f, infos, cd_offset, label, corrupt)
    tops = {n.split("/", 1)[0] for n in members}
    if len(tops) != 1 or not all("/" in n for n in members):
        raise ModelLoadError(f"{label} is a zip archive but not a torch file: torch keeps every member "
                             f"under one folder, this one has {', '.join(sorted(tops)[:4]) or 'no members'} "
                             "at the top")
    return _Archive(zf=zf, members=members, prefix=tops.pop() + "/", label=label)


def _check_member_name(name: str, label: str) -> None:
    parts = name.split("/")
    bad = (not name or name.startswith("/") or "\\" in name or ".." in parts or re.search(r"[\x00-\x1f\x7f]", name)
           or re.match(r"^[A-Za-z]:", name))
    if bad:
        raise ModelLoadError(f"{label} holds a member with an unsafe name {name!r} (absolute, '..', "
                             "backslash or control characters); refused")


def _check_member_ranges(f: IO[bytes], infos: list[zipfile.ZipInfo], cd_offset: int, label: str,
                         corrupt: str) -> None:
    """Each member's local header matches the directory and members do not overlap."""
    end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < end:
            raise ModelLoadError(f"{label}: member {info.filename} overlaps another member (a zip bomb "
                                 "shape: one compressed stream counted many times); refused")
        f.seek(info.header_offset)
        header = f.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise ModelLoadError(f"{corrupt} (member {info.filename} has no local header where the "
                                 "directory says); re-save or re-download it")
        name_len, extra_len = struct.unpack("<2H", header[26:30])
        raw_name = f.read(name_len)
        encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
        if raw_name.decode(encoding, errors="replace") != info.orig_filename:
            raise ModelLoadError(f"{label}: member {info.filename} has another name in its local header "
                                 f"({raw_name[:60]!r}); loaders would disagree, so it is refused")
        end = info.header_offset + 30 + name_len + extra_len + info.compress_size
        if end > cd_offset:
            raise ModelLoadError(f"{corrupt} (member {info.filename} runs past the end of the data; "
                                 "truncated?); re-save or re-download it")


def _verify_members(archive: _Archive) -> None:
    """Read every member once (zipfile stops at its declared size) and check its CRC-32.

    torch does not check the CRC of tensor storages: without this, a flipped weight loads silently.
    """
    for info in sorted(archive.members.values(), key=lambda i: i.header_offset):
        try:
            with archive.zf.open(info) as member:
                while member.read(1 << 20):
                    pass
        except Exception as exc:  # noqa: BLE001  (BadZipFile for a bad CRC, zlib.error, EOFError...)
            raise ModelLoadError(f"{archive.label}: member {info.filename} is corrupt ({_first_line(exc)}); "
                                 "re-save or re-download the file") from None


def _inspect_zip(mf: ModelFile, trust_pickle: bool) -> None:
    archive = _open_archive(mf.handle, mf.size, str(mf.path))
    _verify_members(archive)
    rel = archive.rel()
    if "archive_format" in rel or any(n.startswith("models/") for n in rel):
        mf.kind = "export"
        _inspect_pt2(mf, archive, rel, trust_pickle)
    elif "constants.pkl" in rel or any(n.startswith("code/") for n in rel):
        mf.kind = "torchscript"
        _inspect_torchscript(mf, archive, rel, trust_pickle)
    elif "data.pkl" in rel:
        mf.kind = "torch-save"
        _inspect_torch_save(mf, archive, rel, trust_pickle)
    else:
        raise ModelLoadError(f"{mf.path} is a zip archive but not a torch file (no data.pkl, TorchScript code "
                             "or torch.export program); expected a zoo model.pt, TorchScript, .pt2 or state_dict")


def _check_tensor_pickle(archive: _Archive, info: zipfile.ZipInfo) -> tuple[list[str], str | None]:
    """Globals of a torch.save ``data.pkl`` and, if any is not a tensor global, why it is unsafe."""
    data = archive.read(info, MAX_PICKLE_BYTES, "a pickle")
    names, error = pickle_globals(data)
    if error is not None:
        raise ModelLoadError(f"{archive.label}: its pickle {info.filename} does not parse ({error}); "
                             "the file is corrupt or was tampered with")
    return names, None


def _inspect_torch_save(mf: ModelFile, archive: _Archive, rel: dict[str, zipfile.ZipInfo],
                        trust_pickle: bool) -> None:
    names, _ = _check_tensor_pickle(archive, rel["data.pkl"])
    mf.pickle_globals = names
    if any(not _is_tensor_global(n) for n in names):
        _unsafe(mf, describe_pickle(mf.path, names), trust_pickle)


def _inspect_torchscript(mf: ModelFile, archive: _Archive, rel: dict[str, zipfile.ZipInfo],
                         trust_pickle: bool) -> None:
    for name, info in rel.items():
        if name.endswith((".pkl", "debug_pkl")):
            data = archive.read(info, MAX_PICKLE_BYTES, "a pickle")
            found, error = pickle_globals(data)
            if error is not None:
                raise ModelLoadError(f"{mf.path}: its TorchScript pickle {name} does not parse ({error}); "
                                     "the archive is corrupt or was tampered with")
            foreign = [n for n in found if not _is_torchscript_global(n)]
            if foreign:
                _unsafe(mf, f"{mf.path}: its TorchScript pickle {name} imports {', '.join(foreign[:4])}, which "
                        "TorchScript never writes: the archive was tampered with to run code; pass "
                        "--trust-pickle only if you trust this file", trust_pickle)
        elif name.startswith("code/") and name.endswith(".py"):
            source = archive.read(info, MAX_JSON_BYTES, "TorchScript code").decode("utf-8", errors="replace")
            calls = _file_io_calls(source)
            if calls:
                _unsafe(mf, f"{mf.path}: its TorchScript code ({name}) calls {', '.join(sorted(calls))}, which "
                        "reads or writes files on this machine; refused (pass --trust-pickle only if you "
                        "trust this file)", trust_pickle)


def _file_io_calls(source: str) -> set[str]:
    """Names of the file I/O ops (torch.save, torch.from_file...) a TorchScript source refers to."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {w for w in _DENIED_OPS if re.search(rf"\b{w}\b", source)}
    found = set()
    for node in ast.walk(tree):
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if name in _DENIED_OPS:
            found.add(f"torch.{name}")
    return found


# ----------------------------------------------------------------------------- torch.export


def _inspect_pt2(mf: ModelFile, archive: _Archive, rel: dict[str, zipfile.ZipInfo], trust_pickle: bool) -> None:
    label = str(mf.path)
    kinds: dict[str, list[tuple[str, str]]] = {k: [] for k in PT2_LAYOUT}
    for name in rel:
        kind = next((k for k, rx in _PT2_LAYOUT.items() if rx.match(name)), None)
        if kind is None:
            raise ModelLoadError(f"{label}: member {name} is not part of a torch.export archive; re-export the "
                                 "model with torch.export.save")
        match = _PT2_LAYOUT[kind].match(name)
        kinds[kind].append((name, match.group(1) if match and match.groups() else name))
    fmt = archive.read(rel["archive_format"], 64, "the format tag") if "archive_format" in rel else b""
    if fmt.strip() != b"pt2" or "archive_version" not in rel:
        raise ModelLoadError(f"{label} is not a torch.export archive of the current layout (archive_format "
                             f"{fmt[:20]!r}); re-export the model with torch.export.save")
    if kinds["aotinductor"]:
        _unsafe(mf, f"{label} holds AOTInductor compiled code ({kinds['aotinductor'][0][0]}), which "
                "torch.export.load would load and run as native code; export without AOTInductor, or pass "
                "--trust-pickle if you trust this file", trust_pickle)
    models = [m for _, m in kinds["model"]]
    if not models:
        raise ModelLoadError(f"{label} holds no exported program (models/*.json); re-export the model")
    weights = {m for _, m in kinds["weights"]}
    constants = {m for _, m in kinds["constants"]}
    for model in models:
        program = _read_json(archive, rel[f"models/{model}.json"], label)
        _check_program(program, f"{label}: program {model}", mf, trust_pickle)
        for kind, folder, names in (("weights", "data/weights", weights), ("constants", "data/constants", constants)):
            if f"{model}.pt" in names:
                _unsafe(mf, f"{label}: {folder}/{model}.pt is a legacy pickled {kind} file, which "
                        "torch.export.load unpickles; re-export with a current torch.export.save, or pass "
                        "--trust-pickle if you trust this file", trust_pickle)
                continue
            config_name = f"{folder}/{model}_{kind}_config.json"
            if config_name not in rel:
                raise ModelLoadError(f"{label}: {config_name} is missing; re-export the model")
            config = _read_json(archive, rel[config_name], label)
            _check_payload_config(config, kind, folder, rel, mf, trust_pickle)
        sample = f"data/sample_inputs/{model}.pt"
        if sample in rel:
            data = archive.read(rel[sample], MAX_PICKLE_BYTES, "sample inputs")
            _check_sample_inputs(data, f"{label}: {sample}", mf, trust_pickle)
            mf.sample_inputs[sample] = data
        else:
            raise ModelLoadError(f"{label}: {sample} is missing; re-export the model")
    mf.notes.append(f".pt2 archive with {len(models)} program(s)")


def _read_json(archive: _Archive, info: zipfile.ZipInfo, label: str) -> Any:
    data = archive.read(info, MAX_JSON_BYTES, "JSON")
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{label}: {info.filename} is not valid JSON ({_first_line(exc)})") from None
    except RecursionError:
        raise ModelLoadError(f"{label}: {info.filename} is nested too deeply to be a torch.export file") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _check_sample_inputs(data: bytes, label: str, mf: ModelFile, trust_pickle: bool) -> None:
    """A sample-inputs member is a torch.save archive of tensors; anything else is unsafe."""
    if not data.startswith(b"PK"):
        _unsafe(mf, f"{label} is a raw pickle, not a torch.save archive of tensors; torch.export.load would "
                "unpickle it with weights_only=False; re-export the model, or pass --trust-pickle if you trust "
                "this file", trust_pickle)
        return
    nested = _open_archive(io.BytesIO(data), len(data), label)
    _verify_members(nested)
    rel = nested.rel()
    if "data.pkl" not in rel:
        raise ModelLoadError(f"{label} is not a torch.save archive (no data.pkl); re-export the model")
    names, _ = _check_tensor_pickle(nested, rel["data.pkl"])
    foreign = [n for n in names if not _is_tensor_global(n)]
    if foreign:
        _unsafe(mf, f"{label} is a pickle that imports {', '.join(foreign[:4])}; torch.export.load would "
                "unpickle it with weights_only=False and run it; re-export the model, or pass --trust-pickle "
                "if you trust this file", trust_pickle)


def _check_payload_config(config: Any, kind: str, folder: str, rel: dict[str, zipfile.ZipInfo], mf: ModelFile,
                          trust_pickle: bool) -> None:
    """Weights/constants config: every entry a raw tensor record of a sane size, none pickled."""
    label = f"{mf.path}: {folder}"
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise ModelLoadError(f"{label}: its {kind} config is not a mapping of names to payloads; re-export the model")
    for fqn, meta in entries.items():
        if not isinstance(fqn, str) or not _FQN.match(fqn) or "__" in fqn:
            raise ModelLoadError(f"{label}: {kind} name {str(fqn)[:80]!r} is not a plain dotted name; refused")
        if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
            raise ModelLoadError(f"{label}: {kind} {fqn} has no payload file; re-export the model")
        path_name = meta["path_name"]
        if "/" in path_name or path_name.startswith(".") or f"{folder}/{path_name}" not in rel:
            raise ModelLoadError(f"{label}: {kind} {fqn} points to {path_name[:80]!r}, which is not a member of "
                                 f"{folder}/; refused")
        if kind == "constants" and not path_name.startswith("tensor_"):
            what = "a custom (torchbind) object" if path_name.startswith("custom_obj_") else "an opaque Python object"
            _unsafe(mf, f"{label}/{path_name}: constant {fqn} is {what}, which torch.export.load unpickles; "
                    "export the model with tensor constants only, or pass --trust-pickle if you trust this file",
                    trust_pickle)
            continue
        if meta.get("use_pickle"):
            _unsafe(mf, f"{label}/{path_name}: {kind[:-1]} {fqn} is stored as a pickle, which torch.export.load "
                    "unpickles with weights_only=False (it would run code); re-export with plain tensors, or pass "
                    "--trust-pickle if you trust this file", trust_pickle)
            continue
        tensor_meta = meta.get("tensor_meta")
        sizes = tensor_meta.get("sizes") if isinstance(tensor_meta, dict) else None
        if not isinstance(sizes, list) or not all(isinstance(s, dict) and isinstance(s.get("as_int"), int)
                                                  and s["as_int"] >= 0 for s in sizes):
            raise ModelLoadError(f"{label}: {kind[:-1]} {fqn} has no concrete non-negative sizes; re-export the model")
        numel = 1
        for s in sizes:
            numel *= s["as_int"]
        record = rel[f"{folder}/{path_name}"].file_size
        # An empty record makes torch allocate zeros of the declared sizes: they must be empty too.
        if (record == 0 and numel) or numel > MAX_MODEL_BYTES:
            raise ModelLoadError(f"{label}: {kind[:-1]} {fqn} declares {numel} elements for a {record}-byte "
                                 "record; refused")


def _check_program(program: Any, label: str, mf: ModelFile, trust_pickle: bool) -> None:
    """The strings of a serialized ExportedProgram that torch.export turns into code."""
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        raise ModelLoadError(f"{label} is not a serialized ExportedProgram; re-export the model")
    problems: list[str] = []
    guards = program.get("guards_code") or []
    if not isinstance(guards, list):
        problems.append("guards_code is not a list")
    else:
        for guard in guards:
            reason = _guard_problem(guard)
            if reason:
                problems.append(f"guard {str(guard)[:60]!r} {reason}")
    ranges = program.get("range_constraints") or {}
    for key in ranges if isinstance(ranges, dict) else []:
        reason = _sym_expr_problem(key)
        if reason:
            problems.append(f"range constraint {str(key)[:60]!r} {reason}")
    for path, key, value in _walk(program["graph_module"]):
        if key == "target" and isinstance(value, str):
            reason = _target_problem(value)
            if reason:
                problems.append(f"node target {value[:80]!r} {reason}")
        elif key == "expr_str":
            reason = _sym_expr_problem(value)
            if reason:
                problems.append(f"symbolic expression {str(value)[:60]!r} {reason}")
        elif key in ("as_string", "as_strings"):
            for s in value if isinstance(value, list) else [value]:
                if not isinstance(s, str) or not _PLAIN_STRING.match(s):
                    problems.append(f"string constant {str(s)[:60]!r} holds quotes, backslashes or control "
                                    "characters (torch pastes it into generated code)")
        elif key in ("parameter_name", "buffer_name", "tensor_constant_name", "custom_obj_name"):
            if not isinstance(value, str) or not _FQN.match(value) or "__" in value:
                problems.append(f"{key} {str(value)[:60]!r} is not a plain dotted name")
        if len(problems) >= 3:
            break
    if problems:
        _unsafe(mf, f"{label} would run code while loading or running: {'; '.join(problems[:3])}; "
                "re-export the model with torch.export, or pass --trust-pickle if you trust this file", trust_pickle)


def _walk(obj: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every (path, key, value) of a JSON document, iteratively (no recursion limit)."""
    stack: list[tuple[str, Any]] = [(path, obj)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield where, key, value
                if isinstance(value, (dict, list)):
                    stack.append((f"{where}.{key}", value))
        elif isinstance(item, list):
            stack.extend((where, v) for v in item if isinstance(v, (dict, list)))


def _target_problem(target: str) -> str | None:
    """Why a graph node's target is not a tensor operator or pure arithmetic (None if it is)."""
    m = _OP_TARGET.match(target)
    if m:
        namespace, op = m.group(1), m.group(2)
        if namespace not in _OP_NAMESPACES:
            return f"is an operator of namespace {namespace!r}, not a tensor operator auditkit knows"
        if op in _DENIED_OPS:
            return "reads or writes files"
        if namespace == "higher_order" and op not in _HIGHER_ORDER_OPS:
            return "is a higher-order operator that can run code outside the graph"
        return None
    if target.startswith("_operator.") and target[len("_operator."):] in _OPERATOR_FUNCS:
        return None
    if target.startswith("math.") and _SAFE_NAME.match(target[5:]) and not target[5:].startswith("_"):
        return None
    if _TORCH_TARGET.match(target):
        return None
    return "is not a tensor operator (torch.export.load would call it as found)"


def _sym_expr_problem(expr: Any) -> str | None:
    """Why a symbolic expression is not plain sympy arithmetic (torch passes it to sympify = eval)."""
    if not isinstance(expr, str) or len(expr) > MAX_EXPRESSION:
        return "is not a short string"
    if _CODE_BREAKERS.search(expr):
        return "holds characters or names that are not arithmetic"
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "does not parse as an expression"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _SYMPY_CALLS:
                return "calls something other than a sympy function"
            for i, arg in enumerate(node.args):
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    ok = (node.func.id == "Symbol" and i == 0 and _SYMBOL_NAME.match(arg.value)) or (
                        node.func.id in ("Integer", "Float", "Rational") and _NUMBER.match(arg.value))
                    if not ok:
                        return "passes a string to a function that may evaluate it"
            for kw in node.keywords:
                if kw.arg is None or not isinstance(kw.value, ast.Constant) or isinstance(kw.value.value, str):
                    return "passes keyword arguments that are not constants"
        elif isinstance(node, ast.Name):
            if node.id not in _SYMPY_CALLS and node.id not in _SYMPY_CONSTANTS and not _SYMBOL_NAME.match(node.id):
                return f"names {node.id!r}, which is not a shape symbol"
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not (_SYMBOL_NAME.match(node.value) or _NUMBER.match(node.value)):
                return "holds a string constant"
        elif not isinstance(node, _ARITHMETIC_NODES):
            return f"uses Python syntax {type(node).__name__}, which is not arithmetic"
    return None


_ARITHMETIC_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.keyword, ast.Load,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Not,
    ast.Invert, ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr, ast.BitXor, ast.And, ast.Or,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.IfExp,
)


def _guard_problem(guard: Any) -> str | None:
    """Why a guard is not a comparison of input sizes (torch.export pastes it into exec'd code)."""
    if not isinstance(guard, str) or len(guard) > MAX_EXPRESSION:
        return "is not a short string"
    if _CODE_BREAKERS.search(guard):
        return "holds characters or names that are not arithmetic"
    try:
        tree = ast.parse(guard, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "does not parse as an expression"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            ok = (isinstance(func, ast.Attribute) and func.attr in _GUARD_ATTRS) or (
                isinstance(func, ast.Name) and func.id in _GUARD_NAMES and func.id not in ("L", "math"))
            if not ok or node.keywords:
                return "calls something other than a size or an arithmetic function"
        elif isinstance(node, ast.Attribute):
            if node.attr not in _GUARD_ATTRS:
                return f"reads attribute {node.attr!r}"
        elif isinstance(node, ast.Name):
            if node.id not in _GUARD_NAMES:
                return f"names {node.id!r}"
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not _SAFE_NAME.match(node.value):
                return "holds a string constant that is not a plain name"
        elif not isinstance(node, (*_ARITHMETIC_NODES, ast.Subscript, ast.Slice)):
            return f"uses Python syntax {type(node).__name__}"
    return None


# ----------------------------------------------------------------------------- safetensors

SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    n = struct.unpack("<Q", head[:8])[0]
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _inspect_safetensors(mf: ModelFile) -> None:
    label, f, size = mf.path, mf.handle, mf.size
    mf.kind = "safetensors"
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        raise ModelLoadError(f"{label} is not a safetensors file (shorter than its 8-byte header length)")
    n = struct.unpack("<Q", head)[0]
    if n > MAX_SAFETENSORS_HEADER or n > size - 8 or n < 2:
        raise ModelLoadError(f"{label} is not a readable safetensors file: its header claims {n} bytes "
                             f"(the file has {size}; the limit is {MAX_SAFETENSORS_HEADER // 2**20} MiB)")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{label} is not a readable safetensors file: its header is not valid JSON "
                             f"({_first_line(exc)})") from None
    except RecursionError:
        raise ModelLoadError(f"{label} is not a readable safetensors file: its header is nested too deeply") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{label} is not a readable safetensors file: its header is not a JSON object")
    data_len = size - 8 - n
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            if entry is not None and (not isinstance(entry, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in entry.items())):
                raise ModelLoadError(f"{label}: safetensors __metadata__ must map strings to strings")
            continue
        where = f"{label}: safetensors tensor {name[:80]!r}"
        if not isinstance(entry, dict) or set(entry) - {"dtype", "shape", "data_offsets"}:
            raise ModelLoadError(f"{where} is not an object of dtype, shape and data_offsets")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise ModelLoadError(f"{where} has unknown dtype {str(dtype)[:20]!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise ModelLoadError(f"{where} has a shape that is not a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_len):
            raise ModelLoadError(f"{where} has data offsets {str(offsets)[:60]} outside the file's "
                                 f"{data_len} bytes of data")
        numel = 1
        for d in shape:
            numel *= d
        if numel * SAFETENSORS_DTYPES[dtype] != offsets[1] - offsets[0]:
            raise ModelLoadError(f"{where}: shape {shape} of {dtype} needs {numel * SAFETENSORS_DTYPES[dtype]} "
                                 f"bytes but its offsets span {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], name))
    covered = 0
    for begin, end, name in sorted(spans):
        if begin != covered:
            raise ModelLoadError(f"{label}: safetensors tensor {name[:80]!r} "
                                 f"{'overlaps another' if begin < covered else 'leaves a gap before it'}; "
                                 "the file is corrupt or was tampered with")
        covered = end
    if covered != data_len:
        raise ModelLoadError(f"{label}: {data_len - covered} bytes follow the last safetensors tensor; the file "
                             "was truncated, or something was appended to it")


# ----------------------------------------------------------------------------- anything else


def _inspect_legacy(mf: ModelFile, trust_pickle: bool) -> None:
    """Not zip, not safetensors: a legacy torch.save / plain pickle, or not a model file."""
    mf.kind = "pickle"
    mf.handle.seek(0)
    # A legacy torch.save file is several pickles in a row (magic number, protocol, system info,
    # the object), then raw storages: inspect the first four within MAX_PICKLE_BYTES.
    inspector = _Inspector(io.BytesIO(mf.handle.read(MAX_PICKLE_BYTES)))
    try:
        first = inspector.load()
    except Exception:  # noqa: BLE001  (not a pickle at all)
        raise ModelLoadError(
            f"{mf.path} is not a model file auditkit can read (not a zip archive, pickle or safetensors "
            "file); expected a zoo model.pt, TorchScript, .pt2, state_dict or .safetensors"
        ) from None
    for _ in range(3):
        try:
            inspector.load()
        except Exception:  # noqa: BLE001  (the raw storages that follow, or a truncated file)
            break
    mf.pickle_globals = sorted(set(inspector.found))
    if first == _LEGACY_TORCH_MAGIC and all(_is_tensor_global(n) for n in mf.pickle_globals):
        _unsafe(mf, f"{mf.path} is a legacy (non-zip, pre-1.6) torch.save file of tensors; auditkit reads the zip "
                "format only, whose pickle it can check: re-save it with torch.save(torch.load(PATH, "
                "weights_only=True), 'weights.pt'), or pass --trust-pickle if you trust this file", trust_pickle)
        return
    legacy = "a legacy (non-zip) torch.save file" if first == _LEGACY_TORCH_MAGIC else ""
    _unsafe(mf, describe_pickle(mf.path, mf.pickle_globals, legacy), trust_pickle)


_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a pre-1.6 torch.save file
