"""Where a runtime's packages come from (standard library only).

Two things decide it, and this module is the one place that turns them into pip's options:

* the runtime spec's own ``extra_index_urls``: the indexes its lock file needs besides PyPI
  (the drift runtime's ``torch==…+cpu`` is on PyTorch's CPU index only);
* the user's :class:`PackageSources`, from the ``[mlops] pip_*`` settings: a mirror that
  replaces PyPI, more indexes, wheel directories (find-links), trusted hosts, and an offline
  mode that reads only wheel directories.

The local builder (virtualenv and root filesystem) and the images under ``docker/`` all call
:func:`pip_install_command`, so the three cannot disagree about where a package is found.
When pip finds no distribution of a pinned package, :func:`explain_missing_package` names
the package, the indexes pip looked in, and the setting to change.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from airflow_mlops.runtimes.specs import RuntimeSpec

PYPI_SIMPLE = "https://pypi.org/simple"

#: The settings that make up :class:`PackageSources` (``[mlops] <name>``).
SETTINGS = (
    "pip_index_url",
    "pip_extra_index_urls",
    "pip_find_links",
    "pip_trusted_hosts",
    "pip_offline",
    "pip_spec_indexes",
)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
README_SECTION = "README.md, Runtimes → Package sources"


class PackageSourceError(ValueError):
    """A ``pip_*`` setting is malformed or does not make sense; the message names it."""


@dataclass(frozen=True)
class PackageSources:
    """The user's package sources for one runtime's build.

    :param index_url: replaces PyPI (or the index configured in pip's own files) as the main index.
    :param extra_index_urls: indexes searched besides the main one and the spec's own.
    :param find_links: wheel directories (or pages of links) searched as well.
    :param trusted_hosts: hosts whose plain-HTTP or self-signed indexes pip may use.
    :param offline: read only ``find_links`` (pip's ``--no-index``): an air-gapped build.
    :param spec_indexes: also search the indexes the runtime spec declares (e.g. PyTorch's CPU
        index); ``False`` where your own indexes mirror them.
    :param unreachable: spec indexes found unreachable just before the build (:meth:`checked`),
        left out (pip would skip them too, after retrying every package against them).
    """

    index_url: str = ""
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    offline: bool = False
    spec_indexes: bool = True
    unreachable: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.offline and not self.find_links:
            raise PackageSourceError(
                "[mlops] pip_offline = True reads packages only from wheel directories, but pip_find_links is "
                "empty: set pip_find_links to the directory you filled with `airflow-mlops runtime download`"
            )

    @classmethod
    def from_settings(cls, get: Callable[[str], str], runtime: str) -> PackageSources:
        """Resolve the ``pip_*`` settings for ``runtime``.

        :param get: returns a setting's text (argument → connection extra → ``[mlops]`` → default).
            Each value applies to every runtime, or is a JSON object by runtime name, where ``"*"``
            stands for the runtimes not named.
        """
        raw = {name: _for_runtime(name, get(name), runtime) for name in SETTINGS}
        return cls(
            index_url=raw["pip_index_url"].strip(),
            extra_index_urls=_split("pip_extra_index_urls", raw["pip_extra_index_urls"]),
            find_links=tuple(_local_or_url(v) for v in _split("pip_find_links", raw["pip_find_links"])),
            trusted_hosts=_split("pip_trusted_hosts", raw["pip_trusted_hosts"]),
            offline=_bool("pip_offline", raw["pip_offline"], False),
            spec_indexes=_bool("pip_spec_indexes", raw["pip_spec_indexes"], True),
        )

    def extra_indexes(self, spec: RuntimeSpec) -> tuple[str, ...]:
        """Every index searched besides the main one: the spec's (unless switched off), then the user's."""
        if self.offline:
            return ()
        declared = [url for url in spec.extra_index_urls if url not in self.unreachable] if self.spec_indexes else []
        return tuple(dict.fromkeys((*declared, *self.extra_index_urls)))

    def checked(self, spec: RuntimeSpec, log: Callable[[str], None], timeout: float = 10.0) -> PackageSources:
        """These sources with the spec's indexes that cannot be reached from here left out, each said in ``log``.

        pip skips an index it cannot reach only after retrying it for every package (about 8 s each:
        8 minutes for the drift runtime); a build behind a firewall or offline should not pay that.
        """
        if self.offline or not self.spec_indexes:
            return self
        unreachable = []
        for url in spec.extra_index_urls:
            reason = index_unreachable(url, timeout)
            if reason:
                log(f"warning: the {spec.name!r} runtime's index {url} cannot be reached ({reason}); building "
                    "without it. If a package is then missing, give a mirror of it in [mlops] pip_extra_index_urls "
                    "(and pip_spec_indexes = False) or a wheel directory in pip_find_links.")
                unreachable.append(url)
        return replace(self, unreachable=tuple(unreachable)) if unreachable else self

    def pip_options(self, spec: RuntimeSpec) -> list[str]:
        """pip's command-line options for installing or downloading ``spec``'s packages."""
        options: list[str] = []
        if self.offline:
            options.append("--no-index")
        elif self.index_url:
            options += ["--index-url", self.index_url]
        for url in self.extra_indexes(spec):
            options += ["--extra-index-url", url]
        for link in self.find_links:
            options += ["--find-links", link]
        for host in self.trusted_hosts:
            options += ["--trusted-host", host]
        return options

    def local_paths(self, spec: RuntimeSpec) -> list[str]:
        """Host directories these sources read (find-links, ``file://`` indexes): bound into a rootfs build."""
        paths = []
        urls = [] if self.offline else [self.index_url, *self.extra_indexes(spec)]
        for location in (*urls, *self.find_links):
            if not location:
                continue
            parsed = urlparse(location)
            if parsed.scheme == "file":
                paths.append(parsed.path)
            elif not parsed.scheme and os.path.isabs(location):
                paths.append(location)
        return [p for p in dict.fromkeys(paths) if os.path.exists(p)]

    def describe(self, spec: RuntimeSpec) -> str:
        """One line saying where this build looks for packages (before pip has said it)."""
        if self.offline:
            return "offline: wheel directories " + ", ".join(self.find_links)
        main = self.index_url or "PyPI (or the index in pip's own configuration)"
        parts = [f"index {main}"]
        if self.extra_indexes(spec):
            parts.append("extra indexes " + ", ".join(self.extra_indexes(spec)))
        if self.find_links:
            parts.append("find-links " + ", ".join(self.find_links))
        return "; ".join(parts)


def pip_install_command(
    spec: RuntimeSpec, python: str, lock_path: str, sources: PackageSources | None = None
) -> list[str]:
    """The one command that installs ``spec``'s lock file with ``python``: locally, in a root filesystem, in an image."""
    sources = sources or PackageSources()
    return [python, "-m", "pip", "install", "--no-deps", *sources.pip_options(spec), "-r", lock_path]


def pip_download_command(
    spec: RuntimeSpec,
    python: str,
    lock_path: str,
    dest: str,
    sources: PackageSources | None = None,
    *,
    python_version: str | None = None,
    platforms: Sequence[str] = (),
) -> list[str]:
    """``pip download`` of ``spec``'s wheels into ``dest``, for a build elsewhere (``--python-version`` of the runtime)."""
    sources = sources or PackageSources()
    command = [python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--dest", dest]
    if python_version:
        command += ["--python-version", python_version]
    for platform in platforms:
        command += ["--platform", platform]
    return [*command, *sources.pip_options(spec), "-r", lock_path]


# -- failures -------------------------------------------------------------------------------------
_MISSING = (
    re.compile(r"No matching distribution found for (\S+)"),
    re.compile(r"Could not find a version that satisfies the requirement (\S+)"),
)
_LOOKING = re.compile(r"^Looking in (indexes|links): (.+)$")
_UNREACHABLE = re.compile(r"(Retrying \(Retry\(|Could not fetch URL|NewConnectionError|Failed to establish)")


def is_pip_diagnostic(line: str) -> bool:
    """A line of pip's output that :func:`explain_missing_package` reads (kept beyond the log's tail)."""
    return bool(_LOOKING.match(line.strip()) or any(p.search(line) for p in _MISSING) or _UNREACHABLE.search(line))


def explain_missing_package(lines: Iterable[str], spec: RuntimeSpec, sources: PackageSources) -> str | None:
    """For pip output that found no distribution of a package: what, where pip looked, what to set. Else None."""
    lines = list(lines)
    package = None
    for line in lines:
        for pattern in _MISSING:
            match = pattern.search(line)
            if match:
                package = match.group(1)
    if package is None:
        return None
    looked: dict[str, list[str]] = {"indexes": [], "links": []}
    for line in lines:
        match = _LOOKING.match(line.strip())
        if match:
            looked[match.group(1)] = [u.strip() for u in match.group(2).split(",") if u.strip()]
    if not sources.offline and not looked["indexes"]:
        looked["indexes"] = [sources.index_url or PYPI_SIMPLE, *sources.extra_indexes(spec)]
    where = []
    if looked["indexes"]:
        where.append("indexes " + ", ".join(looked["indexes"]))
    if looked["links"]:
        where.append("find-links " + ", ".join(looked["links"]))
    message = (
        f"pip found no distribution of {package} for runtime {spec.name!r} "
        f"(looked in {'; '.join(where) or 'no index and no wheel directory'})."
    )
    if any(_UNREACHABLE.search(line) for line in lines):
        message += " Some of those could not be reached (see the pip output below)."
    if sources.unreachable:
        message += f" Left out as unreachable from this machine: {', '.join(sources.unreachable)}."
    if spec.extra_index_urls and not sources.spec_indexes:
        message += (
            f" The runtime's own indexes ({', '.join(spec.extra_index_urls)}) are switched off by "
            "[mlops] pip_spec_indexes = False, so your indexes must serve what they hold."
        )
    if sources.offline:
        message += (
            " Offline builds read only [mlops] pip_find_links: fill it on a connected machine with "
            f"`airflow-mlops runtime download {spec.name} DIR`."
        )
    else:
        message += (
            " Point the build at a source that has it: [mlops] pip_index_url (replaces PyPI), "
            "pip_extra_index_urls (more indexes), pip_find_links (a wheel directory), or pip_offline = True "
            "with pip_find_links (air-gapped); each may be a JSON object by runtime "
            f'(e.g. {{"{spec.name}": "..."}}). See {README_SECTION}.'
        )
    return message


def index_unreachable(url: str, timeout: float = 10.0) -> str | None:
    """Why the package index at ``url`` cannot be reached (name resolution, connection, timeout), else None.

    Any HTTP answer, an error status or a TLS failure included, counts as reachable: pip may still
    use it with its own certificates, credentials or proxy settings.
    """
    import socket
    import ssl
    import urllib.error
    import urllib.request

    parsed = urlparse(url)
    if parsed.scheme == "file":
        return None if os.path.exists(parsed.path) else f"{parsed.path} does not exist"
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, ssl.SSLError):
            return None
        return str(reason) or type(reason).__name__
    except (socket.timeout, TimeoutError):
        return f"no answer within {timeout:g} s"
    except ssl.SSLError:
        return None
    except OSError as err:
        return str(err)


# -- settings parsing -----------------------------------------------------------------------------
def _for_runtime(name: str, text: str | None, runtime: str) -> str:
    text = (text or "").strip()
    if not text.startswith("{"):
        return text
    try:
        by_runtime = json.loads(text)
    except ValueError as err:
        raise PackageSourceError(f"[mlops] {name} looks like a JSON object but is not valid JSON: {err}") from None
    if not isinstance(by_runtime, dict):
        raise PackageSourceError(f"[mlops] {name} must be a value or a JSON object by runtime, got {text!r}")
    value = by_runtime.get(runtime, by_runtime.get("*", ""))
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _split(name: str, text: str) -> tuple[str, ...]:
    text = text.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except ValueError as err:
            raise PackageSourceError(f"[mlops] {name} looks like a JSON list but is not valid JSON: {err}") from None
        return tuple(str(v) for v in values if str(v).strip())
    return tuple(v for v in re.split(r"[\s,]+", text) if v)


def _bool(name: str, text: str, default: bool) -> bool:
    text = text.strip().lower()
    if not text:
        return default
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise PackageSourceError(f"[mlops] {name} must be true or false, got {text!r}")


def _local_or_url(location: str) -> str:
    """A relative wheel directory is made absolute (pip runs elsewhere); URLs stay as they are."""
    if urlparse(location).scheme:
        return location
    return os.path.abspath(os.path.expanduser(location))


__all__ = [
    "PYPI_SIMPLE",
    "SETTINGS",
    "PackageSourceError",
    "PackageSources",
    "explain_missing_package",
    "index_unreachable",
    "is_pip_diagnostic",
    "pip_download_command",
    "pip_install_command",
]
