"""Read Suricata EVE (JSON lines) from a file: once, or following it like ``tail -F``.

``Follower`` survives both rotation styles and restarts:

- rename + create (logrotate's default, Suricata reopening on SIGHUP): the old file is read to
  its end (the writer may still append to it until it reopens), then the new file from byte 0;
- copytruncate: when the file shrinks below our offset, the bytes we had not read yet are in
  the copy; a sibling file whose bytes just before our offset equal the last bytes we read is
  taken as that copy and read from our offset first, then the truncated file from byte 0;
- restart: a checkpoint (inode, offset, lines emitted and the last line's final bytes,
  written atomically) is only advanced by ``commit(n)`` once the consumer has durably emitted
  n more lines, so a restart resumes exactly after the last emitted line. Before resuming, the
  bytes just before the offset must equal the stored tail: a file truncated (copytruncate)
  and refilled while we were down keeps its inode and may be long enough, but the offset then
  points into the middle of some new line. On a mismatch the copy of the old file is looked
  for among the siblings (its bytes before the offset equal the tail) and its rest is read
  first; then the file is read from byte 0. If no copy is found, a warning says so: lines the
  old file got after the checkpoint are then gone with it. If the checkpointed inode is no
  longer at the path (rotated while we were down), the directory is searched for that inode
  and its rest is read first (after the same tail check).

Lines are bytes, newline included (the last line of a file may lack one). ``lines()`` yields
``None`` when it has waited one poll interval without new data, so a consumer with a timer
(bounded waits for verdicts) gets control back.
"""
from __future__ import annotations

import io
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..atomic import write_atomic

log = logging.getLogger("msewatch.annotate")

_TAIL = 64  # bytes kept to recognise the copy of a copytruncate'd file
_CHUNK = 1 << 20  # bytes read at a time from a rotated file being finished


class InputError(Exception):
    """An input file cannot be read; the message names it."""


class OutputError(Exception):
    """An output file cannot be written (disk full, ...); the message names it."""


