"""A kubelet for the FAKE API server (tests/kubernetes/fake_api.py) that runs pods as REAL containers.

The API server and its controllers stay fake; what a pod does is real: its first container runs with
podman (tests/containers/podman.py) from the pod's image, as the pod spec says:

=========================================  ==================================================================
pod spec                                   podman run
=========================================  ==================================================================
``image``                                  the image (``images`` maps a registry name to the local build)
``command`` / ``args``                     ``--entrypoint`` (JSON) / the arguments after the image, as Kubernetes
                                           overrides ENTRYPOINT / CMD
``env`` (``value``, ``fieldRef``)          ``--env``
``workingDir``                             ``--workdir``
``securityContext`` (pod, then container)  ``--user runAsUser:runAsGroup``, ``--group-add fsGroup``,
                                           ``--read-only`` (``readOnlyRootFilesystem``; no tmpfs is added: a
                                           read-only root has a writable ``/tmp`` only where the pod mounts one)
``volumes``: ``persistentVolumeClaim``     a bind mount of the claim's directory (``claims``), ``subPath``;
                                           ``fsGroup`` owns it, group-writable, as the kubelet makes it
``emptyDir``                               a bind mount of a fresh directory, removed with the pod
``configMap`` / ``secret``                 their keys as files (``objects`` reads them from the fake), read-only,
                                           root's, mode ``items[].mode`` / ``defaultMode`` (0644); ``fsGroup``
                                           owns them, group-readable; rewritten while the pod runs when the
                                           object changes, as the kubelet syncs them (e.g. the MPI Operator's
                                           ``discover_hosts.sh``)
``resources.limits`` memory / cpu          ``--memory`` (and no swap) / ``--cpus``
``hostname``, ``subdomain``                ``--hostname``; on a network of its own (``network``), the names the
                                           cluster's DNS gives the pod: ``hostname``, ``hostname.subdomain``,
                                           ``hostname.subdomain.<namespace>.svc[.cluster.local]``
                                           (``--network-alias``), and the pod's DNS search path (``--dns-search``:
                                           ``<namespace>.svc.cluster.local svc.cluster.local cluster.local``, then
                                           ``dnsConfig.searches``)
=========================================  ==================================================================

The log is the container's merged stdout/stderr; the exit code decides the phase; a container killed by
its memory limit ends ``OOMKilled`` (the kernel log's OOM kill in its cgroup, as the kubelet's OOM
watcher reads it; or podman's ``State.OOMKilled``). Deleting
the pod stops the container (SIGTERM, SIGKILL after ``kill_after`` s). Not done: probes, restarts,
init containers, image pulls (a missing image is ``ErrImagePull`` at once), ``requests``, sidecars.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.containers.podman import env as podman_env
from tests.containers.podman import image_exists, podman
from tests.kubernetes.fake_api import PodRun, _expand, _path_get

FAKE_POD_LABEL = "airflow-mlops.fake-pod"
CLUSTER_DOMAIN = "cluster.local"
#: seconds between two syncs of a running pod's configMap and secret volumes with their objects
VOLUME_SYNC_S = 0.5
_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def memory_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity (``512Mi``, ``1G``, ``1e9``) in bytes."""
    m = re.fullmatch(r"([0-9.eE+]+)([kMGT]i?)?", str(quantity).strip())
    if not m:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


