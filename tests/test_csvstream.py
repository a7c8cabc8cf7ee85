"""Tests for reading CSV files block by block with exact physical line numbers (app.reader.csvstream)."""

from __future__ import annotations

import csv
import io
import random

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.reader import csvscan, csvstream
from app.reader.csvstream import Reject

BIG = 1 << 20


def read_all(path, block_size=BIG, **kwargs):
    """Everything stream() yields, flattened: (column names, rows, start lines, rejects, bytes_read per chunk)."""
    names, rows, lines, rejects, progress = None, [], [], [], []
    for chunk in csvstream.stream(str(path), block_size, **kwargs):
        assert len(chunk.lines) == chunk.batch.num_rows
        names = chunk.batch.schema.names
        columns = chunk.batch.to_pydict()
        rows += [list(row) for row in zip(*columns.values())]
        lines += [int(n) for n in chunk.lines]
        rejects += chunk.invalid
        progress.append(chunk.bytes_read)
    return names, rows, lines, rejects, progress


def python_csv(data: bytes):
    """What Python's csv module makes of the same bytes: rows, the line each starts on, and wrong-width rows."""
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    header = next(reader)
    rows, lines, rejects = [], [], []
    previous = reader.line_num
    for row in reader:
        start, previous = previous + 1, reader.line_num
        if not row:  # a blank line
            continue
        if len(row) != len(header):
            rejects.append(Reject(start, f"expected {len(header)} fields, found {len(row)}"))
            continue
        rows.append(row)
        lines.append(start)
    return header, rows, lines, rejects


def test_quoted_commas_doubled_quotes_and_embedded_newlines(tmp_path):
    data = (
        b"id,name,note\n"
        b'1,"Smith, John","He said ""hi"""\n'
        b'2,"two\nlines","crlf\r\ninside"\n'
        b'3,plain,"a\n\nb"\n'
        b'4,"",last\n'
    )
    path = tmp_path / "quoted.csv"
    path.write_bytes(data)
    names, rows, lines, rejects, _ = read_all(path)
    assert names == ["id", "name", "note"]
    assert rows == [
        ["1", "Smith, John", 'He said "hi"'],
        ["2", "two\nlines", "crlf\r\ninside"],
        ["3", "plain", "a\n\nb"],
        ["4", "", "last"],
    ]
    assert lines == [2, 3, 6, 9]
    assert rejects == []
    assert (rows, lines) == python_csv(data)[1:3]


def test_crlf_and_lf_files_give_the_same_rows(tmp_path):
    lf = b'id,title,year\n1,Heat,1995\n2,"Smith, John",2001\n3,"say ""x""",\n4,Last,2020'
    (tmp_path / "lf.csv").write_bytes(lf)
    (tmp_path / "crlf.csv").write_bytes(lf.replace(b"\n", b"\r\n") + b"\r\n")
    expected = [["1", "Heat", "1995"], ["2", "Smith, John", "2001"], ["3", 'say "x"', ""], ["4", "Last", "2020"]]
    for name in ("lf.csv", "crlf.csv"):
        names, rows, lines, rejects, _ = read_all(tmp_path / name)
        assert (names, rows, lines, rejects) == (["id", "title", "year"], expected, [2, 3, 4, 5], [])


