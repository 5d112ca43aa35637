"""Builds the hostile model-file corpus at test time (nothing binary is committed).

:func:`build_corpus` writes, under a folder, one file (or path) per case: pickles hidden in
every accepted format whose payload would write a marker file, tampered and bomb-shaped
archives, truncated, empty, huge and non-regular paths, lying safetensors headers, and models
whose card or contents are broken. Each :class:`Case` says how the real CLI must end: its exit
code and a word of its one-line message. :func:`benign_files` writes one benign file per format
(the positive controls).

Payloads write ``MARKER_DIR/<case>`` and nothing else; a marker that exists after a run means
code from a model file ran.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from auditkit.card import AuditCard
from auditkit.loading import load_zoo_file
from tests.conftest import zoo_model_path


@dataclass
class Case:
    """One hostile input: the CLI arguments after ``scan`` and how the scan must end."""

    name: str
    args: list[str]
    code: int  # documented exit code (auditkit.errors)
    word: str  # a word the one-line message must contain (lower case)
    marker: Path | None = None  # written by the payload if code from the file ever runs
    keep: Any = field(default=None, repr=False)  # objects that must outlive the build (a socket)


class Payload:
    """Pickles as a call to ``eval(code)``: writes ``marker`` and evaluates to ``result``.

    ``result`` is Python source of the value the loader expects in its place (e.g. a tensor),
    so that a loader that runs it carries on as if nothing happened.
    """

    def __init__(self, marker: Path, result: str = "None"):
        self.source = (f"(__import__('pathlib').Path({str(marker)!r}).write_text('code from the model file ran'), "
                       f"{result})[1]")

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (eval, (self.source,))


# ----------------------------------------------------------------------------- zip helpers


def read_members(path: Path) -> tuple[str, dict[str, bytes]]:
    """A torch archive's top-level folder and its members (relative name -> bytes), in order."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        prefix = names[0].split("/", 1)[0]
        return prefix, {n.split("/", 1)[1]: zf.read(n) for n in names}


def write_members(path: Path, prefix: str, members: dict[str, bytes], deflate: frozenset[str] = frozenset()) -> Path:
    """Write a torch-like archive (everything under ``prefix/``), stored unless named in ``deflate``."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            kind = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            zf.writestr(f"{prefix}/{name}", data, compress_type=kind)
    return path


def raw_zip(path: Path, entries: list[dict[str, Any]], declared_total: int | None = None) -> Path:
    """A zip written by hand, so that it can lie: each entry has ``name``, ``data`` (as stored),
    ``method`` (0 stored, 8 deflated), ``size`` (declared uncompressed), ``crc``, and optionally
    ``offset_of`` (index of an earlier entry whose data this directory entry points at: the
    overlapping-files bomb)."""
    out = bytearray()
    offsets: list[int] = []
    for e in entries:
        if "offset_of" in e:
            offsets.append(offsets[e["offset_of"]])
            continue
        name = e["name"].encode()
        offsets.append(len(out))
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, e["method"], 0, 0, e["crc"], len(e["data"]),
                           e["size"], len(name), 0) + name + e["data"]
    cd_start = len(out)
    for e, off in zip(entries, offsets):
        name = e["name"].encode()
        stored = e["data"] if "offset_of" not in e else entries[e["offset_of"]]["data"]
        out += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, e["method"], 0, 0, e["crc"], len(stored),
                           e["size"], len(name), 0, 0, 0, 0, 0, off) + name
    cd_size = len(out) - cd_start
    total = len(entries) if declared_total is None else declared_total
    if total > 0xFFFF:  # zip64 end record and locator, as for any archive of more than 65535 members
        z64 = len(out)
        out += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, total, total, cd_size, cd_start)
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, z64, 1)
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(total, 0xFFFF), min(total, 0xFFFF), cd_size, cd_start, 0)
    path.write_bytes(bytes(out))
    return path


def deflate_bomb(expanded: int, chunk: int = 1 << 20) -> tuple[bytes, int]:
    """Raw deflate data that expands to ``expanded`` zero bytes, and its CRC-32, built in
    O(chunk) time: after a full flush the compressor's output for another chunk of zeros repeats."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(chunk)
    first = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    assert block == again, "zlib's output for repeated chunks is not periodic"
    n = expanded // chunk
    data = first + block * (n - 2) + comp.compress(zeros) + comp.flush()
    # The true CRC only where it is cheap: a bomb is refused from the directory, before any CRC.
    crc = 0
    if expanded <= 256 * 2**20:
        for _ in range(n):
            crc = zlib.crc32(zeros, crc)
    return data, crc


