"""Read Suricata EVE (JSON lines) from a file: once, or following it like ``tail -F``.

``Follower`` survives both rotation styles and restarts:

- rename + create (logrotate's default, Suricata reopening on SIGHUP): the old file is read to
  its end (the writer may still append to it until it reopens), then the new file from byte 0;
- copytruncate: when the file shrinks below our offset, the bytes we had not read yet are in
  the copy; a sibling file whose bytes just before our offset equal the last bytes we read is
  taken as that copy and read from our offset first, then the truncated file from byte 0;
- restart: a checkpoint (inode, offset and lines emitted, written atomically) is only
  advanced by ``commit(n)`` once the consumer has durably emitted n more lines, so a restart
  resumes exactly after the last emitted line. If the checkpointed inode is no longer at the
  path (rotated while we were down), the directory is searched for that inode and its rest is
  read first.

Lines are bytes, newline included (the last line of a file may lack one). ``lines()`` yields
``None`` when it has waited one poll interval without new data, so a consumer with a timer
(bounded waits for verdicts) gets control back.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

_TAIL = 64  # bytes kept to recognise the copy of a copytruncate'd file


def read_lines(path: str | Path) -> Iterator[bytes]:
    """Every line of a finished file, as raw bytes (newline kept)."""
    with open(path, "rb") as f:
        yield from f


@dataclass
class Checkpoint:
    path: str
    inode: int
    offset: int  # byte offset just after the last emitted line, in the file with that inode
    lines: int  # lines emitted in total
    out_size: int | None = None  # size of the output file after those lines (exactly-once)
    tail: str = ""  # hex of up to 64 bytes before offset

    @staticmethod
    def load(path: Path) -> Checkpoint | None:
        try:
            return Checkpoint(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as e:
            raise ValueError(f"checkpoint {path} is unreadable ({e}); delete it to start from the beginning") from e

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


@dataclass
class FollowStats:
    rotations: int = 0
    truncations: int = 0
    recovered_from_copy: int = 0
    restarts_resumed: int = 0
    restarts_lost: int = 0  # restart could not find where it stopped: read from the start


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
        self._backlog: list[bytes] = []  # lines recovered at start/truncation, yielded first
        self._backlog_pos: list[tuple[int, int]] = []
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
        """Queue the complete lines of path from offset on (a rotated file we must finish)."""
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
        pos = offset
        for line in data.splitlines(keepends=True):
            pos += len(line)
            self._backlog.append(line)
            self._backlog_pos.append((inode, pos))

    def _find_copy(self, offset: int, tail: bytes) -> Path | None:
        for p in self._siblings():
            try:
                st = p.stat()
                if st.st_size <= offset or st.st_ino == self._inode:
                    continue
                with open(p, "rb") as f:
                    f.seek(offset - len(tail))
                    if f.read(len(tail)) == tail:
                        return p
            except OSError:
                continue
        return None

    def _resume(self) -> None:
        ck = Checkpoint.load(self.checkpoint_path) if self.checkpoint_path else None
        self.checkpoint = ck
        if ck is None:
            self._open(0)
            return
        self._emitted = ck.lines
        try:
            st = self.path.stat()
        except FileNotFoundError:
            st = None
        if st is not None and st.st_ino == ck.inode and st.st_size >= ck.offset:
            self._open(ck.offset)
            self.stats.restarts_resumed += 1
            return
        tail = bytes.fromhex(ck.tail)
        if st is not None and st.st_ino == ck.inode:  # copytruncate while we were down
            copy = self._find_copy(ck.offset, tail)
            if copy is not None:
                self._read_rest(copy, ck.offset, copy.stat().st_ino)
                self.stats.recovered_from_copy += 1
                self.stats.restarts_resumed += 1
            else:
                self.stats.restarts_lost += 1
            self._open(0)
            return
        for p in self._siblings():  # renamed while we were down
            try:
                if p.stat().st_ino == ck.inode:
                    self._read_rest(p, ck.offset, ck.inode)
                    self.stats.restarts_resumed += 1
                    break
            except OSError:
                continue
        else:
            self.stats.restarts_lost += 1
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
                backlog, positions = self._backlog, self._backlog_pos
                self._backlog, self._backlog_pos = [], []
                for line, (ino, off) in zip(backlog, positions):
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
        self.checkpoint.save(self.checkpoint_path)

    def close(self) -> None:
        self._close()
