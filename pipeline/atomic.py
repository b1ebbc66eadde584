"""Write outputs so that nothing is ever half-written at its final path.

Every stage writes into a temporary sibling of its output (same directory, so the final
``os.replace`` is an atomic rename on one file system) and renames it into place only when
the write completed. A crash leaves at most a ``.tmp-*`` sibling, which the next run removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

TMP_MARK = ".tmp-"


def _tmp_sibling(final: Path) -> Path:
    return final.with_name(f"{TMP_MARK}{final.name}.{uuid.uuid4().hex[:8]}")


def remove_stale_tmp(final: Path) -> None:
    """Delete leftovers of interrupted writes of ``final`` (``.tmp-<name>.*`` siblings)."""
    parent = final.parent
    if not parent.is_dir():
        return
    for stale in parent.glob(f"{TMP_MARK}{final.name}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``final`` (a file or a directory) into.

    On normal exit the temporary path replaces ``final`` (an existing ``final`` is removed
    first); on an exception it is deleted and ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(final)
    tmp = _tmp_sibling(final)
    try:
        yield tmp
        if final.exists() or final.is_symlink():
            # A directory cannot be os.replace()d over a non-empty one: move the old one
            # aside first so the final path is never missing for long nor half-written.
            old = _tmp_sibling(final)
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            _remove(tmp)
        raise


def write_text_atomic(final: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``final`` atomically, fsync'ed before the rename."""
    with atomic_path(final) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
