"""Writing files so that a failure never leaves half a file, and naming the file when the disk refuses.

``atomic_write(path, write)`` has ``write`` fill a temporary file in the same folder and then renames
it onto ``path`` (``os.replace``, atomic on POSIX and Windows): the old file stays whole until the
new one is complete. A full disk or a missing permission becomes one ``FileWriteError`` naming the
path, and the temporary file is removed.

Pure Python: importing it does not load TensorFlow.
"""

import errno as errnos
import gc
import hashlib
import json
import os
import sys
from pathlib import Path

HINTS = {errnos.ENOSPC: "free some disk space or choose another folder",
         errnos.EDQUOT: "free some disk space or choose another folder",
         errnos.EACCES: "check the folder's permissions or choose another folder",
         errnos.EPERM: "check the folder's permissions or choose another folder",
         errnos.EROFS: "the disk is read-only: choose another folder"}


class FileWriteError(OSError):
    """A file could not be written; ``filename`` is its path, ``strerror`` says why and what to do."""


def _reason(err):
    """The short reason of an OSError (h5py's messages run over several lines) and what to do."""
    code = err.errno if isinstance(err.errno, int) else None
    reason = os.strerror(code) if code else (err.strerror or str(err)).splitlines()[0]
    hint = HINTS.get(code)
    return f"{reason}; {hint}" if hint else reason


def _release_quietly(err):
    """Free what a failed write left open, now, without h5py's close errors on stderr.

    A file that h5py could not finish still fails to close when its last reference goes, and h5py
    prints that (twice) as an ignored exception: tracebacks after the real error was reported. Its
    last reference is the traceback of ``err``; dropping it inside this function frees the file here,
    with Python's hooks for such messages muted. (HDF5 keeps the file half-open all the same; see
    ``vae_helpers.cli.main`` for what that means at exit.)
    """
    hooks = sys.excepthook, sys.unraisablehook
    sys.excepthook = sys.unraisablehook = lambda *args: None  # h5py reports as OSError or RuntimeError
    try:
        seen = set()
        while err is not None and id(err) not in seen:
            seen.add(id(err))
            err.__traceback__ = None
            err = err.__context__ or err.__cause__
        gc.collect()
    finally:
        sys.excepthook, sys.unraisablehook = hooks


def atomic_write(path, write):
    """Call ``write(temporary_path)``, then rename the file onto ``path``; FileWriteError naming ``path`` on failure.

    The temporary file sits in the same folder (so the rename is atomic) and keeps ``path``'s suffix
    (Keras insists on ``.weights.h5``). It is removed whatever happens.
    """
    path = Path(path)
    tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")
    failure = None
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except OSError as err:
        failure = FileWriteError(err.errno, f"cannot write ({_reason(err)})", str(path))
        _release_quietly(err)  # the failed write's open file handles, before the file is removed
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass
    if failure is not None:
        raise failure


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_weights_and_record(weights, weights_path, record, record_path):
    """Write a weights file (its bytes) and its JSON record together: both, or neither changes.

    The record gains the weights' SHA-256 (``weights_sha256``), which a load checks the file against.
    Each file is written atomically; if the record cannot be written, the weights file is put back as
    it was (or removed, if there was none), so the pair never disagrees. Returns the record written.
    """
    weights_path, record_path = Path(weights_path), Path(record_path)
    previous = weights_path.read_bytes() if weights_path.exists() else None
    record = {**record, "weights_sha256": hashlib.sha256(weights).hexdigest()}
    atomic_write(weights_path, lambda tmp: Path(tmp).write_bytes(weights))
    try:
        write_json(record_path, record)
    except BaseException:
        if previous is None:
            weights_path.unlink(missing_ok=True)
        else:
            atomic_write(weights_path, lambda tmp: Path(tmp).write_bytes(previous))
        raise
    return record


def copy_file(source, target):
    """Copy ``source`` onto ``target`` atomically (the target is whole before or after, never half)."""
    data = Path(source).read_bytes()
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))


def sha256_of(path):
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_error(path, err, what="file"):
    """A one-line message for an OSError raised while reading ``path``: permission, missing, or unreadable."""
    if isinstance(err, PermissionError):
        return f"{path}: cannot read this {what} (permission denied); check its permissions (chmod u+r)"
    if isinstance(err, FileNotFoundError):
        return f"{path}: {what} not found"
    if isinstance(err, IsADirectoryError):
        return f"{path}: is a folder, not a {what}"
    return f"{path}: cannot read this {what} ({_reason(err)})"
