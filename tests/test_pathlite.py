"""pathlite must answer exactly as os.path does, for every path (and fsutil.make_dirs as
os.makedirs(exist_ok=True) does)."""

from __future__ import annotations

import os
import posixpath

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ociruntime import fsutil, pathlite

pytestmark = pytest.mark.pure  # no root, no kernel state: the unprivileged tier

#: Paths made of the parts that matter to these functions: slashes, dots, names.
paths = st.lists(st.sampled_from(["/", "//", ".", "..", "a", "b", "c.d", "..."]), max_size=8).map(
    "".join
)


@given(paths, st.lists(paths, max_size=3))
def test_join(path, parts):
    assert pathlite.join(path, *parts) == posixpath.join(path, *parts)


@given(paths)
@example("///")
@example("//a/..")
def test_split_and_normalise(path):
    assert pathlite.basename(path) == posixpath.basename(path)
    assert pathlite.dirname(path) == posixpath.dirname(path)
    assert pathlite.normpath(path) == posixpath.normpath(path)
    assert pathlite.abspath(path) == posixpath.abspath(path)


@given(paths, paths)
@example("/a/b/c", "/a")
@example("/a", "/a/b/c")
@example("a/../b", "b/c")
def test_relpath_and_isabs(path, start):
    assert pathlite.isabs(path) == posixpath.isabs(path)
    if path and start:  # os.path.relpath refuses an empty one
        assert pathlite.relpath(path, start) == posixpath.relpath(path, start)


def test_make_dirs_as_os_makedirs(tmp_path):
    target, theirs = tmp_path / "a" / "b" / "c", tmp_path / "os" / "b" / "c"
    fsutil.make_dirs(str(target), 0o700)
    os.makedirs(theirs, 0o700, exist_ok=True)
    for mine, other in ((target, theirs), (target.parent, theirs.parent)):
        assert mine.is_dir() and mine.stat().st_mode == other.stat().st_mode
    fsutil.make_dirs(str(target), 0o700)  # exists: fine
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        fsutil.make_dirs(str(tmp_path / "file"))
    with pytest.raises(NotADirectoryError):
        fsutil.make_dirs(str(tmp_path / "file" / "below"))


def test_exists_and_isdir(tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "dir").mkdir()
    os.symlink("dir", tmp_path / "to-dir")
    os.symlink("nothing", tmp_path / "dangling")
    for name in ("file", "dir", "to-dir", "dangling", "absent", "file/below", "nul\0"):
        path = str(tmp_path / name)
        assert pathlite.exists(path) == os.path.exists(path), name
        assert pathlite.isdir(path) == os.path.isdir(path), name
        assert pathlite.isfile(path) == os.path.isfile(path), name
