"""An independent, plain-Python statement of the cleaning rules, to check the real pipeline against.

It shares no code with app/: csv module instead of PyArrow, row by row instead of whole columns.
"""

from __future__ import annotations

import ast
import csv
import io
import math
import re
from datetime import datetime

COLUMNS = (
    "budget",
    "homepage",
    "original_language",
    "original_title",
    "overview",
    "release_date",
    "revenue",
    "runtime",
    "status",
    "title",
    "vote_average",
    "vote_count",
    "production_company_id",
    "genre_id",
    "languages",
)
# The most UTF-8 bytes a text value may hold (docs/cleaning.md); numbers and dates have no maximum, and a
# column outside the contract may hold OTHER_MAX.
TEXT_MAX = {
    "title": 1024,
    "original_title": 1024,
    "overview": 262144,
    "homepage": 2048,
    "original_language": 64,
    "status": 64,
    "production_company_id": 256,
    "genre_id": 256,
    "languages": 4096,
}
OTHER_MAX = 4096
# Digits are ASCII digits: \d is ASCII-only under re.ASCII (Python's default would take '١٢٣' too).
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def to_int(value):
    s = value.strip()
    if re.fullmatch(r"[+-]?\d{1,18}", s, re.ASCII):
        return int(s)
    if DECIMAL.fullmatch(s):
        f = float(s)
        if math.isfinite(f) and f.is_integer() and abs(f) < 2**53:
            return int(f)
    return None


def to_float(value):
    s = value.strip()
    if DECIMAL.fullmatch(s):
        f = float(s)
        return f if math.isfinite(f) else None
    return None


def to_date(value):
    s = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s, re.ASCII):
            return datetime.strptime(s, "%Y-%m-%d")
        m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", s, re.ASCII)
        if m:
            return datetime(int(m.group(3)), int(m.group(1)), int(m.group(2)))
    except ValueError:
        pass
    return None


def to_languages(value):
    s = value.strip()
    if not s:
        return None
    try:
        parsed = ast.literal_eval(s)
    except (ValueError, SyntaxError):
        return None
    if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
        return parsed
    return None


def clean_row(row: dict) -> dict:
    def text(name):
        v = row.get(name)
        return v if v is not None and v.strip() != "" else None

    doc = {}
    for name in list(COLUMNS) + [n for n in row if n not in COLUMNS]:
        raw = row.get(name)
        if raw is None:
            doc[name] = None
        elif name in ("budget", "revenue", "runtime", "vote_count"):
            doc[name] = to_int(raw)
        elif name == "vote_average":
            doc[name] = to_float(raw)
        elif name == "release_date":
            doc[name] = to_date(raw)
        elif name == "languages":
            doc[name] = to_languages(raw)
        else:
            doc[name] = text(name)
    doc["title"] = row["title"].strip()
    date = doc["release_date"]
    doc["year"] = date.year if date else None
    # The year zero-padded to 4 digits (glibc's %Y would write year 99 as "99").
    day = f"{date.year:04d}-{date.month:02d}-{date.day:02d}" if date else "undated"
    doc["_id"] = f"{day}/{doc['title']}"
    return doc


def load(path) -> dict:
    """What ingesting `path` must produce: documents by _id (later rows win), rejects, counts."""
    documents, rejects, rows_read, valid = {}, [], 0, 0
    for line, doc, reject in read(path):
        rows_read += 1
        if reject:
            rejects.append({"line": line, "reason": reject})
            continue
        valid += 1
        documents[doc["_id"]] = doc
    return {"documents": documents, "rejects": rejects, "rows_read": rows_read, "valid": valid}


def cleaned_rows(path) -> list[dict]:
    """Every valid row's document, in file order (repeats included): what the pipeline writes."""
    return [doc for _, doc, reject in read(path) if not reject]


def read(path):
    """(line, document or None, reject reason or None) for every row of the file, blank lines skipped."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader)]
        while True:
            line = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            if not fields or (len(fields) == len(header) and all(v == "" for v in fields)):
                continue  # blank line, or a row of nothing but separators
            if len(fields) == 1 and fields[0] != "" and fields[0].strip() == "":
                continue  # a line of spaces holds no record (but `""` is a one-field row)
            if len(fields) != len(header):
                yield line, None, f"expected {len(header)} fields, found {len(fields)}"
                continue
            row = dict(zip(header, fields))
            if not row.get("title", "").strip():
                yield line, None, "missing title"
                continue
            too_long = first_too_long(row)
            if too_long:
                yield line, None, too_long
                continue
            yield line, clean_row(row), None


def first_too_long(row: dict) -> str | None:
    """The reject reason for the file's first column, in header order, whose text is over its maximum."""
    for name, value in row.items():
        if name in ("budget", "revenue", "runtime", "vote_count", "vote_average", "release_date"):
            continue
        size = len((value.strip() if name == "title" else value).encode("utf-8"))
        limit = TEXT_MAX.get(name, OTHER_MAX)
        if size > limit:
            shown = name if len(name) <= 64 else name[:64] + "…"
            return f"{shown} is {size} bytes, more than its maximum of {limit} (docs/cleaning.md)"
    return None


# -- plays ---------------------------------------------------------------------------------------------


def plays_day(value):
    s = value.strip()
    if re.fullmatch(r"\d{8}", s, re.ASCII):
        s = f"{s[:4]}-{s[4:6]}-{s[6:]}"
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s, re.ASCII):
        return None
    try:
        d = datetime(int(s[:4]), int(s[5:7]), int(s[8:]))
    except ValueError:
        return None
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def plays_count(value):
    s = value.strip()
    if not re.fullmatch(r"\d+", s, re.ASCII) or int(s) >= 2**63:
        return None
    return int(s)


def plays_totals(path):
    """(result CSV bytes, [(line, kind of problem)]) for a plays file, row by row with the csv module."""
    totals, rejects = {}, []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader)]
        song_at, date_at, plays_at = (header.index(name) for name in ("Song", "Date", "Number of Plays"))
        line = reader.line_num + 1
        for row in reader:
            start, line = line, reader.line_num + 1
            if row == [] or (len(row) == len(header) and not any(row)):
                continue  # a blank line, or one of empty fields only
            if len(row) != len(header):
                rejects.append((start, "fields"))
                continue
            song, day, count = row[song_at].strip(), plays_day(row[date_at]), plays_count(row[plays_at])
            problem = "song" if not song else "date" if day is None else "count" if count is None else None
            if problem:
                rejects.append((start, problem))
                continue
            totals[song, day] = totals.get((song, day), 0) + count
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Song", "Date", "Total Number of Plays for Date"])
    for (song, day), total in sorted(totals.items()):
        writer.writerow([song, day, total])
    return out.getvalue().encode(), rejects
