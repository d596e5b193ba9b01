"""pathlite must answer exactly as os.path does, for every path."""

from __future__ import annotations

import os
import posixpath

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ociruntime import pathlite

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


def test_exists_and_isdir(tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "dir").mkdir()
    os.symlink("dir", tmp_path / "to-dir")
    os.symlink("nothing", tmp_path / "dangling")
    for name in ("file", "dir", "to-dir", "dangling", "absent", "file/below", "nul\0"):
        path = str(tmp_path / name)
        assert pathlite.exists(path) == os.path.exists(path), name
        assert pathlite.isdir(path) == os.path.isdir(path), name
