"""``airflow-mlops``: build, list and prune runtimes, and run a step by hand.

    airflow-mlops runtime list               # each runtime: state, isolation, location, disk size
    airflow-mlops runtime build tfx          # build (or reuse) the tfx runtime
    airflow-mlops runtime build tfx --force  # rebuild it
    airflow-mlops runtime download drift DIR # its packages into DIR, for an offline build elsewhere
    airflow-mlops runtime prune              # delete stale and partial builds
    airflow-mlops runtime stop               # stop warm runtimes (they exit by themselves when idle)
    airflow-mlops runtime run tfx runtime.info '{"packages": ["tfx"]}'
    airflow-mlops schema list                # each pipeline's reference schema: current version, features
    airflow-mlops schema show PIPELINE       # its record and features (--version N for an older one)
    airflow-mlops schema set PIPELINE FILE   # make FILE (a schema.pbtxt) the reference, as a new version
    airflow-mlops schema reset PIPELINE      # no reference: the next accepted span's schema becomes it

Settings come from the ``[mlops]`` section, as for the operators.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _human(bytes_: int | None) -> str:
    if bytes_ is None:
        return "-"
    size = float(bytes_)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return str(size)


def _settings():
    from airflow_mlops.hooks.runtime import RuntimeHook

    return RuntimeHook(mlops_conn_id=None)


def cmd_list(args: argparse.Namespace) -> int:
    from airflow_mlops.runtimes.builder import list_runtimes

    hook = _settings()
    rows = list_runtimes(hook.cache_dir, isolation=hook.settings.runtime_isolation, sizes=not args.no_size)
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
        return 0
    print(f"runtime cache: {hook.cache_dir}")
    print(f"{'NAME':<8} {'ISOLATION':<9} {'STATE':<10} {'SIZE':>9}  LOCATION")
    for row in rows:
        print(f"{row.name:<8} {row.isolation:<9} {row.state:<10} {_human(row.size_bytes):>9}  {row.path}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from airflow_mlops.runtimes.builder import RuntimeBuildError, ensure_runtime
    from airflow_mlops.runtimes.specs import RUNTIMES, get_runtime_spec

    hook = _settings()
    names = list(RUNTIMES) if args.name == "all" else [args.name]
    for name in names:
        try:
            install = ensure_runtime(
                get_runtime_spec(name),
                hook.cache_dir,
                isolation=hook.settings.runtime_isolation,
                force=args.force,
                mirror=hook.settings.debian_mirror,
                sources=_package_sources(hook, name),
                log=lambda line: print(line, flush=True),
            )
        except (RuntimeBuildError, KeyError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"{name}: {install.isolation} runtime at {install.path}")
    return 0


def _package_sources(hook, runtime: str):
    from airflow_mlops.runtimes.sources import PackageSources

    return PackageSources.from_settings(hook.settings.text, runtime)


def cmd_download(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from airflow_mlops.runtimes.builder import RuntimeBuildError, download_runtime
    from airflow_mlops.runtimes.specs import RUNTIMES, get_runtime_spec

    hook = _settings()
    names = list(RUNTIMES) if args.name == "all" else [args.name]
    for name in names:
        try:
            # the connected machine reads indexes, whatever the offline machine's settings say
            sources = replace(_package_sources(hook, name), offline=False)
            download_runtime(
                get_runtime_spec(name),
                Path(args.dest),
                isolation=args.isolation or hook.settings.runtime_isolation,
                sources=sources,
                python_version=args.python_version,
                platforms=args.platform or None,
                log=lambda line: print(line, flush=True),
            )
        except (RuntimeBuildError, KeyError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from airflow_mlops.runtimes.builder import prune_runtimes

    removed = prune_runtimes(_settings().cache_dir)
    print(f"removed {len(removed)} stale or partial runtime build(s)")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from airflow_mlops.runtimes.warm import stop_all

    stopped = stop_all()
    print(f"stopped {len(stopped)} warm runtime(s)" + (f": pids {', '.join(map(str, stopped))}" if stopped else ""))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from airflow_mlops.exceptions import MlopsException
    from airflow_mlops.hooks.runtime import RuntimeHook

    params = json.loads(args.params)
    hook = RuntimeHook(runtime=args.name, mlops_conn_id=None)
    try:
        outputs = hook.run_step(args.step, params, binds=[str(Path(p).absolute()) for p in args.bind])
    except MlopsException as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(outputs, indent=2))
    return 0


def _schemas():
    from airflow_mlops.utils.schema_store import ReferenceSchemaStore

    return ReferenceSchemaStore(_settings().schema_store_dir)


def _describe(store, pipeline: str, version: int | None = None) -> dict:
    from airflow_mlops.utils.schema_store import schema_features

    if version is None:
        pointer = store.root / pipeline / "CURRENT"
        if not pointer.is_file():
            return {"pipeline": pipeline, "current": None, "versions": store.versions(pipeline)}
        version = int(pointer.read_text().strip() or 0)
    row: dict = {"pipeline": pipeline, "current": version, "versions": store.versions(pipeline)}
    try:
        reference = store.get(pipeline, version)
        features = schema_features(reference.schema_file)
        row.update(schema_file=str(reference.schema_file), features=features, record=reference.meta,
                   problem=None if features else "no feature: every span would fail against it")
    except (OSError, ValueError) as err:
        row.update(problem=f"unreadable: {err}")
    return row


def cmd_schema_list(args: argparse.Namespace) -> int:
    store = _schemas()
    pipelines = sorted(p.name for p in store.root.iterdir() if p.is_dir()) if store.root.is_dir() else []
    rows = [_describe(store, p) for p in pipelines]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"reference schemas: {store.root}")
    for row in rows:
        state = row.get("problem") or f"{len(row.get('features') or [])} features"
        print(f"{row['pipeline']:<24} current v{row['current']} of {row['versions']}: {state}"
              if row["current"] else f"{row['pipeline']:<24} no current reference ({row['versions']} kept)")
    return 0


def cmd_schema_show(args: argparse.Namespace) -> int:
    row = _describe(_schemas(), args.pipeline, args.version)
    print(json.dumps(row, indent=2, default=str))
    return 1 if row.get("problem") else 0


def cmd_schema_set(args: argparse.Namespace) -> int:
    store = _schemas()
    try:
        kept = store.promote(args.pipeline, Path(args.file).absolute(), set_by="airflow-mlops schema set")
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"reference schema of pipeline {args.pipeline} is now v{kept.version}: {kept.schema_file}")
    return 0


def cmd_schema_reset(args: argparse.Namespace) -> int:
    was = _schemas().reset(args.pipeline)
    if was is None:
        print(f"pipeline {args.pipeline} has no current reference schema")
    else:
        print(f"pipeline {args.pipeline} no longer validates against reference v{was} (kept for inspection); "
              "the next accepted span's schema becomes the reference")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-mlops", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="group", required=True)
    runtime = sub.add_parser("runtime", help="manage runtimes").add_subparsers(dest="command", required=True)
    p = runtime.add_parser("list", help="show each runtime's state, location and size")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-size", action="store_true", help="skip measuring disk size")
    p.set_defaults(func=cmd_list)
    p = runtime.add_parser("build", help="build a runtime (or 'all') unless already cached")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.set_defaults(func=cmd_build)
    p = runtime.add_parser("download", help="download a runtime's packages (or 'all') into a directory, "
                           "for an offline build with pip_offline and pip_find_links")
    p.add_argument("name")
    p.add_argument("dest", help="directory to fill (created if missing)")
    p.add_argument("--isolation", choices=("venv", "rootfs"),
                   help="how the offline machine builds the runtime (default: as this machine would)")
    p.add_argument("--python-version", help="the runtime's Python there, e.g. 3.13 (default: from --isolation)")
    p.add_argument("--platform", action="append", default=[],
                   help="wheel platform tag there, e.g. manylinux_2_39_x86_64 (repeatable)")
    p.set_defaults(func=cmd_download)
    p = runtime.add_parser("prune", help="delete stale and partial builds")
    p.set_defaults(func=cmd_prune)
    p = runtime.add_parser("stop", help="stop the warm runtimes of this user (they also exit when idle)")
    p.set_defaults(func=cmd_stop)
    p = runtime.add_parser("run", help="run one step in a runtime and print its outputs")
    p.add_argument("name")
    p.add_argument("step")
    p.add_argument("params", nargs="?", default="{}")
    p.add_argument("--bind", action="append", default=[], help="host path the step needs (repeatable)")
    p.set_defaults(func=cmd_run)
    schema = sub.add_parser("schema", help="inspect, replace or reset reference schemas").add_subparsers(
        dest="command", required=True)
    p = schema.add_parser("list", help="each pipeline's current reference schema")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_schema_list)
    p = schema.add_parser("show", help="a reference schema's record and features (exit 1 if it is unusable)")
    p.add_argument("pipeline")
    p.add_argument("--version", type=int)
    p.set_defaults(func=cmd_schema_show)
    p = schema.add_parser("set", help="make a schema.pbtxt the pipeline's reference (a new version)")
    p.add_argument("pipeline")
    p.add_argument("file")
    p.set_defaults(func=cmd_schema_set)
    p = schema.add_parser("reset", help="stop validating against the current reference (versions are kept)")
    p.add_argument("pipeline")
    p.set_defaults(func=cmd_schema_reset)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