def cpus(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity (``500m``, ``2``) in CPUs."""
    text = str(quantity).strip()
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _own(root: Path, group: int) -> None:
    """What the kubelet does to a volume for a pod's ``fsGroup``: the group owns every file, can read and
    write it, and directories pass the group on (setgid)."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        st = path.stat()
        if st.st_gid != group:
            os.chown(path, -1, group)
        mode = st.st_mode | 0o060 | (0o2010 if path.is_dir() else 0)
        if mode != st.st_mode:
            path.chmod(mode & 0o7777)


def _oom_killed(name: str) -> bool:
    """Whether the kernel's OOM killer killed a process of container ``name`` at its memory cgroup's limit.

    Read from the kernel log, as the kubelet's OOM watcher (cAdvisor's oomparser) reads ``/dev/kmsg``: podman's
    own ``State.OOMKilled`` stays false on these machines (cgroup v1, cgroupfs)."""
    cid = podman("inspect", "--format", "{{.Id}}", name, check=False).stdout.strip()
    if not cid:
        return False
    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any("oom-kill:" in line and f"oom_memcg=/libpod_parent/libpod-{cid}" in line for line in log.splitlines())


def _project(target: Path, files: Mapping[str, tuple[bytes, int]], group: int | None) -> None:
    """Write a configMap/secret volume's ``files`` (path → (content, mode)) under ``target`` as the kubelet does:
    root's, with their mode; with an ``fsGroup`` the group's and group-readable. A file is replaced at once
    (written aside, then renamed), so a reader never sees half of it."""
    for rel, (content, mode) in files.items():
        path = target / rel
        if group is not None:
            mode |= 0o440
        try:
            st = path.stat()
            if path.read_bytes() == content and st.st_mode & 0o7777 == mode and group in (None, st.st_gid):
                continue
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}")
        aside.write_bytes(content)
        if group is not None:
            os.chown(aside, -1, group)
        aside.chmod(mode)
        os.replace(aside, path)


