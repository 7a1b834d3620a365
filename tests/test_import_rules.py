"""Code lives where it runs: the import rules between the Airflow side and the runtime side.

The rules are ruff's banned-api (pyproject.toml, run by ``make lint`` before the tests); these
tests check that the rules hold for the whole tree, that they catch a new violation, and that
importing the Airflow side really loads nothing of the runtime side.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUFF = [sys.executable, "-m", "ruff", "check", "--output-format", "concise", "--no-cache"]


def ruff_stdin(filename: str, text: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RUFF, "--stdin-filename", filename, "-"], input=text, capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_the_tree_follows_the_rules():
    out = subprocess.run([*RUFF, "."], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("airflow_side", [
    "airflow_mlops/operators/new_operator.py", "airflow_mlops/hooks/new_hook.py", "airflow_mlops/sensors/x.py",
    "airflow_mlops/triggers/x.py", "airflow_mlops/kubernetes/x.py", "airflow_mlops/runtimes/warm.py", "dags/my_dag.py",
])
@pytest.mark.parametrize("line, banned", [
    ("from airflow_mlops.steps.drift import DETECTORS", "airflow_mlops.steps"),
    ("import airflow_mlops.steps.tfx_node", "airflow_mlops.steps"),
    ("from airflow_mlops.serving.model import typed_record", "airflow_mlops.serving.model"),
    ("from airflow_mlops.runtimes.server import EXIT_MARK", "airflow_mlops.runtimes.server"),
    ("import tensorflow as tf", "tensorflow"),
    ("from tfx import v1 as tfx", "tfx"),
    ("from alibi_detect.cd import TabularDrift", "alibi_detect"),
    ("import seldon_core", "seldon_core"),
])
def test_the_airflow_side_may_not_import_the_runtime_side(airflow_side, line, banned):
    out = ruff_stdin(airflow_side, line + "\n")
    assert out.returncode == 1 and "TID251" in out.stdout and f"`{banned}` is banned" in out.stdout, out.stdout


@pytest.mark.parametrize("runtime_side", [
    "airflow_mlops/steps/new_step.py", "airflow_mlops/serving/model.py", "airflow_mlops/runtimes/entrypoint.py",
])
def test_the_runtime_side_may(runtime_side):
    out = ruff_stdin(runtime_side, "import tensorflow as tf\nfrom airflow_mlops.steps.drift import DETECTORS\n\n"
                                   "print(tf, DETECTORS)\n")
    assert out.returncode == 0, out.stdout


def test_the_shared_module_imports_only_the_standard_library():
    tree = ast.parse((REPO / "airflow_mlops" / "shared.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_importing_the_airflow_side_loads_no_runtime_side_module():
    modules = ["airflow_mlops.operators.tfx", "airflow_mlops.operators.seldon", "airflow_mlops.operators.drift",
               "airflow_mlops.sensors.seldon", "airflow_mlops.sensors.drift", "airflow_mlops.hooks.runtime",
               "airflow_mlops.hooks.seldon", "airflow_mlops.triggers.mpijob", "airflow_mlops.kubernetes.mpijob",
               "airflow_mlops.runtimes.warm"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            "bad = sorted(m for m in sys.modules if m.startswith(('airflow_mlops.steps', 'airflow_mlops.serving.model',"
            " 'airflow_mlops.serving.server', 'airflow_mlops.runtimes.server', 'airflow_mlops.runtimes.entrypoint',"
            " 'tensorflow', 'tfx', 'alibi_detect', 'seldon_core', 'apache_beam')))\n"
            "print(bad)\nsys.exit(1 if bad else 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
