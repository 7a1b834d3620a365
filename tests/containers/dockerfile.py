"""A Dockerfile read into stages: what the Dockerfile lint tests check and what the image builder
hashes (the files its COPY instructions take from the build context) and rewrites (one stage
swapped for a prebuilt image)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


def parse_text(text: str, where: str = "Dockerfile") -> tuple[list[Instruction], list[list[Instruction]]]:
    """``(global ARGs, stages)``: the instructions before the first FROM (only ARG is allowed there) and
    one list per stage (continuations joined, comments dropped)."""
    head: list[Instruction] = []
    stages: list[list[Instruction]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        pending = ""
        instruction = Instruction(keyword.upper(), args.strip(), start)
        if instruction.keyword == "FROM":
            stages.append([])
        if not stages:
            assert instruction.keyword == "ARG", f"{where}:{start}: {keyword} before the first FROM"
            head.append(instruction)
            continue
        stages[-1].append(instruction)
    return head, stages


def parse(path: Path) -> list[list[Instruction]]:
    """The stages of the Dockerfile at ``path``."""
    return parse_text(Path(path).read_text(), str(path))[1]


def global_args(path: Path) -> dict[str, str]:
    """The ARGs before the first FROM, with their defaults."""
    args = {}
    for instruction in parse_text(Path(path).read_text(), str(path))[0]:
        name, _, default = instruction.args.partition("=")
        args[name] = default
    return args


def stage_name(stage: list[Instruction]) -> str | None:
    words = stage[0].args.split()
    return words[-1] if len(words) == 3 and words[1].upper() == "AS" else None


def copy_args(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """``(flags, sources, destination)`` of a COPY/ADD."""
    words = json.loads(instruction.args) if instruction.args.lstrip().startswith("[") else shlex.split(instruction.args)
    flags = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words[:-1], words[-1]


def context_sources(path: Path) -> list[str]:
    """The build-context paths the Dockerfile's COPY instructions take (not those copied from a stage)."""
    return context_sources_of(Path(path).read_text())


def context_sources_of(text: str) -> list[str]:
    """:func:`context_sources` of a Dockerfile's text."""
    sources: list[str] = []
    for stage in parse_text(text)[1]:
        for instruction in stage:
            if instruction.keyword in ("COPY", "ADD"):
                flags, srcs, _ = copy_args(instruction)
                if "from" not in flags:
                    sources += [s for s in srcs if s not in sources]
    return sources


def replace_stage(text: str, name: str, image: str) -> str:
    """The Dockerfile ``text`` with stage ``name`` (``FROM ... AS name`` up to the next FROM) replaced by
    ``FROM image AS name``: what the later stages copy from it comes from the prebuilt ``image``."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    skipping, found = False, False
    for line in lines:
        words = line.split()
        if words and words[0].upper() == "FROM":
            is_stage = len(words) == 4 and words[2].upper() == "AS" and words[3] == name
            if is_stage:
                out.append(f"# stage {name!r} replaced by a prebuilt image (tests/containers/images.py)\n")
                out.append(f"FROM {image} AS {name}\n")
                skipping = found = True
                continue
            skipping = False
        if not skipping:
            out.append(line)
    if not found:
        raise ValueError(f"the Dockerfile has no stage {name!r}")
    return "".join(out)


def split_before(text: str, sources: tuple[str, ...]) -> tuple[str, str] | None:
    """``(head, tail)`` of the Dockerfile ``text``, split before the last stage's first COPY from the build context
    of one of ``sources`` (a path, or a path under it); None when that stage copies none of them.

    ``head`` is a Dockerfile of its own (every stage, the last one up to the split); ``tail`` the rest of the last
    stage, with the ARGs that stage declared before the split (their values are not kept in an image), to follow
    a ``FROM`` of the image built from ``head``. Nothing else of the stage is lost: ENV, USER, WORKDIR, LABEL and
    the like are kept in the head image's configuration.
    """
    stages = parse_text(text)[1]
    if not stages:
        return None
    last = stages[-1]
    for index, instruction in enumerate(last):
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        flags, srcs, _ = copy_args(instruction)
        if "from" in flags:
            continue
        if any(src.rstrip("/") == s or src.startswith(s.rstrip("/") + "/") for src in srcs for s in sources):
            lines = text.splitlines(keepends=True)
            args = [f"ARG {i.args}\n" for i in last[1:index] if i.keyword == "ARG"]
            return "".join(lines[:instruction.line - 1]), "".join(args + lines[instruction.line - 1:])
    return None
