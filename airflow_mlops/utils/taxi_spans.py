"""Spans of the Chicago taxi sample for exercising the loop: a normal span and a shifted one (stdlib only).

The shifted span is synthetic, made to show both kinds of change a monitored model meets:

* **covariate drift** (what the drift check sees in served traffic): fares are 40 % higher
  (a new fare schedule) and trips 50 % longer (``fare``, ``trip_miles``);
* **concept change** (why the model served must be replaced): the meters' payment codes are
  swapped, so trips recorded as ``Cash`` now carry the tips card trips had (a tip-to-fare
  ratio drawn from the card trips of the same rows) and ``Credit Card`` trips carry none. A
  model trained before the change ranks tippers backwards; one retrained on the span learns it.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

FARE_FACTOR, MILES_FACTOR = 1.4, 1.5


def read_rows(csv_path: str | Path, shuffle_seed: int | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV file; shuffled with ``shuffle_seed``, for spans from one distribution.

    The taxi sample is not in random order (later rows differ in fares, places and hours), so
    spans cut from it in file order drift from each other with no shift added.
    """
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = list(reader.fieldnames or []), list(reader)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(rows)
    return header, rows


def taxi_rows(csv_path: str | Path, seed: int = 0) -> tuple[list[str], list[dict[str, str]]]:
    """The taxi sample's rows in a random (seeded) order, ready to be cut into spans of one distribution.

    The one trip (of 15,002) with a ``pickup_census_tract`` is left out: whichever span got it
    would differ from the others in that column's type (present once vs never), and TFX's
    ExampleValidator rightly calls that an anomaly.
    """
    header, rows = read_rows(csv_path, shuffle_seed=seed)
    return header, [row for row in rows if not row.get("pickup_census_tract")]


def write_span(root: str | Path, span: int, header: list[str], rows: list[dict[str, str]]) -> Path:
    """``<root>/span-<span>/data.csv``, written to a temporary name and renamed into place."""
    path = Path(root) / f"span-{span}" / "data.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".csv.partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    partial.rename(path)
    return path


def _scaled(value: str, factor: float) -> str:
    try:
        return f"{float(value) * factor:.2f}"
    except ValueError:
        return value  # empty stays empty


def shifted(rows: list[dict[str, str]], seed: int = 7) -> list[dict[str, str]]:
    """The shifted span of ``rows`` (see the module docstring); deterministic for a seed."""
    rng = random.Random(seed)
    ratios = []
    for row in rows:
        try:
            if row["payment_type"] == "Credit Card" and float(row["fare"]) > 0:
                ratios.append(float(row["tips"]) / float(row["fare"]))
        except ValueError:
            continue
    if not ratios:
        raise ValueError("no card trip with a fare among the rows: cannot draw tips for the shifted span")
    out = []
    for row in rows:
        new = dict(row, fare=_scaled(row["fare"], FARE_FACTOR), trip_miles=_scaled(row["trip_miles"], MILES_FACTOR))
        try:
            fare = float(new["fare"])
        except ValueError:
            fare = 0.0
        if row["payment_type"] == "Cash":
            new["tips"] = f"{fare * rng.choice(ratios):.2f}"
        elif row["payment_type"] == "Credit Card":
            new["tips"] = "0.00"
        else:
            new["tips"] = _scaled(row["tips"], FARE_FACTOR)
        out.append(new)
    return out
