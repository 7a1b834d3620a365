"""Public data sets shipped inside Python packages, as CSV spans (standard library only).

For trying the template DAGs on data not written for this project, without a download at run
time: the Palmer penguins (``palmerpenguins``, multi-class) and Vega's cars (``vega_datasets``,
regression). The packages' data files are read directly; their modules (which import pandas)
are not. Used by the integration tests and the pipeline benchmark; install them with
``pip install palmerpenguins vega-datasets`` (the test extra has both).
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

#: The penguins' columns as TFX's penguin example module reads them (its processed copy of the data).
PENGUIN_COLUMNS = ["species", "island", "culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]
CARS_COLUMNS = ["Miles_per_Gallon", "Cylinders", "Displacement", "Horsepower", "Weight_in_lbs", "Acceleration",
                "Origin"]


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package; a missing package is named with how to install it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the package {package!r} is not installed: pip install {package.replace('_', '-')}")
    return Path(spec.submodule_search_locations[0]) / relative


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_penguins(path: Path, *, as_published: bool = False) -> Path:
    """The penguins with a complete record (333 of 344) as a CSV file.

    As TFX's penguin example reads them (``culmen_*`` columns, ``species`` as class id 0–2), or
    ``as_published`` (``bill_*`` columns, species names), which that module cannot read.
    """
    with open(package_file("palmerpenguins", "data/penguins.csv"), newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if "NA" not in r.values()]
    published = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    if as_published:
        return _write(path, published, [[r[k] for k in published] for r in rows])
    species = sorted({r["species"] for r in rows})
    return _write(path, PENGUIN_COLUMNS, [[species.index(r["species"]), *(r[k] for k in published[1:])]
                                          for r in rows])


def write_cars(path: Path) -> Path:
    """Vega's cars with every column of :data:`CARS_COLUMNS` known (392 of 406) as a CSV file."""
    rows = json.loads(package_file("vega_datasets", "_data/cars.json").read_text())
    return _write(path, CARS_COLUMNS, [[r[c] for c in CARS_COLUMNS] for r in rows
                                       if all(r[c] is not None for c in CARS_COLUMNS)])
