"""Fixtures of the security tests (the bundles and `runtime` come from tests/conftest.py)."""

from __future__ import annotations

import pytest

from .common import Runc


@pytest.fixture
def runc():
    ref = Runc()
    try:
        yield ref
    finally:
        ref.cleanup()
