"""Opening a session file for reading, bounded: damaged files fail fast, live ones wait.

Part of the session file package (``capture/session.py`` says how the pieces fit). Every
reader opens a session through ``open_h5``:

* a plain open first: a cleanly closed file opens at once and a damaged one fails at once;
* a file still flagged open for writing whose writer is gone (a killed recorder) in SWMR read
  mode with HDF5's metadata retries bounded (``ReadLimits.swmr_metadata_attempts``): SWMR
  retries every metadata read whose checksum fails, which on a damaged file takes hours;
* a file being recorded (``is_live``: flagged open for writing, and its recorder holds the lock
  on its reserve file; for a writer without one, written to within
  ``ReadLimits.live_recent_s``: the writer updates its heartbeat at every flush) in SWMR read
  mode with a longer bound (``live_metadata_attempts``, about a second per metadata read: a
  busy writer on a loaded machine may be half way through a block), and the open is retried
  for ``live_wait_s`` (the writer closes and reopens the file for a moment when a stream
  joins). ``is_live`` tells callers (``imusic info``) that the file is being recorded.

Before HDF5 reads anything the global heap collections are walked (``damaged_global_heap``),
and ``reading`` turns any HDF5 error met while reading into one ``DamagedSessionError``.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py

from imusic.capture.session_schema import DamagedSessionError, SessionError


@dataclass(frozen=True)
class ReadLimits:
    """How far the readers go with a damaged file before giving up with one clear error."""

    swmr_metadata_attempts: int = 24
    """Reads of a metadata block whose checksum fails under SWMR (a live writer may be half way
    through it). HDF5's default, 100, doubles its wait each time: hours on a damaged file;
    24 waits about 17 ms in all."""
    live_metadata_attempts: int = 30
    """The same for a file being recorded right now: about a second per metadata read, so that a
    writer flushing on a loaded machine is waited for rather than taken for damage."""
    live_recent_s: float = 5.0
    """A file flagged open for writing that was written to this recently is being recorded
    (the writer updates its heartbeat at every flush, twice a second)."""
    live_wait_s: float = 10.0
    """How long ``open_h5`` retries opening a file being recorded (its writer closes and
    reopens it for a moment when a stream joins, and holds HDF5's file lock then)."""
    live_retry_s: float = 0.05
    """Pause between those tries."""
    check_whole_bytes: int = 16 << 20
    """``imusic info`` reads a dataset whole up to this many bytes (raw size)."""
    check_chunks: int = 8
    """Above that size it reads the first, the last and this many chunks spread between."""


READ_LIMITS = ReadLimits()


_HDF5_ERRORS = (OSError, RuntimeError)
"""What h5py raises for damaged files (metadata checksums, bad headers, failed filters)."""


def _first_line(err: BaseException) -> str:
    text = str(err.args[0] if isinstance(err, KeyError) and err.args else err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _damaged(path: Path, what: str, err: BaseException) -> DamagedSessionError:
    return DamagedSessionError(f"{path} is damaged: {what} cannot be read "
                               f"({_first_line(err)}); restore it from a copy or record it again")


def _set_metadata_attempts(fapl: Any, attempts: int) -> None:
    """``H5Pset_metadata_read_attempts`` (not wrapped by h5py), looked up in the HDF5 library
    h5py is linked to. Without it the open still works, with HDF5's own (slow) retries."""
    try:
        fn = ctypes.CDLL(h5py.h5p.__file__).H5Pset_metadata_read_attempts
    except (OSError, AttributeError):
        return
    fn.argtypes, fn.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
    fn(fapl.id, int(attempts))


_GCOL = b"GCOL"
_GCOL_HEADER = 16     # signature, version, 3 reserved bytes, collection size (8 bytes)
_GCOL_OBJECT = 16     # index (2), reference count (2), reserved (4), size (8)
_GCOL_MIN = 4096      # the format's smallest collection


def damaged_global_heap(path: str | Path) -> int | None:
    """Byte offset of a global heap collection whose object list is corrupt, else None.

    HDF5 keeps variable-length strings (every string attribute and string dataset) in global
    heap collections, which have no checksum. HDF5 walks a collection's objects by their sizes;
    a zeroed free-space entry (index 0, size 0) makes that walk stand still, and HDF5 2.0 then
    loops forever, holding Python's lock. So the collections are walked here first, the same
    way, and a walk that stands still or runs past the collection's end is reported. Only
    collections with an intact header (signature, version 1, zero reserved bytes, a size that
    fits the file) are walked; others HDF5 itself refuses."""
    import mmap

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < _GCOL_MIN:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            at = buf.find(_GCOL)
            while at >= 0:
                head = buf[at:at + _GCOL_HEADER]
                n = int.from_bytes(head[8:16], "little") if len(head) == _GCOL_HEADER else 0
                if head[4:8] == b"\x01\x00\x00\x00" and _GCOL_MIN <= n <= size - at:
                    p, end = at + _GCOL_HEADER, at + n
                    while p < end:
                        if p + _GCOL_OBJECT > end:
                            break          # too small for an object: free space
                        idx = int.from_bytes(buf[p:p + 2], "little")
                        obj = int.from_bytes(buf[p + 8:p + 16], "little")
                        need = obj if idx == 0 else _GCOL_OBJECT + ((obj + 7) // 8) * 8
                        if need == 0 or need > end - p:
                            return at
                        p += need
                at = buf.find(_GCOL, at + 1)
    return None


_SUPERBLOCK = b"\x89HDF\r\n\x1a\n"
_WRITE_FLAGS = 0x01 | 0x04     # superblock v2/v3 consistency flags: open for write, for SWMR write
_OPEN_FOR_WRITE = ("already open for write", "unable to lock file")
"""How HDF5's refusals to open a file that a writer holds begin (a flagged file; the lock a
writer holds while it changes the file's structure without SWMR)."""


def write_flagged(path: str | Path) -> bool:
    """True if the file's superblock says it is open for writing (a live writer, or one that
    was killed). Read from the superblock itself (HDF5 format, "Superblock" version 2 and 3:
    signature at 0, 512, 1024 ... bytes; the consistency flags are its 12th byte)."""
    with open(path, "rb") as f:
        at = 0
        while True:
            f.seek(at)
            head = f.read(12)
            if len(head) < 12:
                return False
            if head[:8] == _SUPERBLOCK:
                return head[8] >= 2 and bool(head[11] & _WRITE_FLAGS)
            at = 512 if at == 0 else at * 2


def reserve_path(path: str | Path) -> Path:
    """The recorder's reserve file beside a session (``.NAME.h5.reserve``): disk kept free for
    closing the file after a failed write, and the recorder's lock while it records."""
    path = Path(path)
    return path.with_name(f".{path.name}.reserve")


def hold_reserve_lock(path: str | Path) -> int:
    """Lock the reserve file of session ``path`` for as long as the returned descriptor stays
    open (``os.close`` it at the end; the kernel drops the lock when the process dies, even
    by SIGKILL). ``is_live`` tells a recording from a killed recorder's file by it."""
    fd = os.open(reserve_path(path), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _reserve_locked(path: Path) -> bool | None:
    """True if a live recorder holds the reserve file's lock, False if the file is there and
    nobody does (a killed recorder's), None without a reserve file."""
    try:
        fd = os.open(reserve_path(path), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def file_holders(path: str | Path) -> list[str]:
    """Other processes whose open handle on ``path`` would refuse a writer's reopen now, as
    'process PID (command)'; empty when none would.

    HDF5 locks the file it opens (``flock``): a reader, SWMR included, takes a shared lock for
    as long as it has the file open, and a writer reopening it needs the exclusive one. (A
    SWMR writer drops its own lock once SWMR is on, so this asks the question only then.) The
    test is the writer's own: a non-blocking exclusive lock on a descriptor of our own, let go
    at once; the holders are named from ``/proc/locks``."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return []
    except BlockingIOError:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return _lock_holders(st) or ["another process (not named in /proc/locks)"]


def _lock_holders(st: os.stat_result) -> list[str]:
    """'process PID (command)' for each lock ``/proc/locks`` lists on the file of ``st``."""
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return []
    out: list[str] = []
    for pid in lock_pids(text, want):
        if pid == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                "utf-8", "replace").strip()
        except OSError:
            cmd = "?"
        out.append(f"process {pid} ({cmd[:60]})")
    return out


def lock_pids(text: str, file_id: str) -> list[int]:
    """The PIDs holding a lock on ``file_id`` ('MAJ:MIN:INODE', hex device numbers) in the
    text of ``/proc/locks``, each once, in order; lines that are waits ('->') or not in the
    kernel's form are skipped. Never raises."""
    pids: list[int] = []
    for line in text.splitlines():
        f = line.split()
        # "1: FLOCK  ADVISORY  READ 6952 fe:00:2146507 0 EOF" (a "->" marks a waiting lock)
        if len(f) < 6 or "->" in f or f[5] != file_id or not f[4].isdecimal():
            continue
        pid = int(f[4])
        if pid not in pids:
            pids.append(pid)
    return pids


def is_live(path: str | Path, limits: ReadLimits = READ_LIMITS) -> bool:
    """True if ``path`` is being recorded right now: flagged open for writing, and either its
    recorder holds the lock on the reserve file (``hold_reserve_lock``) or, for writers
    without one (``SessionWriter`` alone), written to within ``limits.live_recent_s`` (a
    killed writer's file stops changing)."""
    path = Path(path)
    try:
        if not write_flagged(path):
            return False
        locked = _reserve_locked(path)
        if locked is not None:
            return locked
        return time.time() - os.stat(path).st_mtime <= limits.live_recent_s
    except OSError:
        return False


def _open_swmr(path: Path, attempts: int) -> h5py.File:
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    _set_metadata_attempts(fapl, attempts)
    fid = h5py.h5f.open(str(path).encode(), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ,
                        fapl=fapl)
    return h5py.File(fid)


def open_h5(path: str | Path, limits: ReadLimits = READ_LIMITS) -> h5py.File:
    """Open an HDF5 file read-only, as every session reader does; ``SessionError`` naming the
    file if it cannot be opened.

    Plain first: a cleanly closed file opens at once and a damaged one fails at once. SWMR read
    mode is used only for a file still flagged open for writing: left by a killed recorder,
    with its metadata retries bounded (``ReadLimits.swmr_metadata_attempts``: SWMR retries
    every metadata read whose checksum fails, which on a damaged file takes hours); being
    recorded (``is_live``), with a longer bound (``live_metadata_attempts``) and the open
    retried for ``live_wait_s`` while the writer holds the file to change its structure."""
    path = Path(path)
    if not path.is_file():
        raise SessionError(f"{path}: no such file")
    heap = damaged_global_heap(path)
    if heap is not None:
        raise DamagedSessionError(f"{path} is damaged: the HDF5 global heap at byte {heap} (its "
                                  "strings) is corrupt; restore it from a copy")
    try:
        return h5py.File(path, "r")
    except _HDF5_ERRORS as err:
        first = err
    if not any(s in str(first) for s in _OPEN_FOR_WRITE):
        raise DamagedSessionError(f"{path} is not a readable HDF5 file ({_first_line(first)});"
                                  " if it is a session, it is damaged or truncated") from first
    deadline = time.monotonic() + limits.live_wait_s
    while True:
        live = is_live(path, limits)
        try:
            return _open_swmr(path, limits.live_metadata_attempts if live
                              else limits.swmr_metadata_attempts)
        except _HDF5_ERRORS as err:
            if not live or time.monotonic() >= deadline:
                state = ("it is being recorded and did not open within "
                         f"{limits.live_wait_s:g} s" if live else
                         "it is flagged open for writing: if no recorder is writing it, it is "
                         f"damaged, or a recorder was killed ('h5clear -s {path}' clears the "
                         "flag)")
                raise DamagedSessionError(f"{path} is not a readable HDF5 file "
                                          f"({_first_line(err)}); {state}") from err
        time.sleep(limits.live_retry_s)


@contextlib.contextmanager
def reading(path: str | Path, what: str) -> Iterator[None]:
    """Turn an HDF5 error raised while reading ``what`` of ``path`` into one ``SessionError``."""
    try:
        yield
    except SessionError:
        raise
    except _HDF5_ERRORS as err:
        raise _damaged(Path(path), what, err) from err
    except KeyError as err:
        # h5py says KeyError when an object or attribute will not open (a bad header, or one
        # that is missing); other KeyErrors (imusic's own, e.g. "no aligned group") pass.
        if str(err.args[0] if err.args else "").startswith(_H5PY_KEY_ERRORS):
            raise _damaged(Path(path), what, err) from err
        raise


_H5PY_KEY_ERRORS = ("Unable to", "Can't open attribute")
"""How h5py's KeyErrors for objects and attributes that will not open begin."""
