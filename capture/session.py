"""The session file: one HDF5 file per recording (layout in capture/FORMAT.md).

``SessionWriter`` creates a session and appends LSL data to it; ``SessionReader`` reads one
back (also while it is still being written, and after a killed recorder). The recorder, the
XDF import and ``imusic simulate`` all write through ``SessionWriter``; ``imusic info``,
``imusic sync`` and the exports read through ``SessionReader``.

SWMR and late streams. HDF5's single-writer/multiple-reader mode keeps the file consistent on
disk at every flush (so a ``kill -9`` leaves a readable file), but forbids creating groups or
datasets while it is on. The writer therefore works in two phases that alternate: structure
changes (a new stream, the events table) happen with SWMR off, then SWMR is switched on for
appending. When a stream joins late the writer flushes, closes the file, reopens it, creates the
stream's datasets and switches SWMR back on. That window lasts milliseconds, once per new
stream; everything else is plain appends under SWMR.

Chunks written once (``WriteLimits``). A compressed HDF5 chunk that is written part full and
then again fuller is stored anew each time, and under SWMR the old copy's space is not reused:
live sessions were mostly dead space. So the writer keeps each stream's newest rows in memory
until they fill a chunk (``chunk_s`` of samples), writes whole chunks at each flush, and writes
a part-filled chunk only when its rows have waited ``hold_s`` (a stream that paused or ended)
or at close. A sample reaches the disk at most ``chunk_s + flush_interval`` after the writer got
it (0.75 s; ``hold_s + flush_interval`` = 0.9 s for a stream that stopped mid-chunk), which is
what a killed recorder can lose. Nothing is repacked at close.

Damaged and live files. Every reader opens a session through ``open_h5`` (plain first; SWMR,
with the bounded retries of ``ReadLimits``, only for a file still flagged open for writing; a
longer bound, and retries while the writer changes the structure, for a file that is being
recorded right now), and ``SessionReader`` turns any HDF5 error met while reading into one
``SessionError`` naming the file and what could not be read (``reading``). So a truncated or
corrupted file fails within a second, with one message, in every command, and a file being
recorded on a loaded machine is read, not called damaged.

The pieces (this module re-exports them; import from here):

* ``capture.session_schema``: names and formats everyone agrees on, the errors,
  ``StreamSpec`` (a stream's info XML parsed), ``stream_key``;
* ``capture.session_chunks``: ``WriteLimits``, ``chunk_rows`` and the rows that wait in memory
  for their chunk (the chunks-written-once layout);
* ``capture.session_writer``: ``SessionWriter`` (create, add streams, append, flush, close,
  cut back after a failed write) and ``write_stream``;
* ``capture.session_h5``: ``open_h5`` (bounded opens: damaged, killed and live files),
  ``ReadLimits``, ``damaged_global_heap``, ``reading``, ``is_live``;
* ``capture.session_reader``: ``SessionReader``, ``StreamData``, ``Event``, ``open_session``.
"""

from imusic.capture.session_chunks import WRITE_LIMITS, WriteLimits, chunk_rows
from imusic.capture.session_h5 import (
    READ_LIMITS,
    ReadLimits,
    damaged_global_heap,
    is_live,
    open_h5,
    reading,
)
from imusic.capture.session_reader import Event, SessionReader, StreamData, open_session
from imusic.capture.session_schema import (
    EVENTS,
    HEALTH_FIELDS,
    LIBVER,
    MAX_CHANNELS,
    SCHEMA,
    SCHEMA_VERSION,
    STREAMS,
    DamagedSessionError,
    FileHeldError,
    SessionError,
    SessionExistsError,
    StreamSpec,
    describe_write_error,
    stream_key,
)
from imusic.capture.session_writer import NO_RAW_NOTE, SessionWriter, mark_no_raw, write_stream

__all__ = [
    "EVENTS", "HEALTH_FIELDS", "LIBVER", "MAX_CHANNELS", "NO_RAW_NOTE", "READ_LIMITS", "SCHEMA",
    "SCHEMA_VERSION", "STREAMS", "WRITE_LIMITS", "DamagedSessionError", "FileHeldError",
    "Event", "ReadLimits",
    "SessionError", "SessionExistsError", "SessionReader", "SessionWriter", "StreamData",
    "StreamSpec", "WriteLimits", "chunk_rows", "damaged_global_heap", "describe_write_error",
    "is_live", "mark_no_raw", "open_h5", "open_session", "reading", "stream_key", "write_stream",
]
