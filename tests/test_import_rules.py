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
    ("from airflow_mlops.runtime_side.steps.drift import DETECTORS", "airflow_mlops.runtime_side"),
    ("import airflow_mlops.runtime_side.steps.tfx_node", "airflow_mlops.runtime_side"),
    ("from airflow_mlops.runtime_side.model_server.model import typed_record", "airflow_mlops.runtime_side"),
    ("from airflow_mlops.runtime_side.session import EXIT_MARK", "airflow_mlops.runtime_side"),
    ("from airflow_mlops.runtime_side import entrypoint", "airflow_mlops.runtime_side"),
    ("from airflow_mlops import runtime_side", "airflow_mlops.runtime_side"),
    ("import tensorflow as tf", "tensorflow"),
    ("from tfx import v1 as tfx", "tfx"),
    ("from alibi_detect.cd import TabularDrift", "alibi_detect"),
    ("import seldon_core", "seldon_core"),
])
def test_the_airflow_side_may_not_import_the_runtime_side(airflow_side, line, banned):
    out = ruff_stdin(airflow_side, line + "\n")
    assert out.returncode == 1 and "TID251" in out.stdout and f"`{banned}` is banned" in out.stdout, out.stdout


@pytest.mark.parametrize("runtime_side", [
    "airflow_mlops/runtime_side/steps/new_step.py", "airflow_mlops/runtime_side/model_server/model.py",
    "airflow_mlops/runtime_side/entrypoint.py", "airflow_mlops/runtime_side/new_module.py",
])
def test_the_runtime_side_may(runtime_side):
    out = ruff_stdin(runtime_side, "import tensorflow as tf\nfrom airflow_mlops.runtime_side.steps.drift import DETECTORS\n\n"
                                   "print(tf, DETECTORS)\n")
    assert out.returncode == 0, out.stdout


#: What both sides import: the standard library only, and each other.
SHARED = ("airflow_mlops/shared.py", "airflow_mlops/components.py", "airflow_mlops/evaluation.py",
          "airflow_mlops/runtimes/contract.py", "airflow_mlops/runtimes/reaper.py",
          "airflow_mlops/serving/prediction_log.py", "airflow_mlops/utils/model_registry.py")


@pytest.mark.parametrize("path", SHARED)
def test_the_shared_modules_import_only_the_standard_library(path):
    tree = ast.parse((REPO / path).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    shared = {p[:-3].replace("/", ".") for p in SHARED}
    outside = {m for m in imported if m.split(".")[0] not in set(sys.stdlib_module_names) | {"__future__"}
               and m not in shared and m != "airflow_mlops"}
    assert not outside, outside


def test_the_runtime_side_is_one_package_and_the_airflow_side_holds_none_of_it():
    """Every module that imports an ML library (or runs only in a runtime) is under runtime_side/."""
    ml = ("tensorflow", "tfx", "ml_metadata", "tensorflow_model_analysis", "tensorflow_transform", "apache_beam",
          "keras", "horovod", "seldon_core", "alibi_detect", "mlserver", "tensorflow_metadata")
    outside = []
    for path in (REPO / "airflow_mlops").rglob("*.py"):
        if "runtime_side" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        if any(n.split(".")[0] in ml for n in names):
            outside.append(str(path.relative_to(REPO)))
    assert not outside, f"ML libraries imported outside airflow_mlops/runtime_side: {outside}"


def test_importing_the_airflow_side_loads_no_runtime_side_module():
    modules = ["airflow_mlops.operators.tfx", "airflow_mlops.operators.seldon", "airflow_mlops.operators.drift",
               "airflow_mlops.sensors.seldon", "airflow_mlops.sensors.drift", "airflow_mlops.hooks.runtime",
               "airflow_mlops.hooks.seldon", "airflow_mlops.triggers.mpijob", "airflow_mlops.kubernetes.mpijob",
               "airflow_mlops.runtimes.warm"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            "bad = sorted(m for m in sys.modules if m.startswith(('airflow_mlops.runtime_side',"
            " 'tensorflow', 'tfx', 'alibi_detect', 'seldon_core', 'apache_beam')))\n"
            "print(bad)\nsys.exit(1 if bad else 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]


def test_the_runtime_side_imports_only_the_shared_modules_of_the_airflow_side():
    shared = {p[:-3].replace("/", ".") for p in SHARED} | {"airflow_mlops"}
    found = {}
    for path in (REPO / "airflow_mlops" / "runtime_side").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        for node in ast.walk(tree):  # ``from airflow_mlops.runtimes import reaper`` imports runtimes.reaper
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in shared else node.module
                          for alias in node.names}
        for name in names:
            if name.startswith("airflow_mlops.") and not name.startswith("airflow_mlops.runtime_side") \
                    and name not in shared:
                found.setdefault(name, []).append(str(path.relative_to(REPO)))
    assert not found, f"the runtime side imports Airflow-side modules that are not shared: {found}"


#: Code below the hooks: it receives what it uses (a small context: settings, paths, a client factory), never
#: the hook that made it (a hook is connection → context → implementation).
BELOW_THE_HOOKS = ("airflow_mlops/runtimes",)


def hook_imports(text: str, module: str) -> list[str]:
    """The ``airflow_mlops.hooks`` modules that the source ``text`` of ``module`` imports (also under TYPE_CHECKING)."""
    package = module.rsplit(".", 1)[0].split(".")
    names = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[:len(package) - node.level + 1], *([node.module] if node.module else [])]) \
                if node.level else node.module or ""
            names |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return sorted(n for n in names if n == "airflow_mlops.hooks" or n.startswith("airflow_mlops.hooks."))


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for d in BELOW_THE_HOOKS
                                        for p in (REPO / d).rglob("*.py")))
def test_the_runtimes_do_not_import_the_hooks(path):
    assert not hook_imports((REPO / path).read_text(), path[:-3].replace("/", ".")), path


@pytest.mark.parametrize("text", [
    "from airflow_mlops.hooks.runtime import RuntimeHook\n",
    "import airflow_mlops.hooks.runtime\n",
    "from airflow_mlops import hooks\n",
    "from ..hooks.runtime import RuntimeHook\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from airflow_mlops.hooks.runtime import RuntimeHook\n",
    "def f():\n    from airflow_mlops.hooks import runtime\n",
])
def test_an_import_of_the_hooks_is_caught(text):
    assert hook_imports(text, "airflow_mlops.runtimes.new_runner")
    assert not hook_imports("from airflow_mlops.runtimes.context import RunnerContext\n",
                            "airflow_mlops.runtimes.new_runner")
