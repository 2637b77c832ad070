"""Provider JSON through orjson: the standard library's results, its errors, and storable cursor text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from googleapiclient.model import JsonModel
from hypothesis import given
from hypothesis import strategies as st

from integrations.base.json_body import dump_json, parse_json
from integrations.google.client import _JsonModel

# JSON values as providers send them: integers within 64 bits (see the module's note on larger ones).
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=30,
)


@given(_values, st.sampled_from([{}, {"ensure_ascii": False}, {"indent": 2}, {"separators": (",", ":")}]))
def test_parsing_gives_what_the_standard_library_gives(value: Any, style: dict[str, Any]) -> None:
    text = json.dumps(value, **style)
    assert parse_json(text.encode()) == json.loads(text)
    assert parse_json(text) == json.loads(text)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": NaN, "b": -Infinity}',  # not JSON, but the standard library reads it
        b'{"id": "\\ud800x"}',  # a lone surrogate escape
        '{"subject": "Sesi\u00f3n"}'.encode("utf-16"),  # a UTF-16 body with its byte order mark
    ],
)
def test_what_orjson_refuses_the_standard_library_still_reads(body: bytes) -> None:
    assert repr(parse_json(body)) == repr(json.loads(body))


@pytest.mark.parametrize("body", [b"", b"{", b"<html>Service Unavailable</html>", b'{"a": 1} trailing'])
def test_a_body_that_is_not_json_raises_the_standard_librarys_error(body: bytes) -> None:
    with pytest.raises(json.JSONDecodeError) as raised:
        parse_json(body)
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(body)
    assert str(raised.value) == str(expected.value)


@given(st.dictionaries(st.text(), st.lists(st.text(), max_size=2), max_size=20))
def test_cursor_text_reads_back_as_written_and_is_storable_as_utf8(index: dict[str, list[str]]) -> None:
    data = {"v": 1, "delta_link": "https://graph.example/delta?$deltatoken=x", "index": index}
    text = dump_json(data)
    assert json.loads(text) == data
    text.encode("utf-8")  # a database column of text takes it (lone surrogates come out escaped)


def test_what_orjson_cannot_write_is_written_by_the_standard_library() -> None:
    for value in ({"id": "\ud800"}, {1: "non-string key"}, [2**70]):
        text = dump_json(value)
        assert json.loads(text) == json.loads(json.dumps(value))
        text.encode("utf-8")


@given(_values)
def test_the_google_model_answers_as_the_librarys_own(value: Any) -> None:
    body = json.dumps(value).encode()
    assert _JsonModel().deserialize(body) == JsonModel().deserialize(body)


def test_the_google_model_leaves_a_body_that_is_not_json_as_text() -> None:
    assert _JsonModel().deserialize(b"Not Found") == JsonModel().deserialize(b"Not Found") == "Not Found"
