"""Where the suite's time goes: a pytest plugin (loaded by ``tests/conftest.py``).

Each test's phases (setup, call, teardown) come from pytest's own reports; each fixture's own setup
time (its function up to its ``yield``, not the fixtures it requests) is measured around
``pytest_fixture_setup`` and carried to the report of the phase that set it up, so it also reaches
the controller under pytest-xdist. At the end it prints the whole run's time, the slowest tests,
and the time per module and per fixture, and writes them all as JSON to ``$PYTEST_TIMING_JSON``
(default ``.pytest_cache/timing.json`` under the root) for the README's table (``python -m tests.timing FILE``
prints that table again from the file).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

_PENDING: list[tuple[str, str, float]] = []  # fixtures set up since the last report (name, scope, seconds)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        _PENDING.append((fixturedef.argname, fixturedef.scope, time.perf_counter() - started))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if _PENDING:
        report.user_properties.append(("fixture_setup", list(_PENDING)))
        _PENDING.clear()
    return report


class Timing:
    """The controller's (or the only process's) collector."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.started = time.time()
        self.tests: dict[str, dict] = {}
        self.fixtures: dict[str, dict] = defaultdict(lambda: {"seconds": 0.0, "count": 0, "scope": ""})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.tests.setdefault(report.nodeid, {"setup": 0.0, "call": 0.0, "teardown": 0.0,
                                                      "outcome": "passed", "worker": ""})
        entry[report.when] = round(report.duration, 3)
        entry["worker"] = getattr(report, "node", None) and report.node.gateway.id or ""
        if report.failed:
            entry["outcome"] = "failed"
        elif report.skipped and report.when != "teardown":
            entry["outcome"] = "skipped"
        for key, value in report.user_properties:
            if key == "fixture_setup":
                for name, scope, seconds in value:
                    fixture = self.fixtures[f"{name} ({scope})"]
                    fixture["seconds"] += seconds
                    fixture["count"] += 1
                    fixture["scope"] = scope

    def summary(self) -> dict:
        tests = {nodeid: {**t, "total": round(t["setup"] + t["call"] + t["teardown"], 3)}
                 for nodeid, t in self.tests.items()}
        modules: dict[str, dict] = defaultdict(lambda: {"seconds": 0.0, "tests": 0})
        for nodeid, t in tests.items():
            module = modules[nodeid.split("::")[0]]
            module["seconds"] += t["total"]
            module["tests"] += 1
        return {
            "wall_seconds": round(time.time() - self.started, 1),
            "workers": self.config.getoption("numprocesses", None) or 0,
            "tests": tests,
            "modules": {k: {**v, "seconds": round(v["seconds"], 1)} for k, v in modules.items()},
            "fixtures": {k: {**v, "seconds": round(v["seconds"], 1)} for k, v in self.fixtures.items()},
        }

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter) -> None:
        data = self.summary()
        path = Path(os.environ.get("PYTEST_TIMING_JSON")
                    or self.config.rootpath / ".pytest_cache" / "timing.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True))
        terminalreporter.write_sep("=", "where the time went (tests/timing.py)")
        for line in report_lines(data, top=10, groups=12):
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"(all figures in {path})")


def report_lines(data: dict, top: int = 20, groups: int = 20) -> list[str]:
    tests = sorted(data["tests"].items(), key=lambda kv: -kv[1]["total"])
    summed = sum(t["total"] for t in data["tests"].values())
    lines = [f"suite: {len(tests)} tests in {data['wall_seconds']:.0f} s wall "
             f"({summed:.0f} s of test time summed, {data['workers'] or 1} process(es))",
             f"the {min(top, len(tests))} slowest tests (setup + call + teardown, s):"]
    lines += [f"  {t['total']:7.1f}  {nodeid}" for nodeid, t in tests[:top]]
    lines.append("per module (s, tests):")
    modules = sorted(data["modules"].items(), key=lambda kv: -kv[1]["seconds"])
    lines += [f"  {m['seconds']:7.1f}  {m['tests']:4d}  {name}" for name, m in modules[:groups]]
    lines.append("per fixture, its own setup (s, times set up):")
    fixtures = sorted(data["fixtures"].items(), key=lambda kv: -kv[1]["seconds"])
    lines += [f"  {f['seconds']:7.1f}  {f['count']:4d}  {name}"
              for name, f in fixtures[:groups] if f["seconds"] >= 0.5]
    return lines


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller under xdist, or a plain run
        config.pluginmanager.register(Timing(config), "mlops-timing")


if __name__ == "__main__":
    print("\n".join(report_lines(json.loads(Path(sys.argv[1]).read_text()))))