def test_utf8_bom_is_dropped_from_first_column_name(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfbudget,title\n100,Heat\n")
    assert csvstream.read_header(str(path)) == ["budget", "title"]
    names, rows, lines, _, _ = read_all(path)
    assert names == ["budget", "title"]
    assert (rows, lines) == ([["100", "Heat"]], [2])


def test_read_header_of_quoted_header_and_empty_file(tmp_path):
    path = tmp_path / "h.csv"
    path.write_bytes(b'"a,b",c\r\n1,2\r\n')
    assert csvstream.read_header(str(path)) == ["a,b", "c"]
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert csvstream.read_header(str(empty)) == []


def test_non_ascii_text_is_intact(tmp_path):
    values = ["Amélie", "千と千尋の神隠し", "Ørsted – “quoted”", "🎬 film", "Ελληνικά"]
    text = "id,title\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values))
    path = tmp_path / "utf8.csv"
    path.write_bytes(text.encode("utf-8"))
    _, rows, lines, _, _ = read_all(path)
    assert rows == [[str(i), v] for i, v in enumerate(values)]
    assert lines == [2, 3, 4, 5, 6]


def test_header_only_file_has_no_rows(tmp_path):
    path = tmp_path / "header.csv"
    path.write_bytes(b"a,b,c\n")
    _, rows, lines, rejects, _ = read_all(path)
    assert (rows, lines, rejects) == ([], [], [])


def test_rows_with_wrong_field_count_are_set_aside_with_their_line(tmp_path):
    data = (
        b"a,b,c\n"
        b"1,2,3\n"  # line 2
        b"4,5,6,7\n"  # line 3: one too many
        b"8,9,10\n"  # line 4
        b"11,12\n"  # line 5: one too few
        b'"x\ny",1,2,3\n'  # lines 6-7: too many, spanning two lines
        b'13,"multi\nline",15\n'  # lines 8-9
        b"16,17,18,19,20\n"  # line 10
        b"21,22,23\n"
    )  # line 11
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    _, rows, lines, rejects, _ = read_all(path)
    assert rejects == [
        Reject(3, "expected 3 fields, found 4"),
        Reject(5, "expected 3 fields, found 2"),
        Reject(6, "expected 3 fields, found 4"),
        Reject(10, "expected 3 fields, found 5"),
    ]
    assert rejects[0].as_dict() == {"line": 3, "reason": "expected 3 fields, found 4"}
    assert rows == [["1", "2", "3"], ["8", "9", "10"], ["13", "multi\nline", "15"], ["21", "22", "23"]]
    assert lines == [2, 4, 8, 11]
    assert (rows, lines, rejects) == python_csv(data)[1:]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_blank_lines_are_skipped_but_counted(tmp_path, newline):
    data = newline.join([b"a,b", b"", b"1,2", b"", b"", b'"x\ny",4', b"", b"5,6", b"", b""])
    path = tmp_path / "blank.csv"
    path.write_bytes(data)
    _, rows, lines, rejects, _ = read_all(path)
    assert rows == [["1", "2"], ["x\ny", "4"], ["5", "6"]]
    assert lines == [3, 6, 9]
    assert rejects == []


def generated_file(seed: int, rows: int, newline: str) -> bytes:
    """A file mixing plain, quoted, multi-line, non-ASCII, blank and wrong-width rows, every row < 1 KiB."""
    rng = random.Random(seed)
    out = [f"id,name,note{newline}"]
    for i in range(rows):
        kind = rng.random()
        if kind < 0.03:
            out.append(newline)
        elif kind < 0.06:
            out.append(f'{i},extra,"x\ny",z{newline}')
        elif kind < 0.08:
            out.append(f"{i},short{newline}")
        else:
            name = rng.choice(
                ["plain", "Ümlaut café", '"quoted, comma"', '"dbl ""q"""', '"multi\nline\nvalue"', "日本語", '""']
            )
            note = "n" * rng.randint(0, 200)
            if rng.random() < 0.1:
                note = '"' + "a\n" * rng.randint(1, 5) + '"'
            out.append(f"{i},{name},{note}{newline}")
    return "".join(out).encode("utf-8")


@pytest.mark.parametrize("seed, newline", [(0, "\n"), (1, "\r\n"), (4, "\r\n"), (11, "\n")])
def test_small_blocks_match_python_csv_exactly(tmp_path, seed, newline):
    # Newlines inside quoted values here are LF only; a CRLF inside quotes on a block boundary is the xfail below.
    data = generated_file(seed, 3000, newline)
    path = tmp_path / "generated.csv"
    path.write_bytes(data)
    header, rows, lines, rejects = python_csv(data)
    assert len(rejects) > 50 and len(rows) > 2500  # the comparison covers many bad rows

    names, got_rows, got_lines, got_rejects, progress = read_all(path, block_size=1024)

    assert len(progress) > 100  # many chunks, so rows and rejects cross many block boundaries
    assert names == header
    assert got_rows == rows
    assert got_lines == lines
    assert got_rejects == rejects
    assert progress == sorted(progress)
    assert progress[-1] == len(data)


@pytest.mark.xfail(
    reason="BUG: a CRLF inside a quoted value that straddles a block boundary loses its LF "
    "(PyArrow apache/arrow#51368), corrupting the value and shifting every later line "
    "number by one; happens at the config minimum BLOCK_SIZE of 64 KiB",
    strict=True,
)
def test_crlf_inside_quotes_on_a_block_boundary(tmp_path):
    block = 64 * 1024
    head = b'id,name\r\n1,"'
    pad = block - 1 - len(head)  # the value's \r is the block's last byte, its \n the next block's first
    data = head + b"x" * pad + b'\r\ny"\r\n2,z\r\n'
    assert data.index(b"\r\ny") == block - 1
    path = tmp_path / "straddle.csv"
    path.write_bytes(data)
    _, rows, lines, rejects, _ = read_all(path, block_size=block)
    assert rows == [["1", "x" * pad + "\r\ny"], ["2", "z"]]
    assert lines == [2, 4]


def test_bytes_read_follows_the_rows_handed_out_not_pyarrows_read_ahead(tmp_path):
    from moviecat.generate import generate_movies

    path = tmp_path / "m.csv"
    generate_movies(str(path), rows=20_000, seed=2)
    size = path.stat().st_size
    seen = [chunk.bytes_read for chunk in csvstream.stream(str(path), 64 * 1024)]
    assert seen == [min((i + 1) * 64 * 1024, size) for i in range(len(seen))] and seen[-1] == size
    assert len(seen) > 50  # PyArrow's own file position would be near the end from the first chunk


def test_a_header_longer_than_a_block_is_an_error_not_an_empty_file(tmp_path):
    path = tmp_path / "wide.csv"
    columns = ["title"] + [f"extra_column_{i:06d}" for i in range(6000)]  # a 126 kB header
    path.write_text(",".join(columns) + "\n" + ",".join(["A"] + [""] * 6000) + "\n")
    with pytest.raises(ValueError, match="header is longer than a read block"):
        list(csvstream.stream(str(path), 64 * 1024))
    assert [chunk.batch.num_rows for chunk in csvstream.stream(str(path), 1 << 20)] == [1]


def test_coalesced_chunks_hold_the_same_rows_lines_and_rejects(tmp_path):
    from moviecat.generate import generate_movies

    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=3_000, seed=5)
    with open(path, "a", newline="") as f:
        f.write("only,three,fields\r\n")  # a reject in the last block
    chunks = list(csvstream.stream(str(path), 64 * 1024))
    joined = list(csvstream.coalesce(iter(chunks), rows=1000))
    assert 1 < len(joined) < len(chunks)
    assert all(c.batch.num_rows >= 1000 for c in joined[:-1])
    for field in ("title", "release_date", "languages"):
        assert sum((c.batch.column(field).to_pylist() for c in joined), []) == sum(
            (c.batch.column(field).to_pylist() for c in chunks), []
        )
    assert np.concatenate([c.lines for c in joined]).tolist() == np.concatenate([c.lines for c in chunks]).tolist()
    assert [r for c in joined for r in c.invalid] == [r for c in chunks for r in c.invalid] != []
    assert (joined[-1].bytes_read, joined[-1].next_line) == (chunks[-1].bytes_read, chunks[-1].next_line)


