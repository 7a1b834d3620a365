"""The first task's checks of a span's CSV files: byte-order marks, the label column, which files TFX reads."""

from __future__ import annotations

import pytest

from airflow_mlops.utils.csv_data import CsvDataError, check_csv_files, span_files, visible

HEADER = "pickup_community_area,fare,tips\n"


def _csv(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def test_names_that_print_alike_are_told_apart():
    assert visible("pickup_community_area") == "pickup_community_area"
    assert visible("trip_start_hour é") == "trip_start_hour é"  # printable non-ASCII stays as it is
    assert visible("\ufeffpickup_community_area") == "'\\ufeffpickup_community_area'"
    assert visible("fare\u200b") == "'fare\\u200b'" and visible("a\tb") == "'a\\tb'"


def test_a_file_with_a_utf8_byte_order_mark_is_refused_naming_it(tmp_path):
    clean = _csv(tmp_path / "a.csv", HEADER + "8,5.0,1.0\n")
    excel = _csv(tmp_path / "b.csv", b"\xef\xbb\xbf" + (HEADER + "8,5.0,1.0\r\n").encode())
    with pytest.raises(CsvDataError, match=rf"^{excel} starts with a UTF-8 byte-order mark .* first column's name "
                                           r"\('\\ufeffpickup_community_area'\): save the file without it"):
        check_csv_files([clean, excel])
    check_csv_files([clean])


@pytest.mark.parametrize(("rows", "message"), [
    ("8,5.0,\n9,7.5,\n", r"the label column 'tips' is empty in every row of .*a.csv: nothing can be learned"),
    ("8,5.0,0.0\n9,7.5,0.0\n\n", r"the label column 'tips' has the same value \('0.0'\) in every row of .*a.csv"),
])
def test_an_empty_or_constant_label_is_refused_naming_it(tmp_path, rows, message):
    with pytest.raises(CsvDataError, match=message):
        check_csv_files([_csv(tmp_path / "a.csv", HEADER + rows)], "tips")


def test_a_missing_label_column_is_refused_with_the_file_s_columns(tmp_path):
    ok = _csv(tmp_path / "ok.csv", HEADER + "1,2,3\n")
    path = _csv(tmp_path / "a.csv", "a\u200b,fare\n1,2\n")
    with pytest.raises(CsvDataError, match=r"^the label column 'tips' is not a column of .*a.csv \(its columns: "
                                           r"'a\\u200b', fare\): set label_column"):
        check_csv_files([ok, path], "tips")


@pytest.mark.parametrize("files", [
    {"a.csv": HEADER},  # no rows: the data gate's example count says so
    {"a.csv": HEADER + "8,5.0,\n9,7.5,2.5\n"},  # empty in some rows only
    {"a.csv": HEADER + "8,5.0,1.0\n", "b.csv": HEADER + "9,7.5,2.0\n"},  # one value per file, two in the span
    {"a.csv": "pickup_community_area,fare\n1,2\n"},  # no label given: not checked
])
def test_usable_labels_pass(tmp_path, files):
    paths = [_csv(tmp_path / name, text) for name, text in files.items()]
    check_csv_files(paths, "tips" if "tips" in next(iter(files.values())) else None)


def test_the_files_tfx_reads_in_a_span(tmp_path):
    span = tmp_path / "span-1"
    _csv(span / "data.csv", HEADER)
    _csv(span / "README.txt", "notes")
    _csv(span / ".hidden.csv", HEADER)
    _csv(span / "empty.csv", "")
    assert span_files(str(span)) == [str(span / "README.txt"), str(span / "data.csv")]
    assert span_files(str(span), "span-{SPAN}/*.csv") == [str(span / "data.csv")]
    _csv(span / "version-2" / "data.csv", HEADER)
    _csv(span / "version-10" / "data.csv", HEADER)
    assert span_files(str(span), "auto") == [str(span / "version-10" / "data.csv")]