# ----------------------------------------------------------------------------- benign files


def digits() -> tuple[torch.nn.Module, AuditCard]:
    loaded = load_zoo_file(zoo_model_path("cnn-digits"))
    return loaded.module, loaded.card


def benign_files(root: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """One benign file per accepted format: name -> (path, load_model kwargs)."""
    root.mkdir(parents=True, exist_ok=True)
    module, card = digits()
    x = torch.rand(4, *card.input_shape)
    files: dict[str, tuple[Path, dict[str, Any]]] = {"zoo": (zoo_model_path("cnn-digits"), {})}
    ts = root / "model.ts.pt"
    torch.jit.save(torch.jit.trace(module, x), str(ts), _extra_files={"card.json": card.to_json()})
    files["torchscript"] = (ts, {})
    for name, dynamic in (("dynamic.pt2", True), ("static.pt2", False)):
        shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
        program = torch.export.export(module, (x,), dynamic_shapes=shapes)
        torch.export.save(program, str(root / name), extra_files={"card.json": card.to_json()})
        files[name.replace(".", "-")] = (root / name, {})
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    torch.save(state, root / "weights.pt")
    plain = card.model_copy(update={"architecture": None})
    (root / "weights.card.json").write_text(plain.to_json())
    files["state_dict"] = (root / "weights.pt", {"arch": "cnn-digits"})
    from safetensors.torch import save_file

    save_file(state, str(root / "weights.safetensors"))
    files["safetensors"] = (root / "weights.safetensors", {"arch": "cnn-digits"})
    return files


# ----------------------------------------------------------------------------- the corpus


def build_corpus(root: Path) -> list[Case]:
    """Write every hostile case under ``root``; markers go to ``root/markers``."""
    root.mkdir(parents=True, exist_ok=True)
    markers = root / "markers"
    markers.mkdir(exist_ok=True)
    benign = benign_files(root / "benign")
    module, card = digits()
    zoo = zoo_model_path("cnn-digits")
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    card_json = card.model_dump(mode="json")
    cases: list[Case] = []

    def add(name: str, build: Callable[[Path, Path], list[str] | Path], code: int, word: str,
            payload: bool = False) -> None:
        folder = root / name.replace(" ", "_").replace("/", "_")
        folder.mkdir()
        marker = markers / folder.name
        made = build(folder, marker)
        args = [str(made)] if isinstance(made, Path) else made
        cases.append(Case(name, args, code, word, marker if payload else None))

    # --- paths that are not model files (bad usage: exit 2)
    add("missing file", lambda d, m: d / "nope.pt", 2, "does not exist")
    add("folder", lambda d, m: d, 2, "folder")

    def fifo(d: Path, m: Path) -> Path:
        os.mkfifo(d / "model.pt")
        return d / "model.pt"

    add("FIFO", fifo, 2, "fifo")
    add("/dev/zero", lambda d, m: [os.devnull.replace("null", "zero")], 2, "device")

    def unix_socket(d: Path, m: Path) -> Path:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(d / "s.pt"))
        sock.close()  # the socket file stays
        return d / "s.pt"

    add("socket", unix_socket, 2, "socket")

    def loop(d: Path, m: Path) -> Path:
        os.symlink(d / "b.pt", d / "a.pt")
        os.symlink(d / "a.pt", d / "b.pt")
        return d / "a.pt"

    add("symlink loop", loop, 2, "model file")

    def dangling(d: Path, m: Path) -> Path:
        os.symlink(d / "gone.pt", d / "link.pt")
        return d / "link.pt"

    add("broken symlink", dangling, 2, "symbolic link")

    # --- files that are not models, or broken ones (exit 3)
    add("empty file", lambda d, m: _write(d / "model.pt", b""), 3, "empty")

    def sparse(d: Path, m: Path) -> Path:
        with open(d / "huge.pt", "wb") as f:
            f.truncate(20 * 2**30)  # 20 GiB of holes: no disk used
        return d / "huge.pt"

    add("sparse 20 GiB file", sparse, 3, "gib")
    add("random bytes", lambda d, m: _write(d / "model.pt", os.urandom(4096)), 3, "not a model file")
    add("text file", lambda d, m: _write(d / "model.pt", b"hello, I am not a model\n" * 10), 3, "not a model file")
    add("truncated zoo file", lambda d, m: _write(d / "model.pt", zoo.read_bytes()[: zoo.stat().st_size // 2]),
        3, "truncated")
    add("zoo file with trailing junk", lambda d, m: _write(d / "model.pt", zoo.read_bytes() + b"junk" * 100),
        3, "corrupt")
    add("zoo file cut inside its end record", lambda d, m: _write(d / "model.pt", zoo.read_bytes()[:-7]), 3, "corrupt")

    def bad_crc(d: Path, m: Path) -> Path:
        raw = bytearray(zoo.read_bytes())
        with zipfile.ZipFile(zoo) as zf:
            big = max(zf.infolist(), key=lambda i: i.file_size)
        n, e = struct.unpack("<2H", raw[big.header_offset + 26: big.header_offset + 30])
        raw[big.header_offset + 30 + n + e + 100] ^= 0xFF  # one flipped weight byte
        return _write(d / "model.pt", bytes(raw))

    add("bad CRC in a weight", bad_crc, 3, "crc")

    prefix, members = read_members(zoo)

    def duplicate(d: Path, m: Path) -> Path:
        path = write_members(d / "model.pt", prefix, members)
        with zipfile.ZipFile(path, "a") as zf:  # a second data.pkl, the one a loader might pick
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zf.writestr(f"{prefix}/data.pkl", pickle.dumps(Payload(m), protocol=2))
        return path

    add("duplicate member names", duplicate, 3, "two members", payload=True)
    add("'../' member name",
        lambda d, m: write_members(d / "model.pt", prefix, {**members, "../../evil.pkl": b"x"}), 3, "unsafe name")
    add("absolute member name", lambda d, m: _abs_member(d, prefix, members), 3, "unsafe name")
    add("plain zip, not a torch file",
        lambda d, m: _zip_of(d / "model.pt", {"readme.txt": b"hello"}), 3, "not a torch file")

    def bomb(d: Path, m: Path) -> Path:
        data, crc = deflate_bomb(2 * 2**30)  # ~2 MB that expand to 2 GiB
        return raw_zip(d / "model.pt", [{"name": "archive/data.pkl", "data": data, "method": 8,
                                         "size": 2 * 2**30, "crc": crc}])

    add("zip bomb (2 MB -> 2 GiB)", bomb, 3, "bomb")

    def overlap(d: Path, m: Path) -> Path:  # stored, so no ratio gives it away: 1 MiB counted 1000 times
        data = bytes(2**20)
        crc = zlib.crc32(data)
        entries = [{"name": "archive/data.pkl", "data": data, "method": 0, "size": len(data), "crc": crc}]
        entries += [{"name": f"archive/data/{i}", "method": 0, "size": len(data), "crc": crc, "offset_of": 0}
                    for i in range(1000)]
        return raw_zip(d / "model.pt", entries)

    add("overlapping-members bomb", overlap, 3, "overlaps")

    def lying_size(d: Path, m: Path) -> Path:
        data, crc = deflate_bomb(256 * 2**20)  # declares 1 KiB, expands to 256 MiB
        return raw_zip(d / "model.pt", [{"name": "archive/data.pkl", "data": data, "method": 8,
                                         "size": 1024, "crc": crc}])

    add("deflated member lying about its size", lying_size, 3, "corrupt")
    add("200000 declared members",
        lambda d, m: raw_zip(d / "model.pt", [{"name": "archive/data.pkl", "data": b"x", "method": 0, "size": 1,
                                               "crc": zlib.crc32(b"x")}], declared_total=200_000),
        3, "members")

    # --- pickles hidden in each format (exit 3; the marker proves nothing ran)
    def zoo_with(extra: dict[str, Any]) -> Callable[[Path, Path], Path]:
        def build(d: Path, m: Path) -> Path:
            payload = {"format": "auditkit/1", "card": card_json, "state_dict": state}
            payload.update({k: (v(m) if callable(v) else v) for k, v in extra.items()})
            torch.save(payload, d / "model.pt")
            return d / "model.pt"
        return build

    add("zoo file with a payload object", zoo_with({"extra": lambda m: Payload(m)}), 3, "eval", payload=True)
    add("state_dict with a payload value",
        lambda d, m: _torch_save(d / "w.pt", {**state, "evil": Payload(m, "__import__('torch').zeros(1)")},
                                 card_json), 3, "eval", payload=True)

    def obfuscated(d: Path, m: Path) -> Path:
        return write_members(d / "model.pt", prefix, {**members, "data.pkl": memo_obfuscated_pickle(m)})

    add("STACK_GLOBAL name built from the memo", obfuscated, 3, "builtins.exec", payload=True)
    add("plain pickle file", lambda d, m: _write(d / "model.pkl", pickle.dumps(Payload(m))), 3, "pickled",
        payload=True)
    add("obfuscated plain pickle", lambda d, m: _write(d / "model.pt", memo_obfuscated_pickle(m)), 3, "builtins.exec",
        payload=True)

    def legacy(d: Path, m: Path) -> Path:
        torch.save(state, d / "old.pt", _use_new_zipfile_serialization=False)
        return d / "old.pt"

    add("legacy (non-zip) torch.save", legacy, 3, "legacy")

    def pickle_then_zip(d: Path, m: Path) -> Path:  # a pickle in front of a valid archive
        return _write(d / "model.pt", pickle.dumps(Payload(m), protocol=2) + zoo.read_bytes())

    add("pickle prepended to an archive", pickle_then_zip, 3, "pickled", payload=True)

    ts_prefix, ts_members = read_members(benign["torchscript"][0])
    add("TorchScript with a tampered data.pkl",
        lambda d, m: write_members(d / "m.pt", ts_prefix, {**ts_members, "data.pkl": _torch_pickle(Payload(m))}),
        3, "torchscript pickle", payload=True)
    add("TorchScript with a tampered constants.pkl",
        lambda d, m: write_members(d / "m.pt", ts_prefix,
                                   {**ts_members, "constants.pkl": _torch_pickle((Payload(m),))}),
        3, "constants.pkl", payload=True)
    add("TorchScript whose forward writes a file", lambda d, m: _scripted_writer(d / "m.pt", m, module, card),
        3, "torch.save", payload=True)
    add("TorchScript whose forward raises", lambda d, m: _scripted_raiser(d / "m.pt", module, card), 3,
        "fails on the first test samples")

    dyn_path, static_path = benign["dynamic-pt2"][0], benign["static-pt2"][0]
    add(".pt2 with a pickled sample_inputs (runs, then loads)", lambda d, m: pt2_sample_inputs(d, m, static_path),
        3, "sample_inputs", payload=True)
    add(".pt2 with a raw pickle as sample_inputs",
        lambda d, m: _pt2_edit(d, static_path, {"data/sample_inputs/model.pt": pickle.dumps(Payload(m))}),
        3, "sample_inputs", payload=True)
    add(".pt2 with a pickle-flagged weight", lambda d, m: pt2_pickled_weight(d, m, static_path), 3, "pickle",
        payload=True)
    add(".pt2 with a pickled tensor constant", lambda d, m: pt2_constant(d, m, static_path, "tensor_99"), 3,
        "pickle", payload=True)
    add(".pt2 with an opaque-object constant", lambda d, m: pt2_constant(d, m, static_path, "opaque_obj_0"), 3,
        "opaque", payload=True)
    add(".pt2 with a torchbind-object constant", lambda d, m: pt2_constant(d, m, static_path, "custom_obj_0"), 3,
        "custom", payload=True)
    add(".pt2 with guard code that runs", lambda d, m: pt2_guard(d, m, static_path), 3, "guard", payload=True)
    add(".pt2 with a symbolic expression that runs", lambda d, m: pt2_sympy(d, m, dyn_path), 3,
        "symbolic expression", payload=True)
    add(".pt2 calling torch.save from its graph", lambda d, m: pt2_target(d, m, static_path, "torch.save"), 3,
        "node target", payload=True)
    add(".pt2 calling os.system from its graph", lambda d, m: pt2_target(d, m, static_path, "torch.os.system"), 3,
        "node target")
    add(".pt2 with a string that breaks out of guard code", lambda d, m: pt2_string(d, m, static_path), 3,
        "string constant")
    add(".pt2 with AOTInductor code",
        lambda d, m: _pt2_edit(d, static_path, {"data/aotinductor/model/evil.so": b"\x7fELF"}), 3, "aotinductor")
    add(".pt2 with an unknown member",
        lambda d, m: _pt2_edit(d, static_path, {"data/evil.pkl": pickle.dumps(Payload(m))}), 3, "not part of",
        payload=True)
    add(".pt2 with a legacy pickled weights file",
        lambda d, m: _pt2_edit(d, static_path, {"data/weights/model.pt": _torch_pickle_file(Payload(m))}), 3,
        "legacy", payload=True)

    # --- safetensors headers that lie (exit 3)
    st = benign["safetensors"][0].read_bytes()
    header_len = struct.unpack("<Q", st[:8])[0]
    header = json.loads(st[8: 8 + header_len])
    add("safetensors with a pickle appended",
        lambda d, m: _write(d / "w.safetensors", st + pickle.dumps(Payload(m))), 3, "appended", payload=True)
    add("safetensors with a 2**63 header length",
        lambda d, m: _write(d / "w.safetensors", struct.pack("<Q", 2**63) + st[8:]), 3, "header")
    add("safetensors with bad JSON",
        lambda d, m: _write(d / "w.safetensors", struct.pack("<Q", 12) + b"{not json!!}" + b"\0" * 64), 3, "json")
    add("safetensors offsets outside the file", lambda d, m: _safetensors(d, st, header, "offsets"), 3, "outside")
    add("safetensors with an unknown dtype", lambda d, m: _safetensors(d, st, header, "dtype"), 3, "dtype")
    add("safetensors with overlapping tensors", lambda d, m: _safetensors(d, st, header, "overlap"), 3, "overlaps")

    # --- models whose card or contents are broken
    add("zoo dict without a state_dict",
        lambda d, m: _torch_save_raw(d / "model.pt", {"format": "auditkit/1", "card": card_json}), 3, "state_dict")
    add("zoo dict with a list as state_dict", zoo_with({"state_dict": [1, 2, 3]}), 3, "list")
    add("zoo dict of an unknown format", zoo_with({"format": "auditkit/9"}), 3, "format")
    add("zoo dict with a list as card", zoo_with({"card": [1, 2]}), 2, "card")
    add("card with 10**9 classes",
        zoo_with({"card": {**card_json, "arch_kwargs": {"num_classes": 10**9}}}), 3, "do not fit")
    add("card with a negative width",
        zoo_with({"card": {**card_json, "arch_kwargs": {"num_classes": 10, "width": -8}}}), 2, "arch_kwargs")
    add("card with a string width",
        zoo_with({"card": {**card_json, "arch_kwargs": {"num_classes": 10, "width": "wide"}}}), 2, "arch_kwargs")
    add("state_dict of strings", lambda d, m: _torch_save(d / "w.pt", {"a": "b"}, card_json), 3, "plain data")
    return cases


# ----------------------------------------------------------------------------- builders


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _zip_of(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _abs_member(d: Path, prefix: str, members: dict[str, bytes]) -> Path:
    path = write_members(d / "model.pt", prefix, members)
    raw = path.read_bytes()
    # zipfile strips a leading '/' when writing: rename a member in place, same length.
    old = f"{prefix}/byteorder".encode()
    new = b"/" + old[1:]
    return _write(path, raw.replace(old, new))


def _torch_save(path: Path, obj: Any, card_json: dict[str, Any]) -> Path:
    torch.save(obj, path)
    plain = {**card_json, "architecture": None}
    path.with_name(path.name.split(".")[0] + ".card.json").write_text(json.dumps(plain))
    return path


def _torch_save_raw(path: Path, obj: Any) -> Path:
    torch.save(obj, path)
    return path


def _torch_pickle(obj: Any) -> bytes:
    """The data.pkl that torch.save would write for ``obj`` (protocol 2)."""
    return pickle.dumps(obj, protocol=2)


def _torch_pickle_file(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def memo_obfuscated_pickle(marker: Path) -> bytes:
    """A pickle that imports ``builtins.exec`` through STACK_GLOBAL with its module and name
    fetched from the memo, after pushing decoy strings: an opcode scan that pairs STACK_GLOBAL
    with the last two strings it saw reports ``torch.FloatStorage``."""

    def text(s: str) -> bytes:
        b = s.encode()
        return b"\x8c" + bytes([len(b)]) + b if len(b) < 256 else b"X" + struct.pack("<I", len(b)) + b

    code = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('code from the model file ran')"
    return (b"\x80\x04"
            + text("builtins") + b"\x94" + text("exec") + b"\x94" + b"00"  # memo 0, 1; popped
            + text("torch") + text("FloatStorage") + b"00"  # decoys
            + b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL
            + text(code) + b"\x85R.")  # TUPLE1, REDUCE, STOP


def _scripted_writer(path: Path, marker: Path, module: torch.nn.Module, card: AuditCard) -> Path:
    class Writer(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module, target: str):
            super().__init__()
            self.inner = inner
            self.target = target

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch.save(x, self.target)
            return self.inner(x)

    scripted = torch.jit.script(Writer(module, str(marker)))
    torch.jit.save(scripted, str(path), _extra_files={"card.json": card.to_json()})
    return path


def _scripted_raiser(path: Path, module: torch.nn.Module, card: AuditCard) -> Path:
    class Raiser(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] > 0:
                raise RuntimeError("this model refuses to run")
            return self.inner(x)

    torch.jit.save(torch.jit.script(Raiser(module)), str(path), _extra_files={"card.json": card.to_json()})
    return path


def _pt2_edit(d: Path, src: Path, changes: dict[str, bytes | None], name: str = "model.pt2") -> Path:
    prefix, members = read_members(src)
    for key, value in changes.items():
        if value is None:
            members.pop(key, None)
        else:
            members[key] = value
    return write_members(d / name, prefix, members)


def _pt2_json(src: Path, member: str) -> Any:
    return json.loads(read_members(src)[1][member])


def pt2_sample_inputs(d: Path, marker: Path, src: Path) -> Path:
    """sample_inputs whose pickle writes the marker and then returns valid sample inputs:
    torch.export.load's weights_only=True try fails, its weights_only=False retry runs it."""
    value = "((__import__('torch').zeros(4, 1, 8, 8),), {})"
    return _pt2_edit(d, src, {"data/sample_inputs/model.pt": _torch_pickle_file(Payload(marker, value))})


def pt2_pickled_weight(d: Path, marker: Path, src: Path) -> Path:
    config = _pt2_json(src, "data/weights/model_weights_config.json")
    fqn, meta = next(iter(config["config"].items()))
    sizes = [s["as_int"] for s in meta["tensor_meta"]["sizes"]]
    meta["use_pickle"] = True
    value = f"__import__('torch').zeros({sizes})"
    return _pt2_edit(d, src, {f"data/weights/{meta['path_name']}": _torch_pickle_file(Payload(marker, value)),
                              "data/weights/model_weights_config.json": json.dumps(config).encode()})


def pt2_constant(d: Path, marker: Path, src: Path, path_name: str) -> Path:
    config = _pt2_json(src, "data/constants/model_constants_config.json")
    config["config"]["evil"] = {"path_name": path_name, "is_param": False, "use_pickle": True,
                                "tensor_meta": {"dtype": 7, "sizes": [{"as_int": 1}], "requires_grad": False,
                                                "device": {"type": "cpu", "index": None},
                                                "strides": [{"as_int": 1}], "storage_offset": {"as_int": 0},
                                                "layout": 7}}
    blob = _torch_pickle_file(Payload(marker, "__import__('torch').zeros(1)")) if path_name.startswith("tensor_") \
        else pickle.dumps(Payload(marker))
    return _pt2_edit(d, src, {f"data/constants/{path_name}": blob,
                              "data/constants/model_constants_config.json": json.dumps(config).encode()})


def pt2_guard(d: Path, marker: Path, src: Path) -> Path:
    """Guard code is pasted into a function that ep.module() exec's and every forward calls."""
    program = _pt2_json(src, "models/model.json")
    program["guards_code"] = [f"__import__('pathlib').Path({str(marker)!r}).write_text('ran') > 0"]
    return _pt2_edit(d, src, {"models/model.json": json.dumps(program).encode()})


def pt2_sympy(d: Path, marker: Path, src: Path) -> Path:
    """A symbolic size that torch.export.load passes to sympy.sympify (eval)."""
    program = _pt2_json(src, "models/model.json")
    text = json.dumps(program)
    symbol = "Symbol('s77', positive=True, integer=True)"
    assert symbol in text, "the dynamic export no longer names its batch symbol s77"
    evil = f"{symbol} * Integer(__import__('pathlib').Path({str(marker)!r}).write_text('1'))"
    return _pt2_edit(d, src, {"models/model.json": text.replace(json.dumps(symbol)[1:-1],
                                                                json.dumps(evil)[1:-1], 1).encode()})


def pt2_target(d: Path, marker: Path, src: Path, target: str) -> Path:
    """A graph node whose target is a Python callable reached from torch (called as found)."""
    program = _pt2_json(src, "models/model.json")
    nodes = program["graph_module"]["graph"]["nodes"]
    first = nodes[0]
    x = first["inputs"][0]["arg"]
    save = {"target": target, "name": "evil",
            "inputs": [{"name": "obj", "arg": x, "kind": 1},
                       {"name": "f", "arg": {"as_string": str(marker)}, "kind": 1}],
            "outputs": [{"as_none": True}], "metadata": {}, "is_hop_single_tensor_return": None}
    nodes.insert(0, save)
    return _pt2_edit(d, src, {"models/model.json": json.dumps(program).encode()})


def pt2_string(d: Path, marker: Path, src: Path) -> Path:
    """A string constant input: torch pastes it between quotes into exec'd guard code."""
    program = _pt2_json(src, "models/model.json")
    evil = f"x' == __import__('pathlib').Path({str(marker)!r}).write_text('ran') or '"
    program["graph_module"]["signature"]["input_specs"].append(
        {"constant_input": {"name": "mode", "value": {"as_string": evil}}})
    return _pt2_edit(d, src, {"models/model.json": json.dumps(program).encode()})


def _safetensors(d: Path, raw: bytes, header: dict[str, Any], how: str) -> Path:
    header = json.loads(json.dumps(header))
    n = struct.unpack("<Q", raw[:8])[0]
    body = raw[8 + n:]
    names = [k for k in header if k != "__metadata__"]
    first = header[names[0]]
    if how == "offsets":
        first["data_offsets"] = [first["data_offsets"][0], len(body) + 10**9]
    elif how == "dtype":
        first["dtype"] = "PICKLE"
    elif how == "overlap":
        second = header[names[1]]
        size = second["data_offsets"][1] - second["data_offsets"][0]
        second["data_offsets"] = [first["data_offsets"][0], first["data_offsets"][0] + size]
    text = json.dumps(header).encode()
    return _write(d / "w.safetensors", struct.pack("<Q", len(text)) + text + body)