# -- rows larger than a block, and quotes that never close ---------------------------------------------------

BLOCK = 64 * 1024  # the smallest BLOCK_SIZE: big rows are cheap to make
UNCLOSED = "unclosed quote: the quote opened on line {} is never closed, it runs to the end of the file"


@pytest.fixture
def big_fields():
    """Python's csv module refuses fields over 128 KiB unless told otherwise: the reference needs bigger."""
    limit = csv.field_size_limit(1 << 30)
    yield
    csv.field_size_limit(limit)


def big_value(size: int, rng: random.Random) -> str:
    """A quoted value of about `size` bytes with commas, doubled quotes and newlines in it."""
    words = ["word", "comma,", 'say ""hi""', "line\nbreak", "été"]
    parts, length = [], 0
    while length < size:
        parts.append(rng.choice(words))
        length += len(parts[-1]) + 1
    return '"' + " ".join(parts) + '"'


def chunks_of(path, **kwargs):
    return list(csvstream.stream(str(path), BLOCK, **kwargs))


def test_a_row_three_blocks_long_is_read_alone_and_every_line_after_it_stays_exact(tmp_path, big_fields):
    rng = random.Random(3)
    head = "".join(f"{i},name {i},note\n" for i in range(3000))  # lines 2-3001
    big = f"3000,{big_value(3 * BLOCK, rng)},after the big value\n"  # line 3002, and its own newlines
    tail = "".join(f'{i},"two\nlines",x\n' for i in range(3001, 6000)) + "6000,short\n"
    data = ("id,name,note\n" + head + big + tail).encode()
    path = tmp_path / "big.csv"
    path.write_bytes(data)

    names, rows, lines, rejects, progress = read_all(path, block_size=BLOCK)

    header, want_rows, want_lines, want_rejects = python_csv(data)
    assert (names, rows, lines, rejects) == (header, want_rows, want_lines, want_rejects)
    assert rows[3000][1] == big.split(",", 1)[1].rsplit(",", 1)[0][1:-1].replace('""', '"')
    assert lines[3000:3002] == [3002, 3002 + big.count("\n")]
    assert rejects == [Reject(3002 + big.count("\n") + 2 * 2999, "expected 3 fields, found 2")]
    big_chunk = [c for c in chunks_of(path) if c.batch.num_rows == 1 and c.lines[0] == 3002]
    assert len(big_chunk) == 1  # the big row came alone
    assert progress == sorted(progress) and progress[-1] == len(data)