def read_lines(path: str | Path) -> Iterator[bytes]:
    """Every line of a finished file, as raw bytes (newline kept)."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        try:
            yield from f
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror or e}") from None


class _RawOutput(io.FileIO):
    """The file under a buffered output: a failed write names the file (OutputError)."""

    def write(self, b) -> int | None:  # called once per buffer flush, not per line
        try:
            return super().write(b)
        except OSError as e:
            raise OutputError(f"cannot write {self.name}: {e.strerror or e}") from None


def open_output(path: str | Path, mode: str = "ab") -> io.BufferedWriter:
    """A buffered binary output whose write errors are OutputError naming the file; created
    with the process umask (0o666 & ~umask), like every file msewatch writes."""
    try:
        raw = _RawOutput(os.fspath(path), mode.replace("b", ""))
    except OSError as e:
        raise OutputError(f"cannot open {path} for writing: {e.strerror or e}") from None
    return io.BufferedWriter(raw)


def sync_output(out: io.BufferedWriter) -> None:
    """Flush and fsync out; OutputError naming the file when the disk refuses."""
    out.flush()
    try:
        os.fsync(out.fileno())
    except OSError as e:
        raise OutputError(f"cannot write {out.name}: {e.strerror or e}") from None


class CheckpointError(ValueError):
    """The checkpoint file cannot be used; the message names it and says what to do."""


@dataclass
class Checkpoint:
    path: str
    inode: int
    offset: int  # byte offset just after the last emitted line, in the file with that inode
    lines: int  # lines emitted in total
    out_size: int | None = None  # size of the output file after those lines (exactly-once)
    tail: str = ""  # hex of up to 64 bytes before offset (the end of the last emitted line)

    @staticmethod
    def load(path: Path) -> Checkpoint | None:
        """The checkpoint at path, None if there is none; CheckpointError if it is unusable."""
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CheckpointError(f"checkpoint {path}: cannot read: {e.strerror or e}") from None
        except ValueError as e:  # not JSON, not UTF-8
            raise CheckpointError(f"checkpoint {path} is not JSON ({str(e)[:80]}); {_RESET_HINT}") from None
        problem = Checkpoint._problem(data)
        if problem:
            raise CheckpointError(f"checkpoint {path}: {problem}; {_RESET_HINT}")
        return Checkpoint(**data)

    @staticmethod
    def _problem(data: object) -> str | None:
        """What is wrong with a decoded checkpoint, or None."""
        if not isinstance(data, dict):
            return f"expected a JSON object, got {type(data).__name__}"
        names = {f.name for f in fields(Checkpoint)}
        unknown = sorted(str(k)[:40] for k in set(data) - names)
        if unknown:
            return f"unknown key(s) {unknown[:5]}"
        missing = sorted({"path", "inode", "offset", "lines"} - set(data))
        if missing:
            return f"missing key(s) {missing}"
        if not isinstance(data["path"], str):
            return "path: expected a string"
        for key in ("inode", "offset", "lines", "out_size"):
            v = data.get(key, 0)
            if key == "out_size" and v is None:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                return f"{key}: expected a non-negative integer, got {json.dumps(v)[:40]}"
        tail = data.get("tail", "")
        if not isinstance(tail, str) or len(tail) > 2 * _TAIL:
            return f"tail: expected at most {2 * _TAIL} hex digits"
        try:
            bytes.fromhex(tail)
        except ValueError:
            return "tail: not hex"
        return None

    def save(self, path: Path) -> None:
        """Write atomically: a new temporary file in the checkpoint's folder, fsync, rename.

        The temporary file is created with O_EXCL|O_NOFOLLOW, so a symlink planted at its
        name is never followed (a stale one is removed first: unlink does not follow links).
        The folder is fsynced after the rename so the new checkpoint survives a power cut."""
        write_atomic(path, json.dumps(asdict(self)).encode(), 0o666)


_RESET_HINT = ("delete it to start over (the output is then rewritten from the beginning of the input; "
               "lines from rotated-away input files are not in it again)")


@dataclass
class FollowStats:
    rotations: int = 0
    truncations: int = 0
    recovered_from_copy: int = 0
    restarts_resumed: int = 0
    restarts_lost: int = 0  # restart could not find where it stopped: read from the start
    restarts_tail_mismatch: int = 0  # the checkpoint's offset no longer ends its last line


class Follower:
    def __init__(self, path: str | Path, checkpoint: str | Path | None = None, *,
                 poll_interval: float = 0.2, rotate_grace: float = 1.0) -> None:
        self.path = Path(path)
        self.checkpoint_path = Path(checkpoint) if checkpoint else None
        self.poll_interval = poll_interval
        self.rotate_grace = rotate_grace
        self.stats = FollowStats()
        self._f = None
        self._inode = 0
        self._pos = 0  # bytes consumed from the current file (including the partial line)
        self._buf = b""
        self._tail = b""  # last bytes read from the current file
        self._uncommitted: deque[tuple[int, int, bytes]] = deque()  # (inode, end offset, line)
        self._emitted = 0
        # the rest of files we must finish first (path, offset, inode), read lazily in chunks
        self._backlog: list[tuple[Path, int, int]] = []
        self._rotated_at: float | None = None
        self.checkpoint: Checkpoint | None = None

    # -- opening and resuming ---------------------------------------------------------------
    def _open(self, offset: int = 0) -> bool:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return False
        st = os.fstat(f.fileno())
        if offset > st.st_size:
            offset = 0
        f.seek(offset)
        self._close()
        self._f, self._inode, self._pos, self._buf = f, st.st_ino, offset, b""
        self._tail = b""
        return True

    def _close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def _siblings(self) -> list[Path]:
        d = self.path.parent
        try:
            return [p for p in d.iterdir() if p != self.path and p.name.startswith(self.path.name) and p.is_file()]
        except OSError:
            return []

    def _read_rest(self, path: Path, offset: int, inode: int) -> None:
        """Queue the rest of path from offset on (a rotated file we must finish first)."""
        self._backlog.append((path, offset, inode))

    @staticmethod
    def _iter_rest(path: Path, offset: int) -> Iterator[tuple[bytes, int]]:
        """(line, end offset) of a finished file from offset on, read in bounded chunks;
        its last line counts even without a newline (nobody writes to it any more)."""
        try:
            f = open(path, "rb")
        except OSError as e:
            log.warning("cannot read the rest of rotated file %s: %s; its lines after byte %d are skipped",
                        path, e.strerror or e, offset)
            return
        with f:
            f.seek(offset)
            pos, buf = offset, b""
            while True:
                data = f.read(_CHUNK)
                if not data:
                    break
                buf += data
                parts = buf.split(b"\n")
                buf = parts.pop()
                for part in parts:
                    pos += len(part) + 1
                    yield part + b"\n", pos
            if buf:
                yield buf, pos + len(buf)

    def _tail_matches(self, path: Path, offset: int, tail: bytes) -> bool:
        """Whether the bytes of path just before offset are tail (the end of the last line
        emitted): only then does offset still mean "right after that line"."""
        if not tail:  # checkpoints always store one; be strict about a hand-made one
            tail = b"\n"
        if offset < len(tail):
            return False
        try:
            with open(path, "rb") as f:
                return os.pread(f.fileno(), len(tail), offset - len(tail)) == tail
        except OSError:
            return False

    def _find_copy(self, offset: int, tail: bytes) -> Path | None:
        """The sibling holding our file's old content: its bytes before offset are tail."""
        for p in self._siblings():
            try:
                st = p.stat()
            except OSError:
                continue
            if st.st_size >= offset and st.st_ino != self._inode and self._tail_matches(p, offset, tail):
                return p
        return None

    def _resume(self) -> None:
        ck = Checkpoint.load(self.checkpoint_path) if self.checkpoint_path else None
        self.checkpoint = ck
        if ck is None:
            self._open(0)
            return
        self._emitted = ck.lines
        tail = bytes.fromhex(ck.tail)
        try:
            st = self.path.stat()
        except FileNotFoundError:
            st = None
        if st is not None and st.st_ino == ck.inode:
            if st.st_size >= ck.offset and self._tail_matches(self.path, ck.offset, tail):
                self._open(ck.offset)
                self.stats.restarts_resumed += 1
                return
            # Same inode, but the offset no longer ends the last emitted line: the file was
            # truncated (copytruncate) while we were down, and maybe refilled past the offset.
            self.stats.restarts_tail_mismatch += 1
            copy = self._find_copy(ck.offset, tail)
            if copy is not None:
                self._read_rest(copy, ck.offset, copy.stat().st_ino)
                self.stats.recovered_from_copy += 1
                self.stats.restarts_resumed += 1
                log.warning("%s was truncated while stopped (now %d bytes, checkpoint at byte %d): "
                            "finishing its copy %s from byte %d, then reading %s from byte 0",
                            self.path, st.st_size, ck.offset, copy, ck.offset, self.path)
            else:
                self.stats.restarts_lost += 1
                log.warning("%s was truncated while stopped (now %d bytes, checkpoint at byte %d) and no "
                            "copy of the old file holding byte %d is next to it: reading %s from byte 0; "
                            "lines the old file got after the checkpoint are not recoverable",
                            self.path, st.st_size, ck.offset, ck.offset, self.path)
            self._open(0)
            return
        for p in self._siblings():  # renamed while we were down
            try:
                if p.stat().st_ino != ck.inode:
                    continue
            except OSError:
                continue
            if self._tail_matches(p, ck.offset, tail):
                self._read_rest(p, ck.offset, ck.inode)
                self.stats.restarts_resumed += 1
            else:
                self.stats.restarts_tail_mismatch += 1
                self.stats.restarts_lost += 1
                log.warning("%s (the file of the checkpoint, rotated) no longer ends a line at byte %d: "
                            "it is skipped; reading %s from byte 0", p, ck.offset, self.path)
            break
        else:
            self.stats.restarts_lost += 1
            log.warning("the file of the checkpoint (inode %d) is gone: reading %s from byte 0; lines it "
                        "got after byte %d are not recoverable", ck.inode, self.path, ck.offset)
        self._open(0)

    # -- reading ----------------------------------------------------------------------------
    def _drain(self) -> list[bytes]:
        if self._f is None:
            return []
        data = self._f.read()
        if not data:
            return []
        self._pos += len(data)
        self._tail = (self._tail + data)[-_TAIL:]
        buf = self._buf + data
        parts = buf.split(b"\n")
        self._buf = parts.pop()
        lines = [p + b"\n" for p in parts]
        end = self._pos - len(self._buf)
        # record the end offset of every line for checkpoints (in reverse from the last)
        offs = []
        for line in reversed(lines):
            offs.append(end)
            end -= len(line)
        offs.reverse()
        for line, off in zip(lines, offs):
            self._uncommitted.append((self._inode, off, line))
        return lines

    def _tail_mismatch(self) -> bool:
        """Truncated and refilled past our offset between two polls: the bytes before it moved."""
        if self._f is None or not self._tail:
            return False
        try:
            return os.pread(self._f.fileno(), len(self._tail), self._pos - len(self._tail)) != self._tail
        except OSError:
            return True

    def _flush_partial(self) -> list[bytes]:
        """The writer left this file for good: its unterminated last line is a line too."""
        if not self._buf:
            return []
        line, self._buf = self._buf, b""
        self._uncommitted.append((self._inode, self._pos, line))
        return [line]

    def _check_rotation(self) -> list[bytes]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []  # renamed away, new one not created yet: keep reading the old fd
        if self._f is None:
            return [] if not self._open(0) else self._drain()
        if st.st_ino != self._inode:
            now = time.monotonic()
            if self._rotated_at is None:
                self._rotated_at = now
            # let the writer finish the old file unless the new one already has data
            if st.st_size == 0 and now - self._rotated_at < self.rotate_grace:
                return []
            out = self._drain() + self._flush_partial()
            self._rotated_at = None
            self.stats.rotations += 1
            self._open(0)
            return out + self._drain()
        if st.st_size < self._pos or self._tail_mismatch():  # copytruncate
            self.stats.truncations += 1
            copy = self._find_copy(self._pos, self._tail) if self._tail else None
            out: list[bytes] = []
            if copy is not None:
                self.stats.recovered_from_copy += 1
                cst = copy.stat()
                with open(copy, "rb") as f:
                    f.seek(self._pos)
                    rest = f.read()
                # Lines finished from the copy checkpoint as (copy inode, offset in the copy):
                # a restart finds the copy by inode, reads its rest, then the file from 0.
                pos = self._pos - len(self._buf)
                for line in (self._buf + rest).splitlines(keepends=True):
                    pos += len(line)
                    out.append(line)
                    self._uncommitted.append((cst.st_ino, pos, line))
                self._buf = b""
            else:
                out = self._flush_partial()
            self._f.seek(0)
            self._pos, self._buf, self._tail = 0, b"", b""
            return out + self._drain()
        return []

    def lines(self, stop: Callable[[], bool] | None = None) -> Iterator[bytes | None]:
        """Yield lines forever (until stop() is true); None after an idle poll interval."""
        self._resume()
        while True:
            if self._backlog:
                path, offset, ino = self._backlog.pop(0)
                for line, off in self._iter_rest(path, offset):
                    self._uncommitted.append((ino, off, line))
                    yield line
                continue
            got = (self._drain() if not self._tail_mismatch() else []) or self._check_rotation()
            if got:
                yield from got
                continue
            if stop is not None and stop():
                return
            yield None
            time.sleep(self.poll_interval)

    # -- checkpoints ------------------------------------------------------------------------
    def commit(self, n: int, out_size: int | None = None) -> None:
        """The consumer has durably emitted the next n lines yielded; checkpoint after them."""
        last = None
        for _ in range(n):
            last = self._uncommitted.popleft()
        self._emitted += n
        if last is None or self.checkpoint_path is None:
            return
        inode, off, line = last
        tail = line[-_TAIL:]
        self.checkpoint = Checkpoint(str(self.path), inode, off, self._emitted, out_size, tail.hex())
        try:
            self.checkpoint.save(self.checkpoint_path)
        except OSError as e:
            raise OutputError(f"cannot write checkpoint {self.checkpoint_path}: {e.strerror or e}") from None

    def close(self) -> None:
        self._close()