class _Container:
    def __init__(self, argv: list[str], name: str, kill_after: float, scratch: Path, run: PodRun,
                 syncs: list[Callable[[], None]] | None = None) -> None:
        self.argv, self.name, self.kill_after, self.scratch, self.run = argv, name, kill_after, scratch, run
        self.syncs = list(syncs or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        # in the pod's scratch directory: conmon leaves an ``oom`` file in its working directory when the container
        # is OOM-killed on these machines (cgroup v1), which would otherwise land in the caller's (the repository)
        self.proc = subprocess.Popen(["podman", *self.argv], env=podman_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.scratch)
        if self.syncs:
            threading.Thread(target=self._sync_volumes, name=f"volumes-{self.name}", daemon=True).start()

    def _sync_volumes(self) -> None:
        """The kubelet's sync of configMap and secret volumes while the container runs (a deleted object leaves
        the files as they were)."""
        while not self._stopped.wait(VOLUME_SYNC_S) and self.proc is not None and self.proc.poll() is None:
            for sync in self.syncs:
                try:
                    sync()
                except (OSError, ValueError):
                    pass

    def lines(self) -> Iterator[bytes]:
        assert self.proc is not None and self.proc.stdout is not None
        yield from iter(self.proc.stdout.readline, b"")

    def exit_code(self) -> int:
        assert self.proc is not None
        code = self.proc.wait()
        try:
            state = json.loads(podman("inspect", "--format", "{{json .State}}", self.name, check=False).stdout or "{}")
        except ValueError:
            state = {}
        if state.get("OOMKilled") or (state.get("ExitCode") == 137 and ((self.scratch / "oom").exists()
                                                                       or _oom_killed(self.name))):
            self.run.reason = "OOMKilled"
        self._remove()
        return int(state.get("ExitCode", code)) if state else code

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.proc is not None and self.proc.poll() is None:
            podman("stop", "--time", str(int(self.kill_after)), self.name, check=False)
            try:
                self.proc.wait(timeout=self.kill_after + 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._remove()

    def _remove(self) -> None:
        podman("rm", "--force", "--ignore", self.name, check=False)
        shutil.rmtree(self.scratch, ignore_errors=True)


class PodmanKubelet:
    """Runs each pod's first container with podman (see the module's table).

    :param claims: persistent volume claim name → the host directory that is its storage.
    :param images: maps a pod's image to a local one (e.g. ``registry.example/x:1`` → ``localhost/x:1``).
    :param network: the podman network pods join; ``host``: the host's network (pods reach each other on
        ``127.0.0.1``; a server in a pod is reached on the host's port).
    :param objects: ``fn(plural, namespace, name) -> manifest | None``: the fake's ConfigMaps and Secrets.
    :param skip: ``fn(pod) -> PodRun | None``: a pod this kubelet does not run (its PodRun, or None for the
        fake's default) when it returns something other than ``False``.
    """

    def __init__(
        self,
        *,
        claims: Mapping[str, str | os.PathLike[str]] | None = None,
        images: Callable[[str], str] | None = None,
        network: str = "host",
        objects: Callable[[str, str, str], dict | None] | None = None,
        kill_after: float = 5.0,
        skip: Callable[[dict], Any] | None = None,
        extra_args: Callable[[dict], list[str]] | None = None,
    ) -> None:
        self.claims = {k: Path(v) for k, v in (claims or {}).items()}
        self.images, self.network, self.objects, self.kill_after = images, network, objects, kill_after
        self.skip, self.extra_args = skip, extra_args
        self.started: list[dict[str, Any]] = []  # what ran: pod name, image, the podman arguments

    def close(self) -> None:
        """Remove every container this kubelet started that is still there (the fake stops its pods' runs in
        background threads, which a test process may not wait for)."""
        names = [run["container"] for run in self.started]
        if names:
            podman("rm", "--force", "--ignore", "--time", "0", *names, check=False)

    def __enter__(self) -> PodmanKubelet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, pod: dict) -> PodRun | None:
        if self.skip is not None:
            skipped = self.skip(pod)
            if skipped is not False:
                return skipped
        spec, meta = pod["spec"], pod["metadata"]
        container = spec["containers"][0]
        image = self.images(container["image"]) if self.images else container["image"]
        if not image_exists(image):
            return PodRun(pending_reason="ErrImagePull",
                          pending_message=f"image {image!r} is not on this machine (PodmanKubelet pulls nothing)")
        name = f"fakepod-{meta['name'][:40]}-{uuid.uuid4().hex[:6]}"
        scratch = Path(tempfile.mkdtemp(prefix="fakepod-", dir="/var/tmp"))
        scratch.chmod(0o755)
        syncs: list[Callable[[], None]] = []
        try:
            args = self._args(pod, container, name, scratch, syncs)
        except ValueError as err:
            shutil.rmtree(scratch, ignore_errors=True)
            return PodRun(pending_reason="CreateContainerConfigError", pending_message=str(err))
        if self.extra_args is not None:
            args += self.extra_args(pod)
        argv = ["run", *args, image, *[_expand(a, self._env(pod, container)) for a in container.get("args") or []]]
        self.started.append({"pod": meta["name"], "image": image, "args": argv, "container": name})
        run = PodRun()
        box = _Container(argv, name, self.kill_after, scratch, run, syncs)
        run.logs, run.exit_code, run.start, run.stop = box.lines, box.exit_code, box.start, box.stop
        return run

    @staticmethod
    def _env(pod: dict, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = _expand(str(var["value"]), env)
                continue
            ref = (var.get("valueFrom") or {}).get("fieldRef")
            if ref:
                path = ref.get("fieldPath", "")
                if m := re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path):
                    env[var["name"]] = ((pod["metadata"].get(m.group(1)) or {}).get(m.group(2))) or ""
                else:
                    got = _path_get(pod, path)
                    env[var["name"]] = "" if got is None else str(got)
            elif var.get("valueFrom"):
                raise ValueError(f"env {var['name']}: only value and fieldRef are supported by PodmanKubelet")
        return env

    def _args(self, pod: dict, container: dict, name: str, scratch: Path, syncs: list[Callable[[], None]]) -> list[str]:
        spec, meta = pod["spec"], pod["metadata"]
        args = ["--name", name, "--label", f"{FAKE_POD_LABEL}={meta.get('uid', '')}", "--network", self.network,
                "--pull", "never"]
        hostname = spec.get("hostname") or meta["name"]
        if self.network != "host":
            namespace = meta.get("namespace") or "default"
            args += ["--hostname", hostname[:63]]
            aliases = [hostname]
            if spec.get("subdomain"):
                fqdn = f"{hostname}.{spec['subdomain']}"
                aliases += [fqdn, f"{fqdn}.{namespace}.svc", f"{fqdn}.{namespace}.svc.{CLUSTER_DOMAIN}"]
            for alias in aliases:
                args += ["--network-alias", alias]
            searches = [f"{namespace}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN,
                        *((spec.get("dnsConfig") or {}).get("searches") or [])]
            for search in dict.fromkeys(searches):
                args += ["--dns-search", search]
        security = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
        if "runAsUser" in security:
            args += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"]
        if "fsGroup" in (spec.get("securityContext") or {}):
            args += ["--group-add", str(spec["securityContext"]["fsGroup"])]
        if security.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]
        for key, value in self._env(pod, container).items():
            args += ["--env", f"{key}={value}"]
        if container.get("workingDir"):
            args += ["--workdir", container["workingDir"]]
        limits = (container.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            memory = memory_bytes(limits["memory"])
            args += ["--memory", str(memory), "--memory-swap", str(memory)]
        if "cpu" in limits:
            args += ["--cpus", f"{cpus(limits['cpu']):g}"]
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise ValueError(f"volumeMount {mount['name']!r} names no volume of the pod")
            source = self._volume(pod, volume, scratch, syncs)
            if mount.get("subPath"):
                source = source / mount["subPath"]
                source.mkdir(parents=True, exist_ok=True)
            ro = mount.get("readOnly") or "configMap" in volume or "secret" in volume
            args += ["--volume", f"{source}:{mount['mountPath']}" + (":ro" if ro else "")]
        if container.get("command"):
            args += ["--entrypoint", json.dumps([_expand(a, self._env(pod, container)) for a in container["command"]])]
        return args

    def _volume(self, pod: dict, volume: dict, scratch: Path, syncs: list[Callable[[], None]]) -> Path:
        namespace = pod["metadata"]["namespace"]
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in self.claims:
                raise ValueError(f"persistentVolumeClaim {claim!r} is bound to no directory of this kubelet")
            group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
            if group is not None:
                _own(self.claims[claim], int(group))
            return self.claims[claim]
        target = scratch / volume["name"]
        target.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            target.chmod(0o1777)  # writable by the pod's user, as an emptyDir is
            return target
        group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
        for kind, plural in (("configMap", "configmaps"), ("secret", "secrets")):
            if kind in volume:
                source = volume[kind]
                ref = source.get("name") or source.get("secretName")

                def files(source: dict = source, kind: str = kind, plural: str = plural,
                          ref: str = ref) -> dict[str, tuple[bytes, int]]:
                    obj = self.objects(plural, namespace, ref) if self.objects else None
                    if obj is None:
                        raise ValueError(f"{kind} {namespace}/{ref} not found")
                    data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()} if kind == "secret" \
                        else {k: v.encode() for k, v in (obj.get("data") or {}).items()}
                    items = source.get("items") or [{"key": k, "path": k} for k in data]
                    mode = source.get("defaultMode", 0o644)
                    missing = [item["key"] for item in items if item["key"] not in data]
                    if missing:
                        raise ValueError(f"{kind} {namespace}/{ref} has no key(s) {missing}")
                    return {item["path"]: (data[item["key"]], item.get("mode", mode)) for item in items}

                _project(target, files(), group)
                syncs.append(lambda files=files: _project(target, files(), group))
                return target
        raise ValueError(f"volume {volume['name']!r}: only persistentVolumeClaim, emptyDir, configMap and secret "
                         "volumes are supported by PodmanKubelet")
