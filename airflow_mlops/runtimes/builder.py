"""Build runtimes on demand, once, into a cache keyed by their lock file (standard library only).

A runtime is built into ``<cache>/.<name>-<isolation>-<key>.partial-<pid>`` and renamed to
``<cache>/<name>-<isolation>-<key>`` only when it is complete and its probe passed, so a
cached runtime is always whole. Builds of the same runtime are serialised by a file lock;
leftovers of a build that died are removed by the next build.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from airflow_mlops.runtimes.local import READY_FILE, ROOTFS_VENV, RuntimeInstall, rootfs_command
from airflow_mlops.runtimes.sources import (
    PackageSources,
    explain_missing_package,
    is_pip_diagnostic,
    pip_download_command,
    pip_install_command,
)
from airflow_mlops.runtimes.specs import RUNTIMES, RuntimeSpec

ISOLATIONS = ("auto", "venv", "rootfs")
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"

Log = Callable[[str], None]


class RuntimeBuildError(RuntimeError):
    """A runtime could not be built; the message says which step failed and what to do."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "airflow-mlops" / "runtimes"


def host_glibc() -> tuple[int, int] | None:
    """The host's glibc version, or None on another C library."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return None
    if name != "glibc":
        return None
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def choose_isolation(spec: RuntimeSpec, requested: str = "auto") -> str:
    """``venv`` where the host can run the locked wheels, else ``rootfs``."""
    if requested not in ISOLATIONS:
        raise ValueError(f"runtime isolation must be one of {ISOLATIONS}, got {requested!r}")
    if requested != "auto":
        return requested
    if spec.min_glibc is None:
        return "venv"
    glibc = host_glibc()
    return "venv" if glibc is not None and glibc >= spec.min_glibc else "rootfs"


def install_path(cache_dir: Path, spec: RuntimeSpec, isolation: str) -> Path:
    return Path(cache_dir) / f"{spec.name}-{isolation}-{spec.cache_key(isolation)}"


def find_runtime(spec: RuntimeSpec, cache_dir: Path, isolation: str = "auto") -> RuntimeInstall | None:
    """The cached runtime for ``spec``, or None if it is not built (or not whole)."""
    isolation = choose_isolation(spec, isolation)
    path = install_path(cache_dir, spec, isolation)
    if (path / READY_FILE).is_file():
        return RuntimeInstall(spec.name, isolation, path, spec.cache_key(isolation))
    return None


@contextmanager
def _build_lock(lock_path: Path, log: Log) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another process is building this runtime; waiting for {lock_path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_runtime(
    spec: RuntimeSpec,
    cache_dir: Path,
    *,
    isolation: str = "auto",
    build: bool = True,
    force: bool = False,
    mirror: str = DEFAULT_DEBIAN_MIRROR,
    sources: PackageSources | None = None,
    log: Log = print,
) -> RuntimeInstall:
    """Return the cached runtime, building it first when missing (or when ``force``).

    :param sources: where pip finds the packages (the user's ``[mlops] pip_*`` settings); the
        spec's own ``extra_index_urls`` are added to them.
    """
    isolation = choose_isolation(spec, isolation)
    sources = sources or PackageSources()
    if not force:
        found = find_runtime(spec, cache_dir, isolation)
        if found:
            return found
    if not build:
        raise RuntimeBuildError(
            f"runtime {spec.name!r} ({isolation}) is not built in {cache_dir}; "
            f"build it with: airflow-mlops runtime build {spec.name}"
        )
    final = install_path(cache_dir, spec, isolation)
    with _build_lock(final.with_name(final.name + ".lock"), log):
        found = find_runtime(spec, cache_dir, isolation)
        if found and not force:
            return found  # built by the process we waited for
        for stale in final.parent.glob(f".{final.name}.partial-*"):
            log(f"removing the leftovers of an unfinished build: {stale}")
            shutil.rmtree(stale, ignore_errors=True)
        partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
        started = time.monotonic()
        sources = sources.checked(spec, log)
        log(f"packages for {spec.name!r} from {sources.describe(spec)}")
        try:
            if isolation == "rootfs":
                _build_rootfs(spec, partial, cache_dir, mirror, log, sources)
            else:
                _build_venv(spec, partial, log, cache_dir, sources)
            meta = {
                "name": spec.name,
                "isolation": isolation,
                "key": spec.cache_key(isolation),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_seconds": round(time.monotonic() - started, 1),
                "lock_file": spec.lock_file,
                "host": platform.platform(),
            }
            (partial / READY_FILE).write_text(json.dumps(meta, indent=2))
            if final.exists():  # a forced rebuild replaces the old one only now
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                final.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        log(f"runtime {spec.name!r} ready at {final} ({time.monotonic() - started:.0f} s)")
        return RuntimeInstall(spec.name, isolation, final, spec.cache_key(isolation))


def _run(
    cmd: list[str],
    log: Log,
    what: str,
    env: dict[str, str] | None = None,
    explain: Callable[[list[str]], str | None] | None = None,
) -> None:
    """Run ``cmd``, logging its output; on failure raise with its last lines.

    :param explain: turns pip's diagnostic lines (where it looked, what it did not find) into
        the first line of the error, when it recognises the failure.
    """
    log(f"$ {what}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    tail: list[str] = []
    diagnostics: list[str] = []
    for raw in iter(proc.stdout.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        tail = (tail + [line])[-30:]
        if is_pip_diagnostic(line):
            diagnostics.append(line)
        log(line)
    if proc.wait() != 0:
        reason = explain(diagnostics) if explain else None
        raise RuntimeBuildError(
            (f"{reason}\n" if reason else "")
            + f"{what} failed with exit code {proc.returncode}; last lines:\n" + "\n".join(tail)
        )


def _pip_explainer(spec: RuntimeSpec, sources: PackageSources) -> Callable[[list[str]], str | None]:
    return lambda lines: explain_missing_package(lines, spec, sources)


def source_build_script(
    spec: RuntimeSpec, python: str, cache_dir: Path, sources: PackageSources | None = None
) -> tuple[str, list[str]]:
    """Shell script building ``spec.source_builds`` with ``python``, and the host paths it needs.

    Each wheel is cached in ``<cache>/wheels/<name>-<key>/``; a cached wheel is installed without
    rebuilding. The wheel directory appears only once complete (built elsewhere, then renamed).
    The sdist is fetched from ``sources`` (with the spec's indexes), like the lock file's wheels.
    """
    import shlex

    import airflow_mlops

    q = shlex.quote
    sources = sources or PackageSources()
    pip_options = " ".join(q(o) for o in sources.pip_options(spec))
    lines = ["set -e"]
    paths = [str(Path(airflow_mlops.__file__).resolve().parent.parent), *sources.local_paths(spec)]
    for build in spec.source_builds:
        name = build.requirement.split("==")[0]
        wheels = Path(cache_dir).resolve() / "wheels" / f"{name}-{build.key(spec.lock_text())}"
        wheels.parent.mkdir(parents=True, exist_ok=True)
        paths.append(str(wheels.parent))
        env = " ".join(q(f"{k}={v}") for k, v in build.env)
        patch_file = build.patch_path()
        patch = f"{q(python)} {q(patch_file)} \"$SRC\"" if patch_file else "true"
        lines += [
            f"W={q(str(wheels))}",
            'if ! ls "$W"/*.whl >/dev/null 2>&1; then',
            f'  echo "building {build.requirement} from source (cached in $W)"',
            '  T=$(mktemp -d)',
            f'  {q(python)} -m pip download --no-deps --no-binary :all: --no-build-isolation {pip_options} '
            f'-d "$T" {q(build.requirement)}',
            '  tar -xzf "$T"/*.tar.gz -C "$T"',
            '  SRC=$(find "$T" -mindepth 1 -maxdepth 1 -type d | head -n 1)',
            f"  {patch}",
            f'  env {env} {q(python)} -m pip wheel --no-deps --no-build-isolation -w "$T/wheel" "$SRC"',
            '  rm -rf "$W.partial" && mkdir -p "$W.partial" && cp "$T"/wheel/*.whl "$W.partial"/',
            '  rm -rf "$W" && mv "$W.partial" "$W" && rm -rf "$T"',
            "fi",
            f'{q(python)} -m pip install --no-deps "$W"/*.whl',
        ]
    return "\n".join(lines), paths


def _pip_env() -> dict[str, str]:
    """The host's pip settings and proxies, passed to pip inside the runtime build."""
    keep = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k.lower().endswith("_proxy")}
    keep.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return keep


def _build_venv(
    spec: RuntimeSpec, target: Path, log: Log, cache_dir: Path | None = None, sources: PackageSources | None = None
) -> None:
    import sys

    sources = sources or PackageSources()
    _run([sys.executable, "-m", "venv", str(target)], log, f"python -m venv {target}")
    lock = target / "runtime-lock.txt"
    lock.write_text(spec.lock_text())
    env = {**os.environ, **_pip_env()}
    _run(pip_install_command(spec, str(target / "bin/python"), str(lock), sources), log,
         f"pip install -r {spec.lock_file}", env=env, explain=_pip_explainer(spec, sources))
    if spec.source_builds:
        script, _ = source_build_script(spec, str(target / "bin/python"), cache_dir or default_cache_dir(), sources)
        _run(["/bin/sh", "-c", script], log, "build " + ", ".join(b.requirement for b in spec.source_builds), env=env,
             explain=_pip_explainer(spec, sources))
    _run([str(target / "bin/python"), "-c", spec.probe], log, f"probe: {spec.probe}", env=env)


def _require_rootfs_tools() -> None:
    missing = [tool for tool in ("debootstrap", "unshare", "chroot") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        raise RuntimeBuildError(
            "this host's C library is older than the runtime's wheels need, so the runtime runs in a "
            "Debian root filesystem, which needs root (debootstrap, mount, chroot). Run the build and "
            "the tasks as root, use a host with a newer glibc (e.g. Debian 13), or use the kubernetes backend."
        )
    if missing:
        raise RuntimeBuildError(
            f"building a root-filesystem runtime needs {', '.join(missing)}: "
            "install them (Debian: apt-get install debootstrap util-linux coreutils)"
        )


def _build_rootfs(
    spec: RuntimeSpec, target: Path, cache_dir: Path, mirror: str, log: Log, sources: PackageSources | None = None
) -> None:
    import shlex

    _require_rootfs_tools()
    sources = sources or PackageSources()
    deb_cache = Path(cache_dir) / "debootstrap-debs"
    deb_cache.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(spec.debian_packages)}",
            f"--cache-dir={deb_cache.resolve()}",
            spec.debian_suite,
            str(target),
            mirror,
        ],
        log,
        f"debootstrap {spec.debian_suite} {target}",
    )
    # The host's network and TLS settings, so pip inside reaches the same index.
    for host_file in ("/etc/resolv.conf", "/etc/hosts", "/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf"):
        if os.path.isfile(host_file):
            dest = target / host_file.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(host_file, dest)
    (target / "opt").mkdir(exist_ok=True)
    (target / "opt/runtime-lock.txt").write_text(spec.lock_text())
    pip_cache = Path(os.environ.get("PIP_CACHE_DIR") or Path.home() / ".cache" / "pip")
    pip_cache.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PIP_CACHE_DIR": str(pip_cache),
        **_pip_env(),
    }
    install = pip_install_command(spec, f"{ROOTFS_VENV}/bin/python", "/opt/runtime-lock.txt", sources)
    script = f"python3 -m venv {ROOTFS_VENV} && " + " ".join(shlex.quote(word) for word in install)
    binds = [str(pip_cache), *sources.local_paths(spec)]  # wheel directories and file:// indexes
    _run(
        rootfs_command(target, ["/bin/sh", "-c", script], env=env, binds=binds),
        log,
        f"install {spec.lock_file} into {target}{ROOTFS_VENV}",
        explain=_pip_explainer(spec, sources),
    )
    if spec.source_builds:
        build_script, paths = source_build_script(spec, f"{ROOTFS_VENV}/bin/python", cache_dir, sources)
        _run(
            rootfs_command(target, ["/bin/sh", "-c", build_script], env=env, binds=[str(pip_cache), *paths]),
            log,
            "build " + ", ".join(b.requirement for b in spec.source_builds),
            explain=_pip_explainer(spec, sources),
        )
    _run(
        rootfs_command(target, [f"{ROOTFS_VENV}/bin/python", "-c", spec.probe], env=env),
        log,
        f"probe: {spec.probe}",
    )


