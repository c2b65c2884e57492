"""`ml-platform`: land data, run the pipeline, start the UIs, follow lineage."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence

from ml_platform import settings
from ml_platform.specs import ModelSpec, load_specs


def _spec(model: str) -> ModelSpec:
    specs = {s.name: s for s in load_specs()}
    if model not in specs:
        raise SystemExit(f"unknown model {model!r}; known: {sorted(specs)}")
    return specs[model]


def _spec_for_dataset(dataset: str) -> ModelSpec:
    for spec in load_specs():
        if spec.dataset.name == dataset:
            return spec
    known = sorted({s.dataset.name for s in load_specs()})
    raise SystemExit(f"unknown dataset {dataset!r}; known: {known}")


def cmd_simulate(args: argparse.Namespace) -> int:
    from ml_platform.storage.landing import LandingZone
    from ml_platform.storage.simulate import default_start, land_days

    spec = _spec_for_dataset(args.dataset)
    start = dt.date.fromisoformat(args.start) if args.start else default_start(args.days)
    landed = land_days(LandingZone(), spec.dataset, start, args.days, corruption=args.corrupt,
                       damaged_column=spec.training.target, overwrite=args.overwrite,
                       incomplete=args.incomplete, late=args.late)
    for item in landed:
        state = "landed" if item.written else "exists"
        print(f"{state:7s} {item.day}  {item.path}  ({item.rows} rows)")
    if args.late:
        held = start + dt.timedelta(days=args.days - 1)
        print(f"late    {held}  held back: land it later with --start {held} --days 1")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    from ml_platform.tracking.home_server import home_server

    # First: the server takes seconds to answer; overlap that with landing data.
    stack = contextlib.ExitStack()
    server = stack.enter_context(home_server(port=args.mlflow_port, wait=False))
    if server.note:
        print(server.note, file=sys.stderr)
    try:
        import dagster as dg

        from ml_platform.pipeline.build import build_definitions
        from ml_platform.pipeline.execute import (
            prepare_dagster_home,
            register_landed_days,
            run_model_pipeline,
        )
        from ml_platform.pipeline.models import model_key
        from ml_platform.storage.landing import LandingZone
        from ml_platform.storage.simulate import default_start, land_days
        from ml_platform.tracking.lineage import lineage, render
        from ml_platform.tracking.mlflow_resource import MlflowTracker

        specs = load_specs()
        if args.model:
            specs = [s for s in specs if s.name in args.model]
        prepare_dagster_home()
        landing = LandingZone()
        instance = dg.DagsterInstance.get()
        for ds in {s.dataset.name: s.dataset for s in specs}.values():
            landed = land_days(landing, ds, default_start(args.days), args.days)
            print(f"{ds.name}: {sum(x.written for x in landed)} day(s) landed, "
                  f"{sum(not x.written for x in landed)} already there")
            register_landed_days(instance, landing, ds.name)
        # No wait for the server here: raw → training_set need no MLflow and run while it
        # boots; the first step that talks to it waits for it (MlflowTracker.client).
        os.environ["MLFLOW_TRACKING_URI"] = server.url
        defs = build_definitions(specs)
        tracker = MlflowTracker()
        failures = 0
        for spec in specs:
            trained_before = instance.get_latest_materialization_event(
                model_key(spec.name, "training_set")) is not None
            result = run_model_pipeline(defs, spec, instance,
                                        retrain_only=args.retrain and trained_before)
            if not result.success:
                failures += 1
                print(f"{spec.name}: run {result.run_id} FAILED; see `ml-platform dev` for details")
                continue
            try:
                chain = lineage(spec, instance, tracker)
            except LookupError as exc:
                print(f"{spec.name}: not in production: {exc}")
                failures += 1
                continue
            metric = spec.promotion.primary_metric
            print(f"\n{spec.name}: production is v{chain['version']}, "
                  f"{metric} = {chain['mlflow_run']['metrics'].get('test_' + metric, float('nan')):.3f}")
            print(f"MLflow run: {chain['mlflow_run']['url']}")
            print(render(chain))
        print(f"\ndemo finished in {time.monotonic() - started:.1f}s; "
              "`make dev` opens the Dagster and MLflow UIs on this state")
        return 1 if failures else 0
    finally:
        stack.close()  # returns the lease; the last user of the home's server stops it


def cmd_dev(args: argparse.Namespace) -> int:
    from ml_platform.pipeline.execute import prepare_dagster_home
    from ml_platform.tracking.home_server import home_server

    home = prepare_dagster_home()
    stack = contextlib.ExitStack()
    server = stack.enter_context(home_server(port=args.mlflow_port))
    if server.note:
        print(server.note, file=sys.stderr)
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "DAGSTER_HOME": str(home)}
    print(f"MLflow UI:  {server.url}\nDagster UI: http://127.0.0.1:{args.port}")
    dagster = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-m", "ml_platform.definitions",
         "-h", "127.0.0.1", "-p", str(args.port)],
        env=env,
        start_new_session=True,  # its own process group, so shutdown reaches every child
    )

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the UIs as cleanly as Ctrl-C
    try:
        return dagster.wait()
    except KeyboardInterrupt:
        os.killpg(dagster.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole group
        try:
            return dagster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(dagster.pid, signal.SIGKILL)
            return dagster.wait()
    finally:
        stack.close()


class _Platform:
    """What the registry commands need: the Dagster instance, MLflow and the lake, with an
    MLflow server started for the command if none is configured (stopped on exit)."""

    def __init__(self, mlflow_port: int) -> None:
        from ml_platform.pipeline.execute import prepare_dagster_home
        from ml_platform.tracking.home_server import home_server

        prepare_dagster_home()
        self._stack = contextlib.ExitStack()
        self.server = self._stack.enter_context(home_server(port=mlflow_port, wait=False))
        if self.server.note:
            print(self.server.note, file=sys.stderr)

    def __enter__(self) -> _Platform:
        import dagster as dg

        from ml_platform.storage.lake import Lake
        from ml_platform.tracking.mlflow_resource import MlflowTracker

        self.server.wait_ready()
        self.instance = dg.DagsterInstance.get()
        self.tracker = MlflowTracker(tracking_uri=self.server.url)
        self.lake = Lake()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def _print(payload: object, as_json: bool, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if as_json else text)


def cmd_lineage(args: argparse.Namespace) -> int:
    from ml_platform.tracking.lineage import lineage, render, trained_on

    with _Platform(args.mlflow_port) as p:
        if args.partition:
            dataset, _, day = args.partition.partition("/")
            if not day:
                raise SystemExit("--partition takes DATASET/YYYY-MM-DD, e.g. bookings/2026-03-01")
            answer = trained_on(day, dataset, load_specs(), p.instance, p.tracker)
            lines = [f"{dataset}/{day}: {(answer['landed_file'] or {}).get('file', 'not landed')}"]
            lines += [f"  {v['model']} v{v['version']}"
                      f"{'  <- production' if v['in_production'] else ''}"
                      for v in answer["model_versions"]] or ["  no model version trained on it"]
            _print(answer, args.json, "\n".join(lines))
            return 0
        if not args.model:
            raise SystemExit("lineage needs MODEL or --partition DATASET/DATE")
        try:
            chain = lineage(_spec(args.model), p.instance, p.tracker, alias=args.alias,
                            version=args.version)
        except LookupError as exc:
            print(exc, file=sys.stderr)
            return 1
        _print(chain, args.json, render(chain))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from ml_platform.pipeline.build import build_definitions
    from ml_platform.pipeline.execute import ingest
    from ml_platform.storage.landing import LandingZone

    specs = load_specs()
    datasets = sorted({s.dataset.name for s in specs})
    if args.dataset and args.dataset not in datasets:
        raise SystemExit(f"unknown dataset {args.dataset!r}; known: {datasets}")
    with _Platform(args.mlflow_port) as p:
        os.environ["MLFLOW_TRACKING_URI"] = p.server.url
        defs = build_definitions(specs)
        reports = [ingest(defs, d, p.instance, LandingZone())
                   for d in ([args.dataset] if args.dataset else datasets)]
    if args.json:
        print(json.dumps(reports, indent=2, default=str))
    else:
        for r in reports:
            status = "ok" if r["success"] else "FAILED"
            print(f"{r['dataset']}: {len(r['days'])} day(s) due, run {r['run_id']} {status}"
                  if r["run_id"] else f"{r['dataset']}: {r['note']}")
            for c in r.get("failed_checks", []):
                print(f"  check {c['asset']}:{c['check']} [{c['severity']}] {c['description']}")
            for f in r.get("failed_steps", []):
                print(f"  step {f['step']} failed: {f['error'].splitlines()[0]}")
            for m in r.get("promoted", []):
                print(f"  promoted {m['model']} v{m.get('previous_version') or '-'} -> v{m['version']}")
    return 0 if all(r["success"] for r in reports) else 1


def cmd_history(args: argparse.Namespace) -> int:
    from ml_platform.tracking.promotion import history

    with _Platform(args.mlflow_port) as p:
        records = history(p.tracker, _spec(args.model).name)
    lines = [f"{r['at']}  {r['kind']:17s} v{r['previous_version'] or '-'} -> v{r['version']}  "
             f"by {r['triggered_by']}: {r['reason']}" for r in records]
    _print(records, args.json, "\n".join(lines) or f"{args.model} was never promoted")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from ml_platform.pipeline.registry_actions import GateRefusal, promote
    from ml_platform.tracking.promotion import PromotionConflict

    with _Platform(args.mlflow_port) as p:
        try:
            record = promote(_spec(args.model), str(args.version), args.reason, force=args.force,
                             instance=p.instance, tracker=p.tracker, lake=p.lake)
        except (GateRefusal, PromotionConflict) as exc:
            print(exc, file=sys.stderr)
            return 1
    print(f"{args.model}: production v{record['previous_version']} -> v{record['version']} "
          f"({record['gates']})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from ml_platform.pipeline.registry_actions import rollback
    from ml_platform.tracking.promotion import PromotionConflict

    with _Platform(args.mlflow_port) as p:
        try:
            record = rollback(_spec(args.model), str(args.to) if args.to else None, args.reason,
                              instance=p.instance, tracker=p.tracker, lake=p.lake)
        except (LookupError, PromotionConflict) as exc:
            print(exc, file=sys.stderr)
            return 1
    print(f"{args.model}: production rolled back v{record['previous_version']} -> v{record['version']}")
    return 0


def cmd_k8s_render(args: argparse.Namespace) -> int:
    import yaml

    from ml_platform.compute.k8s import render_training

    spec = _spec(args.model)
    manifests = render_training(spec, namespace=args.namespace)
    what = "pod" if len(manifests) == 1 else (
        f"pods ({spec.compute.nodes} nodes: node 0's pod, its rendezvous Service and the Job "
        "of the others; created and deleted with the step)")
    print(f"# The {what} the `trained` step of {args.model} submits (k8s profile).")
    print(yaml.safe_dump_all(manifests, sort_keys=False), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="land synthetic days into the landing zone")
    p.add_argument("--dataset", required=True)
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--start", help="first day, YYYY-MM-DD (default: N days ending yesterday)")
    p.add_argument("--corrupt", choices=_corruptions(), help="damage the last day")
    p.add_argument("--incomplete", nargs="?", type=float, const=0.6, metavar="FRACTION",
                   help="land only FRACTION (default 0.6) of the last day's rows")
    p.add_argument("--late", action="store_true", help="hold the last day back")
    p.add_argument("--overwrite", action="store_true", help="replace days already landed")
    p.set_defaults(fn=cmd_simulate)

    p = sub.add_parser("demo", help="land 30 days and run every model to production")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--retrain", action="store_true",
                   help="only retrain (forced) on the current training sets, and gate/promote")
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("dev", help="Dagster webserver + daemon and an MLflow server")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.set_defaults(fn=cmd_dev)

    p = sub.add_parser("lineage", help="alias/version -> MLflow run -> Dagster run -> data, "
                                       "or --partition: which versions trained on a day")
    p.add_argument("model", nargs="?")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--alias", default="production")
    group.add_argument("--version")
    group.add_argument("--partition", help="DATASET/YYYY-MM-DD: the reverse question")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_lineage)

    p = sub.add_parser("ingest", help="the sensors' work once, without a daemon: register, "
                                      "validate, retrain, gate, promote")
    p.add_argument("--dataset")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_ingest)

    p = sub.add_parser("history", help="every promotion and rollback of a model")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_history)

    p = sub.add_parser("promote", help="promote a version (gates run unless --force)")
    p.add_argument("model")
    p.add_argument("--version", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--force", action="store_true", help="promote even if gates fail (recorded)")
    p.set_defaults(fn=cmd_promote)

    p = sub.add_parser("rollback", help="move production back (default: the previous version)")
    p.add_argument("model")
    p.add_argument("--to", help="version to roll back to")
    p.add_argument("--reason", default="rollback")
    p.set_defaults(fn=cmd_rollback)

    for name in ("lineage", "history", "promote", "rollback", "ingest"):
        sub.choices[name].add_argument("--mlflow-port", type=int, default=5000)

    p = sub.add_parser("k8s", help="what the k8s profile submits to Kubernetes")
    k8s = p.add_subparsers(dest="k8s_command", required=True)
    p = k8s.add_parser("render", help="print the manifests of MODEL's training (YAML)")
    p.add_argument("model")
    p.add_argument("--namespace", help="set metadata.namespace")
    p.set_defaults(fn=cmd_k8s_render)
    return parser


def _corruptions() -> Sequence[str]:
    from ml_platform.ml.data import CORRUPTIONS

    return CORRUPTIONS


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # No usage reports from this process, its children or its MLflow server: nothing here may
    # reach beyond the machine (and each attempt costs time on a closed network).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Dagster flags the beta/preview APIs it is asked to use on every run; say it once, here:
    # backfill policies (one run for a range of days) and Pipes' message reader.
    warnings.filterwarnings("ignore", message=".*(currently in beta|currently in preview).*")
    settings.profile()  # fail early on a bad ML_PLATFORM_PROFILE
    code = int(args.fn(args) or 0)
    if args.command == "demo":
        # Everything is stored and every server stopped: skip the second or so the interpreter
        # spends tearing down torch, MLflow and Dagster at exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
