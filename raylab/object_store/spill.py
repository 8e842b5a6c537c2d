"""Spilling: primary copies that do not fit in memory go to files, and come back.

When a node's object store is full, the store keeps the primary copies (the
only copy the owner counts on) by SPILLING them to disk: one file per object
in a private directory of the session, named after the object id. A later
``get`` RESTORES the object: the file is read back into a new block of the
arena. The file is deleted when the object is freed, and the whole directory
at shutdown.

These are plain blocking functions: the raylet runs them in a thread, so a
100 MB write does not stall its event loop, and reports back to the store
(``ObjectStoreCore.spilled`` / ``restored``) when they finish.
"""
from __future__ import annotations

import os
import shutil


def make_spill_dir(path: str) -> str:
    """Create the spill directory, readable by this user only (0700)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)  # makedirs' mode is masked by the umask; be explicit
    return path


def spill_path(spill_dir: str, object_id: bytes) -> str:
    """The file that holds ``object_id`` while it is spilled."""
    return os.path.join(spill_dir, object_id.hex())


def write_spill_file(path: str, block: memoryview) -> None:
    """Write one object's block to ``path`` (a new file, mode 0600).

    Writes straight from the arena: no intermediate copy of the object.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        done = 0
        while done < block.nbytes:  # os.write may write less than asked
            done += os.write(fd, block[done:])
    except BaseException:
        os.close(fd)
        delete_spill_file(path)  # a half-written file is worth nothing
        raise
    os.close(fd)


def read_spill_file(path: str, block: memoryview) -> None:
    """Read the spilled object at ``path`` into ``block`` (its new place in the arena)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size != block.nbytes:
            raise OSError(f"spill file {path} holds {size} bytes, expected {block.nbytes}")
        done = 0
        while done < size:
            n = os.readv(fd, [block[done:]])
            if n == 0:
                raise OSError(f"spill file {path} ended early, at byte {done} of {size}")
            done += n
    finally:
        os.close(fd)


def delete_spill_file(path: str) -> None:
    """Remove a spill file; a file already gone is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_spill_dir(path: str) -> None:
    """At shutdown: delete every spill file and the directory itself."""
    shutil.rmtree(path, ignore_errors=True)