#: Python and glibc of the Debian releases root-filesystem runtimes are built on.
DEBIAN_SUITES = {"trixie": ("3.13", (2, 41)), "bookworm": ("3.11", (2, 36))}


def runtime_target(spec: RuntimeSpec, isolation: str = "auto") -> tuple[str, list[str]]:
    """The Python version and the wheel platforms a build of ``spec`` installs for, on this host."""
    import sys

    isolation = choose_isolation(spec, isolation)
    if isolation == "rootfs":
        python, (major, minor) = DEBIAN_SUITES[spec.debian_suite]
        return python, [f"manylinux_{major}_{minor}_{platform.machine()}"]
    return f"{sys.version_info.major}.{sys.version_info.minor}", []


def download_runtime(
    spec: RuntimeSpec,
    dest: Path,
    *,
    isolation: str = "auto",
    sources: PackageSources | None = None,
    python_version: str | None = None,
    platforms: list[str] | None = None,
    log: Log = print,
) -> None:
    """Fill ``dest`` with everything a build of ``spec`` installs, for an offline build elsewhere.

    The lock file's distributions for the runtime's Python and platform (as chosen on this host,
    unless given), the sdists of its source builds, and the build backends sdists need; a
    build with ``[mlops] pip_offline = True`` and ``pip_find_links = <dest>`` then needs no index.
    """
    import sys
    import tempfile

    sources = (sources or PackageSources()).checked(spec, log)
    default_python, default_platforms = runtime_target(spec, isolation)
    python_version = python_version or default_python
    platforms = default_platforms if platforms is None else platforms
    dest = Path(dest).absolute()
    dest.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **_pip_env()}
    explain = _pip_explainer(spec, sources)
    with tempfile.TemporaryDirectory() as tmp:
        lock = Path(tmp) / "runtime-lock.txt"
        lock.write_text(spec.lock_text())
        _run(pip_download_command(spec, sys.executable, str(lock), str(dest), sources,
                                  python_version=python_version, platforms=platforms),
             log, f"pip download -r {spec.lock_file} (Python {python_version}) into {dest}", env=env, explain=explain)
    if any(path.name.endswith((".tar.gz", ".zip")) for path in dest.iterdir()) or spec.source_builds:
        # sdists are built where they are installed: their build backends must be there too
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--dest", str(dest),
              *sources.pip_options(spec), "setuptools", "wheel"], log, "pip download setuptools wheel", env=env,
             explain=explain)
    for build in spec.source_builds:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
              "--dest", str(dest), *sources.pip_options(spec), build.requirement], log,
             f"pip download {build.requirement} (sdist)", env=env, explain=explain)
    log(f"{spec.name}: {len(list(dest.iterdir()))} files in {dest}; build offline with "
        f"[mlops] pip_offline = True and pip_find_links = {dest}")


