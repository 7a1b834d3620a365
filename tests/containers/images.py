"""The images of docker/, built with podman from locally made base images, and cached.

No image can be pulled here, so the ``FROM`` of every Dockerfile is its ``BASE`` build argument, and
the base is made on this machine: a Debian tree (debootstrap) of the release whose Python the image's
lock file needs (Debian 12: 3.11, Debian 13: 3.13), with ``python``, ``pip`` and ``venv`` as in the
public ``python:*-slim`` images, the host's CA bundle and pip settings, imported with ``podman import``.

A runtime image's ``build`` stage (the 3-4 GB ``pip install`` of its lock file) is made one of two ways:

* ``lock``: as ``docker build`` makes it: the Dockerfile as it is. Minutes to tens of minutes.
* ``prebuilt`` (what the tests use): the stage is swapped for an image of the runtime already built
  on this machine by ``airflow-mlops runtime build`` from the same lock file (the TFX root filesystem
  imported as it is; a virtualenv moved to ``/opt/runtime``). Seconds. Every later stage (user, sshd,
  the provider's code, the spec's probe) runs from the Dockerfile unchanged.

Each image is tagged ``localhost/airflow-mlops-<name>:<version>`` (what ``[mlops] kubernetes_image``
names by default) and labelled with the hash of its inputs (the Dockerfile, its base, its
.dockerignore, every file its COPY takes, the prebuilt runtime): a build whose inputs have not changed
is skipped, and podman's layer cache keeps the steps before the first changed one. An image is built in two parts:
what comes before the provider's code (``airflow-mlops-<name>-deps``, its own inputs in its label), then the code and
what follows it on top: podman hashes a ``COPY --from`` source on every build, gigabytes for a runtime, so a change of
the code rebuilds only the second part (tfx: 9 s instead of 55 s).

``python -m tests.containers.images [NAME ...] [--runtime-from lock]`` builds them (``make images``), then removes
the untagged images earlier builds left (the store would otherwise grow with every change of the code).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import airflow_mlops
from airflow_mlops.runtimes.builder import DEFAULT_DEBIAN_MIRROR, default_cache_dir, ensure_runtime
from airflow_mlops.runtimes.specs import get_runtime_spec
from tests.containers import dockerfile
from tests.containers.podman import image_exists, inspect, podman, unavailable

REPO = Path(__file__).resolve().parents[2]
VERSION = airflow_mlops.__version__
INPUTS_LABEL = "airflow-mlops.inputs"
#: the inputs of an image's part before the provider's code (built as ``airflow-mlops-<name>-deps``)
DEPS_LABEL = "airflow-mlops.deps-inputs"
#: what the provider's code is, in a Dockerfile's COPY: a change of these rebuilds only what follows their COPY
CODE = ("airflow_mlops", "pyproject.toml", "README.md")
RUNTIME_FROM_LABEL = "airflow-mlops.runtime-from"
Log = Callable[[str], None]


@dataclass(frozen=True)
class BaseImage:
    """A Debian release with its Python, made locally (debootstrap + ``podman import``)."""

    suite: str
    python: str
    packages: tuple[str, ...] = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")

    def key(self, mirror: str) -> str:
        digest = hashlib.sha256(f"{self.suite} {self.packages} {mirror}".encode())
        for host_file in HOST_FILES:
            if os.path.isfile(host_file):
                digest.update(Path(host_file).read_bytes())
        return digest.hexdigest()[:12]


#: the Debian release whose Python a lock file was resolved with
BASES = {"3.11": BaseImage("bookworm", "3.11"), "3.13": BaseImage("trixie", "3.13")}
#: the host's TLS trust and pip settings, so that pip in a build reaches the same index as on the host
HOST_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf")


@dataclass(frozen=True)
class Recipe:
    """One image of docker/."""

    name: str
    dockerfile: str
    runtime: str | None = None
    python: str = "3.11"

    @property
    def ref(self) -> str:
        return f"localhost/airflow-mlops-{self.name}:{VERSION}"


def _lock_python(runtime: str) -> str:
    return re.search(r"Python (3\.\d+)", get_runtime_spec(runtime).lock_text()).group(1)


RECIPES = {
    "tfx": Recipe("tfx", "docker/tfx/Dockerfile", "tfx", _lock_python("tfx")),
    "serving": Recipe("serving", "docker/serving/Dockerfile", "serving", _lock_python("serving")),
    "drift": Recipe("drift", "docker/drift/Dockerfile", "drift", _lock_python("drift")),
    # apache/airflow:3.3.2-python3.11 is the Dockerfile's default base
    "airflow": Recipe("airflow", "docker/airflow/Dockerfile", None, "3.11"),
}


def _images_with_label(label: str, value: str) -> list[str]:
    out = podman("images", "--filter", f"label={label}={value}", "--format", "{{.ID}}").stdout
    return [line for line in out.split() if line]


def base_image(python: str, *, mirror: str = DEFAULT_DEBIAN_MIRROR, log: Log = print) -> str:
    """The local base image for ``python`` (made when missing)."""
    base = BASES[python]
    ref = f"localhost/airflow-mlops-base:{base.suite}-{base.key(mirror)}"
    if image_exists(ref):
        return ref
    debs = default_cache_dir() / "debootstrap-debs"
    debs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="airflow-mlops-base-", dir="/var/tmp") as tmp:
        tree = Path(tmp, "tree")
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(base.packages)}",
                        f"--cache-dir={debs}", base.suite, str(tree), mirror],
                       check=True, stdout=subprocess.DEVNULL)
        # pip installs into the image's Python, as in the python:*-slim images (PEP 668 is for hosts)
        for marker in tree.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        for host_file in HOST_FILES:
            if os.path.isfile(host_file):
                shutil.copyfile(host_file, tree / host_file.lstrip("/"))
        shutil.rmtree(tree / "var/cache/apt/archives", ignore_errors=True)
        (tree / "var/cache/apt/archives/partial").mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(tree), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "--change", "ENV=LANG=C.UTF-8", "--change", 'CMD ["python3"]', "-", ref, stdin=tar.stdout)
        tar.wait()
    log(f"base image {ref}: Debian {base.suite}, Python {python} ({time.monotonic() - started:.0f} s)")
    return ref


def _relocated_venv(venv: Path, python: str, target: str = "opt/runtime") -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """The virtualenv at ``venv`` as tar members under ``target``, for the image's ``/usr/bin/python<python>``:
    its interpreter links, ``pyvenv.cfg`` and its scripts' ``#!`` lines point into the image (a venv is made
    for one path and one interpreter; its packages only need the same Python version)."""
    shebang = re.compile(rb"^#!\S*/bin/python[0-9.]*")
    for root, dirs, files in os.walk(venv):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            path = Path(root, name)
            rel = path.relative_to(venv)
            info = tarfile.TarInfo(f"{target}/{rel}")
            st = path.lstat()
            info.mode, info.mtime = st.st_mode & 0o7777, int(st.st_mtime)
            if path.is_symlink():
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
                if rel.parts[0] == "bin" and os.path.isabs(info.linkname) and re.fullmatch(r"python[0-9.]*", name):
                    info.linkname = f"/usr/bin/python{python}"
                yield info, None
            elif path.is_dir():
                info.type = tarfile.DIRTYPE
                yield info, None
            elif path.is_file():
                data = path.read_bytes()
                if rel.parts[0] == "bin" and shebang.match(data):
                    data = shebang.sub(f"#!/{target}/bin/python".encode(), data, count=1)
                elif str(rel) == "pyvenv.cfg":
                    data = re.sub(rb"(?m)^home = .*$", b"home = /usr/bin", data)
                    data = re.sub(rb"(?m)^(executable|command) = .*\n", b"", data)
                info.size = len(data)
                yield info, data


def runtime_image(runtime: str, *, log: Log = print) -> str:
    """An image holding ``runtime`` as this machine built it: ``/opt/runtime`` and ``/opt/runtime-lock.txt``."""
    install = ensure_runtime(get_runtime_spec(runtime), default_cache_dir(), build=False)
    ref = f"localhost/airflow-mlops-runtime-{runtime}:{install.key[:12]}"
    if image_exists(ref):
        return ref
    started = time.monotonic()
    if install.isolation == "rootfs":  # a Debian tree with the runtime at /opt/runtime already
        tar = subprocess.Popen(["tar", "-C", str(install.path), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "-", ref, stdin=tar.stdout)
        tar.wait()
    else:
        with tempfile.TemporaryFile(dir="/var/tmp") as spool:
            with tarfile.open(fileobj=spool, mode="w") as out:
                opt = tarfile.TarInfo("opt")
                opt.type, opt.mode = tarfile.DIRTYPE, 0o755
                out.addfile(opt)
                for info, data in _relocated_venv(install.path, _lock_python(runtime)):
                    out.addfile(info, io.BytesIO(data) if data is not None else None)
                lock = get_runtime_spec(runtime).lock_text().encode()
                info = tarfile.TarInfo("opt/runtime-lock.txt")
                info.size, info.mode = len(lock), 0o644
                out.addfile(info, io.BytesIO(lock))
            spool.seek(0)
            podman("import", "-", ref, stdin=spool)
    log(f"runtime image {ref}: {install.isolation} runtime {install.path} ({time.monotonic() - started:.0f} s)")
    return ref


def _context_files(sources: list[str]) -> Iterator[Path]:
    for source in sorted(sources):
        path = REPO / source
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for name in sorted(files):
                    if not name.endswith((".pyc", ".pyo")):
                        yield Path(root, name)
        else:
            yield path


def build_image(name: str, *, runtime_from: str = "prebuilt", log: Log = print) -> str:
    """Build image ``name`` of :data:`RECIPES` (skipped when its inputs have not changed); its tag."""
    if reason := unavailable():
        raise RuntimeError(f"cannot build images here: {reason}")
    recipe = RECIPES[name]
    path = REPO / recipe.dockerfile
    text = path.read_text()
    base = base_image(recipe.python, log=log)
    if recipe.runtime and runtime_from == "prebuilt":
        text = dockerfile.replace_stage(text, "build", runtime_image(recipe.runtime, log=log))
    elif runtime_from != "lock" and recipe.runtime:
        raise ValueError(f"runtime_from must be 'prebuilt' or 'lock', not {runtime_from!r}")
    ignore = path.with_name(path.name + ".dockerignore")
    ignore_bytes = ignore.read_bytes() if ignore.exists() else b""
    inputs = _inputs(text, base, runtime_from, ignore_bytes)
    built = _images_with_label(INPUTS_LABEL, inputs)
    if built:
        podman("tag", built[0], recipe.ref)
        log(f"image {recipe.ref}: up to date ({inputs})")
        return recipe.ref
    started = time.monotonic()
    labels = {INPUTS_LABEL: inputs, RUNTIME_FROM_LABEL: runtime_from}
    split = dockerfile.split_before(text, CODE)
    if split:
        # two builds: what comes before the provider's code (the runtime, users, sshd: gigabytes that podman's
        # cache would hash again on every build), kept as an image of its own until its inputs change; then the
        # code and what follows it, on top of that image: a change of the code rebuilds only the second
        head, tail = split
        deps_inputs = _inputs(head, base, runtime_from, ignore_bytes)
        deps_ref = f"localhost/airflow-mlops-{recipe.name}-deps:{VERSION}"
        built_deps = (inspect(deps_ref, "image")["Config"].get("Labels") or {}) if image_exists(deps_ref) else {}
        if built_deps.get(DEPS_LABEL) != deps_inputs:
            _podman_build(head, ignore, base, {DEPS_LABEL: deps_inputs}, deps_ref, recipe.dockerfile)
        _podman_build(f"FROM {deps_ref}\n{tail}", ignore, base, labels, recipe.ref, recipe.dockerfile)
    else:
        _podman_build(text, ignore, base, labels, recipe.ref, recipe.dockerfile)
    log(f"image {recipe.ref}: built from {recipe.dockerfile} ({runtime_from} runtime) in "
        f"{time.monotonic() - started:.0f} s")
    return recipe.ref


def _inputs(text: str, base: str, runtime_from: str, ignore: bytes) -> str:
    """The hash of a build's inputs: the Dockerfile text, the base image, the .dockerignore and every file its COPY
    instructions take from the build context."""
    digest = hashlib.sha256(f"{text}\0{base}\0{runtime_from}\0".encode())
    digest.update(ignore)
    for file in _context_files(dockerfile.context_sources_of(text)):
        digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _podman_build(text: str, ignore: Path, base: str, labels: dict[str, str], tag: str, source: str) -> None:
    with tempfile.TemporaryDirectory(prefix="airflow-mlops-image-") as tmp:
        file = Path(tmp, "Dockerfile")
        file.write_text(text)
        result = podman("build", "--layers", "-f", str(file), *(["--ignorefile", str(ignore)] if ignore.exists() else []),
                        "--build-arg", f"BASE={base}", *(f"--label={k}={v}" for k, v in labels.items()),
                        "-t", tag, str(REPO), check=False, capture=False)
    if result.returncode:
        raise RuntimeError(f"podman build of {source} failed (exit {result.returncode}): see the output above")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"images (default: all of {', '.join(RECIPES)})")
    parser.add_argument("--runtime-from", choices=("prebuilt", "lock"), default="prebuilt")
    args = parser.parse_args(argv)
    if reason := unavailable():
        print(f"images: not built, containers cannot run here: {reason}")
        return 0
    if unknown := sorted(set(args.names) - set(RECIPES)):
        parser.error(f"unknown image(s) {unknown}; known: {list(RECIPES)}")
    for name in args.names or list(RECIPES):
        build_image(name, runtime_from=args.runtime_from)
    # the images of earlier inputs, now untagged, and their layers: the store would grow with every code change
    pruned = podman("image", "prune", "--force", check=False).stdout.split()
    print(f"images: {len(pruned)} untagged image(s) of earlier builds removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
