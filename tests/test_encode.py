"""BSON built from Arrow columns is byte for byte what `bson.encode` makes of the same documents."""

from __future__ import annotations

from datetime import datetime, timedelta

import bson
import pyarrow as pa
import pytest
from bson.raw_bson import RawBSONDocument
from hypothesis import given, settings
from hypothesis import strategies as st

from app.jobs.movies import prepare
from app.jobs.movies.encode import encode
from moviecat.generate import generate_movies
from tests.support import reference

TYPES = {"s": pa.string(), "i": pa.int64(), "f": pa.float64(), "d": pa.timestamp("ms"), "l": pa.list_(pa.string())}


def python_rows(columns: dict[str, pa.Array]) -> list[dict]:
    return pa.table(columns).to_pylist()


def assert_same_bytes(columns: dict[str, pa.Array]) -> None:
    encoded = encode(columns).to_pylist()
    expected = [bson.encode(row) for row in python_rows(columns)]
    assert encoded == expected


def test_every_kind_of_value_and_null():
    assert_same_bytes(
        {
            "title": pa.array(["Toy Story", None, "Amélie ü€𝄞", "", "nul\x00inside"]),
            "n": pa.array([1, None, 2**31, -(2**31) - 1, 2**31 - 1], pa.int64()),
            "f": pa.array([7.7, None, -0.0, 1e308, 5e-324]),
            "d": pa.array([0, None, -2_208_988_800_000, 1, -1], pa.timestamp("ms")),  # 1900-01-01 and around 1970
            "l": pa.array([["English", "Français"], None, [], ["x"] * 12, [""]], pa.list_(pa.string())),
            "_id": pa.array(["1995-10-30/Toy Story", "b", "c", "d", "e"]),
            "all_null": pa.nulls(5, pa.string()),
            "no_nulls": pa.array(["a", "b", "c", "d", "e"]),
        }
    )


def test_id_goes_first_and_the_rest_keep_their_order():
    columns = {"b": pa.array([1]), "_id": pa.array(["x"]), "a": pa.array(["y"])}
    [raw] = encode(columns).to_pylist()
    assert list(RawBSONDocument(raw)) == ["_id", "b", "a"]
    assert raw == bson.encode({"b": 1, "_id": "x", "a": "y"})


def test_a_sliced_block_encodes_only_its_rows():
    columns = {"s": pa.array(["a", None, "c", "d"])[1:3], "l": pa.array([["x"], ["y", "z"], None, []])[1:3]}
    assert_same_bytes(columns)


def test_lists_with_null_items_and_empty_rows():
    assert_same_bytes({"l": pa.array([[None, "a"], [], None, ["b", None]], pa.list_(pa.string()))})
    assert_same_bytes({"l": pa.array([[], []], pa.list_(pa.string()))})
    assert_same_bytes({"l": pa.array([None, None], pa.list_(pa.string()))})


def test_field_names_with_nul_are_refused():
    with pytest.raises(ValueError, match="NUL"):
        encode({"bad\x00name": pa.array(["x"])})


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
values = {
    "s": text,
    "i": st.integers(-(2**63), 2**63 - 1) | st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 0]),
    "f": st.floats(allow_nan=False),
    "d": st.integers(-62_135_596_800_000, 253_402_300_799_999).map(
        lambda ms: datetime(1970, 1, 1) + timedelta(milliseconds=ms)
    ),
    "l": st.lists(text, max_size=12),
}


@st.composite
def tables(draw):
    kinds = draw(st.lists(st.sampled_from(sorted(TYPES)), min_size=1, max_size=6))
    n = draw(st.integers(1, 8))
    columns = {}
    for i, kind in enumerate(kinds):
        column = draw(st.lists(st.none() | values[kind], min_size=n, max_size=n))
        columns[f"{kind}{i}"] = pa.array(column, TYPES[kind])
    if draw(st.booleans()):
        columns["_id"] = pa.array(draw(st.lists(text, min_size=n, max_size=n)))
    return columns


@settings(max_examples=300, deadline=None)
@given(tables())
@pytest.mark.slow
def test_random_tables_match_bson_encode(columns):
    assert_same_bytes(columns)


@pytest.mark.slow
def test_generated_movie_file_gives_the_reference_documents_byte_for_byte(tmp_path):
    # Nulls, non-ASCII, empty and many-language lists, dates before 1970, bad values, repeats: all in here.
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=20_000, seed=11)
    raw = []
    for block in prepare.prepare(str(path), block_size=256 * 1024, batch_size=1000):
        for batch in block:
            raw += [batch.documents[a:b] for a, b in zip(batch.bounds, batch.bounds[1:])]
    expected = [bson.encode(doc) for doc in reference.cleaned_rows(path)]
    assert len(raw) == len(expected) > 19_000
    assert raw == expected


def test_a_movie_too_big_for_mongodb_is_rejected_and_the_rest_written(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "MAX_DOCUMENT_BYTES", 2_000)  # MongoDB's is 16 MiB; the rule is the same
    path = tmp_path / "movies.csv"
    path.write_text("title,overview\nSmall,short\nHuge," + "x" * 3_000 + "\nAlso small,fine\n")
    [block] = list(prepare.prepare(str(path), block_size=1 << 20, batch_size=1000))
    [batch] = block
    assert batch.ids == ["undated/Small", "undated/Also small"]
    assert [r.as_dict() for r in batch.rejects] == [
        {"line": 3, "reason": "the movie is larger than MongoDB's 16 MB document limit"}
    ]
    assert batch.rows_read == 3 and batch.end_line == 5
    assert [bson.decode(batch.documents[a:b])["title"] for a, b in zip(batch.bounds, batch.bounds[1:])] == [
        "Small",
        "Also small",
    ]