@dataclass
class RuntimeStatus:
    name: str
    isolation: str
    state: str  # ready | not built | stale | partial
    path: str
    size_bytes: int | None


def disk_usage(path: Path) -> int:
    """Bytes used under ``path`` (not following links, each inode once)."""
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def list_runtimes(cache_dir: Path, *, isolation: str = "auto", sizes: bool = True) -> list[RuntimeStatus]:
    """Every known runtime's state, plus cached builds that no longer match a lock file (stale)."""
    cache_dir = Path(cache_dir)
    rows: list[RuntimeStatus] = []
    current: set[str] = set()
    for spec in RUNTIMES.values():
        iso = choose_isolation(spec, isolation)
        path = install_path(cache_dir, spec, iso)
        current.add(path.name)
        ready = (path / READY_FILE).is_file()
        rows.append(
            RuntimeStatus(spec.name, iso, "ready" if ready else "not built", str(path),
                          disk_usage(path) if ready and sizes else None)
        )
    if cache_dir.is_dir():
        for entry in sorted(cache_dir.iterdir()):
            if not entry.is_dir() or entry.name in current or entry.name in ("debootstrap-debs", "wheels"):
                continue
            state = "partial" if ".partial-" in entry.name or ".old-" in entry.name else "stale"
            name, _, rest = entry.name.lstrip(".").partition("-")
            rows.append(RuntimeStatus(name, rest.split("-")[0], state, str(entry),
                                      disk_usage(entry) if sizes else None))
    return rows


def prune_runtimes(cache_dir: Path, log: Log = print) -> list[str]:
    """Delete stale and partial builds; return their paths."""
    removed = []
    for row in list_runtimes(cache_dir, sizes=False):
        if row.state in ("stale", "partial"):
            base = Path(row.path).name.lstrip(".").split(".partial-")[0].split(".old-")[0]
            lock = Path(cache_dir) / f"{base}.lock"
            with _build_lock(lock, log):
                shutil.rmtree(row.path, ignore_errors=True)
            removed.append(row.path)
            log(f"removed {row.path}")
    return removed