def test_the_first_row_and_the_last_row_may_be_the_big_ones(tmp_path, big_fields):
    rng = random.Random(4)
    for name, body in {
        "first": f"1,{big_value(2 * BLOCK, rng)},x\n2,b,y\n",
        "last": f"1,a,x\n2,{big_value(2 * BLOCK, rng)},y",  # and no line end after it
        "only": f"1,{big_value(5 * BLOCK, rng)},x\r\n",
    }.items():
        data = ("id,name,note\n" + body).encode()
        path = tmp_path / f"{name}.csv"
        path.write_bytes(data)
        assert read_all(path, block_size=BLOCK)[:4] == python_csv(data), name


@pytest.mark.parametrize("seed, newline", [(21, "\n"), (22, "\r\n"), (23, "\n")])
def test_files_with_big_rows_here_and_there_match_python_csv_exactly(tmp_path, big_fields, seed, newline):
    rng = random.Random(seed)
    header = f"id,name,note{newline}"
    data = header
    big = 0
    for part in range(6):  # runs of small rows with big ones between, every third of the wrong width, two side by side
        data += generated_file(seed + part, 600, newline).decode()[len(header) :]
        for _ in range(1 + (part == 3)):
            value = big_value(rng.choice([3 * BLOCK // 2, 2 * BLOCK, 7 * BLOCK]), rng)
            data += ",".join(["big", value, "z"] + ["extra"] * (big % 3 == 2)) + newline
            big += 1
    data = data.encode()
    path = tmp_path / "mixed.csv"
    path.write_bytes(data)
    header, rows, want_lines, rejects = python_csv(data)

    names, got_rows, got_lines, got_rejects, progress = read_all(path, block_size=BLOCK)

    assert sum(len(v) > BLOCK for row in rows for v in row) == 5 and len(rejects) > 50
    assert (names, got_rows, got_lines, got_rejects) == (header, rows, want_lines, rejects)
    assert progress == sorted(progress) and progress[-1] == len(data)


def test_a_row_over_max_row_mb_is_rejected_with_its_line_and_the_rest_is_read(tmp_path):
    huge = '"' + "0123456789\n" * 150_000 + '"'  # 1.65 MB over 150 001 lines: more than MAX_ROW_MB=1
    data = ("id,name,note\n1,a,x\n" + f"2,{huge},y\n" + "3,b,z\n4,only two\n5,c,w\n").encode()
    path = tmp_path / "huge.csv"
    path.write_bytes(data)
    size = len(f"2,{huge},y\n")

    _, rows, lines, rejects, progress = read_all(path, block_size=BLOCK, max_row_mb=1)

    assert rows == [["1", "a", "x"], ["3", "b", "z"], ["5", "c", "w"]]
    assert lines == [2, 150_004, 150_006]
    assert rejects == [
        Reject(3, f"the row is larger than MAX_ROW_MB (1 MiB): {size:,} bytes, lines 3 to 150003"),
        Reject(150_005, "expected 3 fields, found 2"),
    ]
    assert progress == sorted(progress) and progress[-1] == len(data)


def test_a_read_resumed_after_or_at_a_big_row_gives_the_rest_exactly(tmp_path, big_fields):
    rng = random.Random(5)
    data = (
        "id,name,note\n"
        + "".join(f'{i},"n\n{i}",x\n' for i in range(2000))  # lines 2-4001
        + f"big,{big_value(3 * BLOCK, rng)},y\n"
        + "".join(f"{i},n{i},x\n" for i in range(2000))
    ).encode()
    path = tmp_path / "resume.csv"
    path.write_bytes(data)
    _, rows, lines, _, _ = read_all(path, block_size=BLOCK)
    big_line = lines.index(4002) and 4002
    after_big = lines[2001]
    assert rows[2000][0] == "big" and after_big > big_line + 10
    for start in (big_line, big_line + 1, after_big, lines[-1]):
        _, tail_rows, tail_lines, _, progress = read_all(path, block_size=BLOCK, start_line=start)
        first = next(i for i, line in enumerate(lines) if line >= start)
        assert (tail_rows, tail_lines) == (rows[first:], lines[first:]), start
        assert progress[-1] == len(data)


def test_a_row_over_max_row_mb_before_the_checkpoint_is_skipped_without_being_kept(tmp_path):
    data = ('id,name,note\n1,a,x\n2,"' + "z" * 1_200_000 + '",y\n3,b,z\n').encode()
    path = tmp_path / "huge.csv"
    path.write_bytes(data)
    _, rows, lines, rejects, _ = read_all(path, block_size=BLOCK, max_row_mb=1, start_line=4)
    assert (rows, lines, rejects) == ([["3", "b", "z"]], [4], [])


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_quote_never_closed_rejects_its_row_naming_the_line_and_the_rows_before_load(tmp_path, newline):
    cases = {
        # the rest of the file became one field of a row of the right width: PyArrow read it without a word
        "right width": ("title,overview", '5,"Heat,1995-12-15', 7),
        # ... or of the wrong width
        "wrong width": ("title,overview,year", '5,"Heat,1995-12-15', 7),
        # the row starts on line 7, the quote that never closes opens on line 8
        "later line": ("title,overview,year", '5,"two\nlines","Heat', 8),
        # a quote never closed with more than a block after it
        "a block after": ("title,overview", '5,"Heat' + newline + "x," * BLOCK, 7),
    }
    for name, (header, bad, quote_line) in cases.items():
        width = header.count(",") + 1
        good = [",".join([f"M{i}"] + [f"v{i}"] * (width - 1)) for i in range(5)]  # lines 2-6
        after = [",".join([f"N{i}"] + ["after"] * (width - 1)) for i in range(3)]
        data = newline.join([header, *good, bad, *after, ""]).encode()
        path = tmp_path / "unclosed.csv"
        path.write_bytes(data)
        _, rows, lines, rejects, progress = read_all(path, block_size=BLOCK)
        assert rows == [row.split(",") for row in good], name
        assert lines == [2, 3, 4, 5, 6], name
        assert rejects == [Reject(7, UNCLOSED.format(quote_line))], name
        assert progress[-1] == len(data), name


@pytest.mark.parametrize("ending", ['"\n"\n', '""""', '"a\n",""', '"x"\n\n', '"",\n'])
def test_a_file_ending_in_closed_quotes_is_not_taken_for_an_unclosed_one(tmp_path, ending):
    """Cases where the file's tail looks like an open quote would, but every quote closes."""
    data = ("a,b\n1,x\n2," + ending).encode()
    path = tmp_path / "closed.csv"
    path.write_bytes(data)
    _, rows, lines, rejects, _ = read_all(path, block_size=BLOCK)
    assert (rows, lines, rejects) == python_csv(data)[1:]


def test_old_mac_line_ends_with_a_big_row(tmp_path, big_fields):
    rng = random.Random(6)
    data = (
        "id,name\r"
        + "".join(f"{i},n{i}\r" for i in range(3000))
        + f"big,{big_value(2 * BLOCK, rng)}\r"
        + "".join(f"{i},m{i}\r" for i in range(10))
    ).encode()
    path = tmp_path / "cr.csv"
    path.write_bytes(data)
    _, rows, lines, rejects, _ = read_all(path, block_size=BLOCK)
    assert len(rows) == 3011 and rejects == []
    assert rows[3000][0] == "big" and rows[3001] == ["0", "m0"]
    big_lines = big_value(2 * BLOCK, random.Random(6)).count("\n")
    assert lines[3000:3002] == [3002, 3003 + big_lines]


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=1, max_size=40).map(lambda b: bytes(b'a,"\n\r'[c % 5] for c in b)), st.integers(1, 3))
def test_the_record_scanner_cuts_records_where_pyarrow_does(data, width):
    """csvscan.scan_record, record after record, against PyArrow's own parse of the same bytes."""
    names = [f"c{i}" for i in range(width)]
    whole, whole_count, _ = _pyarrow_rows(data, names)
    got, records, offset = [], [], 0
    while offset < len(data):
        record = csvscan.scan_record(io.BytesIO(data), offset, keep=1 << 20)
        records.append(record)
        rows, count, newlines = _pyarrow_rows(record.data, names)
        assert count == 1, (data, record)
        if record.unclosed_quote is None:  # (PyArrow drops the last line end of an unclosed row it skips)
            assert record.newlines == newlines  # the lines it spans, as stream() counts them from the parsed row
        got += rows
        offset = record.end
    assert (got, len(records)) == (whole, whole_count)
    assert all(r.unclosed_quote is None for r in records[:-1])


def _pyarrow_rows(data: bytes, names: list[str]):
    """PyArrow's rows of `data`, its count of records (skipped ones too), and the newlines inside them."""
    skipped = []
    table = pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
        parse_options=pacsv.ParseOptions(
            newlines_in_values=True,
            ignore_empty_lines=False,
            invalid_row_handler=lambda row: skipped.append(row) or "skip",
        ),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False),
    )
    rows = table.to_pylist()
    newlines = sum(v.count("\n") for row in rows for v in row.values()) + sum(r.text.count("\n") for r in skipped)
    return rows, table.num_rows + len(skipped), newlines


