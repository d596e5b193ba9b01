"""jsonlite must read and write exactly what the json module does."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ociruntime import jsonlite

pytestmark = pytest.mark.pure  # no root, no kernel state: the unprivileged tier

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False,
                                                                        allow_infinity=False),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=25,
)  # fmt: skip


@given(json_values)
def test_round_trip_matches_json(value):
    assert jsonlite.dumps(value) == json.dumps(value)
    assert jsonlite.dumps(value, compact=True) == json.dumps(value, separators=(",", ":"))
    assert jsonlite.dumps_indent(value) == json.dumps(value, indent=2)
    assert jsonlite.loads(json.dumps(value, indent=1)) == json.loads(json.dumps(value))


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "[1,]", "NaN", "Infinity", "01"])
def test_invalid_documents_raise_value_error(text):
    with pytest.raises(ValueError):
        jsonlite.loads(text)


def test_error_position():
    with pytest.raises(json.JSONDecodeError) as err:
        jsonlite.loads('{\n  "a": 1,\n  "b": }')
    assert (err.value.lineno, err.value.colno) == (3, 8)
