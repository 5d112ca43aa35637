"""The user's files, read and written safely.

A leaf module (no torch). Every file auditkit writes goes through :func:`atomic_write_bytes`,
so a failed or interrupted run leaves no half-written file (DESIGN.md §6); :func:`check_out_dir`
refuses an unusable ``--out`` before a scan spends minutes, rather than after; and
:func:`read_user_text` reads a small text file (card, results, policy) without hanging on a
FIFO or device, or reading a huge file into memory.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from auditkit.errors import BadInputError, OutputError

TEXT_LIMIT = 256 * 2**20  # bytes of a card, results or policy file read into memory
RESULTS_FILE = "results.json"
REPORT_FILES = {"html": "report.html", "md": "summary.md", "junit": "junit.xml"}  # format -> file name


def atomic_write_bytes(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: no half-written file on failure.

    Raises :class:`~auditkit.errors.OutputError` when ``path`` is a folder or its folder cannot
    be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; remove it or choose another --out")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"cannot write {path}: a file stands where its folder should be") from None
    except PermissionError:
        raise OutputError(f"cannot write {path}: permission denied; choose a writable --out") from None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    data = text.encode("utf-8")
    atomic_write_bytes(path, lambda tmp: tmp.write_bytes(data))


def check_out_dir(out: str | Path, files: Iterable[str] = ()) -> Path:
    """Make sure ``out`` is (or can become) a writable folder in which ``files`` can be written.

    Creates nothing. Raises :class:`~auditkit.errors.OutputError` when ``out`` is a file, sits
    under a file, is not writable, or when one of ``files`` inside it is a folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; pass a folder (it is created if missing)")
    existing = out
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"--out {out}: {existing} is a file, not a folder; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out}: {existing} is not writable; choose a writable folder")
    for name in files:
        target = out / name
        if target.is_dir():
            raise OutputError(f"--out {out}: {target} is a folder, where the file {name} is to be written; "
                              "remove it or choose another --out")
        if target.exists() and not os.access(target, os.W_OK) and not os.access(out, os.W_OK):
            raise OutputError(f"--out {out}: {target} cannot be replaced (permission denied)")
    return out


def read_user_text(path: str | Path, what: str, error: type[BadInputError] = BadInputError,
                   limit: int = TEXT_LIMIT) -> str:
    """The UTF-8 text of a small user file (``what`` names it in messages: "card file", ...).

    Refuses, with ``error``, a missing path, a folder, a FIFO, socket or device (reading one
    could block forever or never end), a file over ``limit`` bytes and undecodable bytes.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {path} is a folder; pass the file inside it")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path} is not a regular file (a FIFO, socket or device); pass a file")
    if st.st_size > limit:
        raise error(f"{what} {path} is {st.st_size / 2**20:.0f} MiB, more than the {limit / 2**20:.0f} MiB "
                    "such a file can be")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{what} {path} grew past {limit / 2**20:.0f} MiB while being read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
