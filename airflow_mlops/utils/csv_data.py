"""What the pipeline's first task reads of a span's CSV files before TFX does (standard library only).

TFX's CsvExampleGen takes the first line of a file, as it is, for the column names: a UTF-8 byte-order
mark (Excel's "CSV UTF-8" writes one) becomes part of the first column's name, and that name of the
first span's schema then differs from every clean span's. A label column that is empty in every row
(or one value throughout) is ingested and inferred as a text feature with no values, and the pipeline
fails only at Transform. Both are refused here, naming the file or the column, before anything is
ingested.
"""

from __future__ import annotations

import csv
import os
import re
from fnmatch import fnmatch

BOM = b"\xef\xbb\xbf"
_VERSION_DIR = re.compile(r"version-(\d+)")


class CsvDataError(ValueError):
    """A span's CSV files cannot make a usable pipeline; the message names the file or column and what to do."""


def visible(name: str) -> str:
    """``name`` as it prints, or quoted with escapes where a character of it does not print (a byte-order
    mark, a zero-width space, a control character), so two names that print alike are told apart:
    ``'\\ufeffpickup_community_area'`` beside ``pickup_community_area``."""
    return name if name.isprintable() else repr(name)


def span_files(folder: str, pattern: str = "*") -> list[str]:
    """The files TFX reads in a span's ``folder`` (its latest ``version-<N>/`` where it has versions): those
    whose name matches the last part of ``pattern``, hidden and empty files left out.

    :param folder: the span's directory (or the data directory when it has no spans).
    :param pattern: the input pattern (``auto``: every file).
    """
    versions = [(int(m.group(1)), e) for e in os.listdir(folder)
                if (m := _VERSION_DIR.fullmatch(e)) and os.path.isdir(os.path.join(folder, e))]
    if versions:
        folder = os.path.join(folder, max(versions)[1])
    name = "*" if pattern in ("", "auto") else os.path.basename(pattern)
    return sorted(path for e in os.listdir(folder)
                  if not e.startswith(".") and fnmatch(e, name) and os.path.isfile(path := os.path.join(folder, e))
                  and os.path.getsize(path) > 0)


def check_csv_files(files: list[str], label: str | None = None) -> None:
    """Refuse a file that starts with a UTF-8 byte-order mark, and a ``label`` column that a file's header
    lacks, that is empty in every row, or that has one value in every row (rows are read until a second value
    shows; files without rows are left to the data gate's example count).

    :param files: the span's CSV files.
    :param label: the CSV column the label comes from; None or empty: not checked.
    """
    for path in files:
        with open(path, "rb") as handle:
            if handle.read(len(BOM)) == BOM:
                first = handle.readline().decode("utf-8", "replace").split(",")[0].strip()
                raise CsvDataError(
                    f"{path} starts with a UTF-8 byte-order mark (Excel's 'CSV UTF-8' writes one), which TFX would "
                    f"keep in its first column's name ({visible(chr(0xFEFF) + first)}): save the file without it "
                    f"(Excel: 'CSV (Comma delimited)'; or sed -i '1s/^\\xEF\\xBB\\xBF//' {path})")
    if not label:
        return
    columns: dict[str, int] = {}
    for path in files:
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            header = next(csv.reader(handle), [])
        if label not in header:
            raise CsvDataError(f"the label column {label!r} is not a column of {path} (its columns: "
                               f"{', '.join(map(visible, header))}): set label_column to the CSV column the label "
                               "comes from")
        columns[path] = header.index(label)
    values: set[str] = set()
    for path, index in columns.items():
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for row in reader:
                if row:  # TFX skips blank lines
                    values.add(row[index] if index < len(row) else "")
                    if len(values) > 1:
                        return
    where = os.path.dirname(files[0]) if len(files) > 1 else files[0] if files else ""
    if values == {""}:
        raise CsvDataError(f"the label column {label!r} is empty in every row of {where}: nothing can be learned "
                           "from it, and a schema kept from it would make it a text column without values; fill "
                           "it in, or set label_column to the CSV column the label comes from")
    if values:
        raise CsvDataError(f"the label column {label!r} has the same value ({values.pop()!r}) in every row of "
                           f"{where}: a model cannot learn from a label that never changes; ingest rows with "
                           "other labels too, or set label_column to the CSV column the label comes from")
