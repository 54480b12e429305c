"""
The store's lock per bar type: ``fcntl`` on local disks, a conditional PUT on S3.

A merge reads a bar type's files, writes one merged file and deletes the old ones. Two writers
doing that at once can each drop the other's new bars, so each takes this lock first.

On S3 the lock is an object, ``<folder>/.lock``, created with ``If-None-Match: *``: S3 (and
servers that follow it, such as MinIO) create it for exactly one caller. The object records
its owner and an expiry. A writer that finds an expired lock replaces it with
``If-Match: <etag>``, so of two writers that both found it expired, only one wins. A writer
removes the lock only if it still holds the version it wrote. Other object stores have no
such primitive here: writes there are unlocked, and the docs say to give each node its own
bar types.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

from nautilus_backfill.errors import BackfillError

LOCK_NAME = ".lock"
TTL_S = 120.0  # longer than any merge takes; a writer killed while holding it costs this much
WAIT_S = 30.0  # by default; a backfill passes what is left of its deadline


class StoreLockTimeout(BackfillError):
    """Another writer held the lock for longer than this writer could wait."""


@contextlib.contextmanager
def store_lock(fs: Any, folder: str, local: bool, wait_s: float | None = None) -> Iterator[None]:
    """
    Hold the lock of one bar type's folder.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The store's filesystem.
    folder : str
        The bar type's folder.
    local : bool
        Whether `fs` is the local filesystem.
    wait_s : float, optional
        How long to wait for another writer (default ``WAIT_S``).

    Raises
    ------
    StoreLockTimeout
        If the lock stayed taken for `wait_s`.

    """
    wait = WAIT_S if wait_s is None else max(0.0, wait_s)
    if local:
        with _file_lock(os.path.join(folder, LOCK_NAME), wait):
            yield
    elif _is_s3(fs):
        lock = _S3Lock(fs, f"{folder}/{LOCK_NAME}")
        lock.acquire(wait)
        try:
            yield
        finally:
            lock.release()
    else:
        yield


def _is_s3(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return any(p in {"s3", "s3a"} for p in protocols) and hasattr(fs, "call_s3")


@contextlib.contextmanager
def _file_lock(path: str, wait: float) -> Iterator[None]:
    import fcntl

    deadline = time.monotonic() + wait
    with open(path, "a+") as handle:
        delay = 0.005
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreLockTimeout(
                        f"{path}: another writer held it for longer than {wait:.0f}s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _S3Lock:
    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.path = path
        self.bucket, self.key, _ = fs.split_path(path)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"

    def _put(self, **condition: str) -> bool:
        body = json.dumps({"owner": self.owner, "expires": time.time() + TTL_S}).encode()
        try:
            self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=body, **condition)
        except OSError:  # 412: the condition failed (s3fs raises FileExistsError or OSError)
            return False
        finally:
            self.fs.invalidate_cache(self.path)
        return True

    def _held(self) -> tuple[str, float, str] | None:
        # ETag, expiry and owner of the lock object, or None when there is none. The ETag is
        # read first: a body newer than it only makes the conditional call fail, never succeed
        # wrongly.
        try:
            info = self.fs.info(self.path, refresh=True)
        except FileNotFoundError:
            return None
        etag = str(info.get("ETag", ""))
        modified = info.get("LastModified")
        expires = modified.timestamp() + TTL_S if hasattr(modified, "timestamp") else 0.0
        owner = "?"
        try:
            doc = json.loads(self.fs.cat_file(self.path))
            expires, owner = float(doc["expires"]), str(doc["owner"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not a lock this code wrote: it expires TTL_S after it was written
        return etag, expires, owner

    def acquire(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        delay = 0.02
        while True:
            if self._put(IfNoneMatch="*"):
                return
            held = self._held()
            if held is not None:
                etag, expires, _ = held
                # Only one of several writers that found it expired gets past If-Match.
                if etag and expires < time.time() and self._put(IfMatch=etag):
                    return
            if time.monotonic() >= deadline:
                owner = held[2] if held else "?"
                raise StoreLockTimeout(
                    f"{self.path}: held by {owner} for longer than {wait:.0f}s (a lock "
                    f"expires {TTL_S:.0f}s after it was taken)"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def release(self) -> None:
        held = self._held()
        if held is None or held[2] != self.owner:
            return  # expired and taken over: not ours to remove
        with contextlib.suppress(OSError):
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=held[0])
        self.fs.invalidate_cache(self.path)