# The peak RSS of this process (VmHWM: unlike ru_maxrss, not carried over from the parent across exec).
PEAK_SCRIPT = """
import re, sys
import psutil
from app.reader import csvstream
base = psutil.Process().memory_info().rss
rows = sum(chunk.batch.num_rows for chunk in csvstream.stream(sys.argv[1], int(sys.argv[2])))
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
print(rows, peak - base)
"""


@pytest.mark.slow
def test_memory_follows_the_big_row_not_the_file(tmp_path):
    """A 150 MB file with an 8 MB row in its middle, read in 64 KiB blocks in a process of its own: the peak
    grows by a few times the row (parsing it needs its bytes, PyArrow's buffers and the column), never
    by the file. Measured: 45 MB, against 15 MB for a file of the same size without the big row."""
    import subprocess
    import sys

    from tests.support import REPO

    row = "1,plain name,some note that is not very long at all\n"
    big = 'big,"' + "a line of the overview, with commas\n" * 222_000 + '",end\n'
    path = tmp_path / "big-row.csv"
    with open(path, "w") as f:
        f.write("id,name,note\n" + row * 1_400_000 + big + row * 1_400_000)
    size = path.stat().st_size
    assert size > 150e6 and len(big) > 7.9e6
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(path), str(BLOCK)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows, growth = map(int, done.stdout.split())
    assert rows == 2_800_001
    assert growth < min(6 * len(big) + 20e6, size / 2), growth


def test_a_row_of_the_wrong_width_with_a_field_over_128_kib_is_rejected_not_fatal(tmp_path):
    """Its fields are counted as PyArrow counts them: Python's csv module would refuse a field that big."""
    data = ('title,overview\nA,b\nB,"' + "x" * 200_000 + '",extra\nC,d\n').encode()
    path = tmp_path / "wide-row.csv"
    path.write_bytes(data)
    _, rows, lines, rejects, _ = read_all(path)
    assert (rows, lines, rejects) == ([["A", "b"], ["C", "d"]], [2, 4], [Reject(3, "expected 2 fields, found 3")])
