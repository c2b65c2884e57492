"""`ml-platform`: land data, run the pipeline, start the UIs, follow lineage, move production.

Every command acts on the stores of the active profile (`ML_PLATFORM_PROFILE`: `local`, the
default, or `k8s`). Errors are one line; exit status 2 for usage errors, 1 for failures;
`--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from ml_platform import names, settings
from ml_platform.ops.errors import PlatformError, UsageError

PROG = "ml-platform"


def _day(value: str, what: str) -> dt.date:
    """`value` as a calendar date; a usage error naming `what` otherwise."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a calendar date (YYYY-MM-DD)") from None


def _print(payload: object, as_json: bool, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if as_json else text)


def cmd_simulate(args: argparse.Namespace) -> int:
    from ml_platform.ops.platform import open_platform, require_dataset
    from ml_platform.simulation.landing import default_start, land_days
    from ml_platform.specs import load_specs

    start = _day(args.start, "--start") if args.start else default_start(args.days)
    spec = require_dataset(load_specs(), args.dataset)
    with open_platform(mlflow=False) as p:
        landed = land_days(p.landing, spec.dataset, start, args.days, corruption=args.corrupt,
                           damaged_column=spec.training.target, overwrite=args.overwrite,
                           incomplete=args.incomplete, late=args.late)
    for item in landed:
        state = "landed" if item.written else "exists"
        print(f"{state:7s} {item.day}  {item.path}  ({item.rows} rows)")
    if args.late:
        held = start + dt.timedelta(days=args.days - 1)
        print(f"late    {held}  held back: land it later with --start {held} --days 1")
    return 0


def _quiet_libraries(verbose: bool) -> None:
    """Without --verbose, MLflow's INFO lines (here and in the training process) stay unsaid:
    the steps' progress lines say what happens."""
    if not verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def cmd_demo(args: argparse.Namespace) -> int:
    from ml_platform.ops.platform import require_local

    require_local("demo")
    _quiet_libraries(args.verbose)
    started = time.monotonic()
    from ml_platform.ops.platform import open_platform

    # The server takes seconds to answer: landing data and the steps before `trained` overlap
    # its boot (the first step that talks to it waits for it).
    with open_platform(args.mlflow_port, wait_for_mlflow=False) as p:
        from ml_platform.ops.demo import run_demo
        from ml_platform.ops.progress import StepProgress

        failures = run_demo(p, days=args.days, models=args.model, retrain=args.retrain,
                            progress=StepProgress(verbose=args.verbose))
        print(f"\ndemo finished in {time.monotonic() - started:.1f}s; "
              "`make dev` opens the Dagster and MLflow UIs on this state")
    return 1 if failures else 0


def cmd_dev(args: argparse.Namespace) -> int:
    from ml_platform.ops.execute import prepare_dagster_home
    from ml_platform.ops.platform import mlflow_server, require_local
    from ml_platform.ops.process_guard import guarded_command
    from ml_platform.specs import load_specs

    require_local("dev")
    home = prepare_dagster_home()
    with mlflow_server(args.mlflow_port) as server:
        server.wait_ready()
        env = {**os.environ, settings.DAGSTER_HOME_ENV: str(home)}
        dagster_url = f"http://127.0.0.1:{args.port}"
        print(f"MLflow UI:  {env[settings.TRACKING_URI_ENV]}\nDagster UI: {dagster_url}\n"
              f"Endpoint:   http://127.0.0.1:{args.serve_port}/models/<model>/invocations")
        # The UI's global lineage opens with each group collapsed: a model's chain, expanded
        # (from landed days through production to serving and predictions)
        for spec in load_specs():
            print(f"Lineage:    {dagster_url}/assets/{spec.name}/production"
                  "?view=lineage&lineageScope=neighbors&lineageDepth=12")
        sys.stdout.flush()  # before the children write to the same output
        # Each under a guard that stops it if this command dies, even by SIGKILL: the models'
        # endpoint (`ml-platform serve`, which the `serving` steps switch) and `dagster dev`.
        endpoint = subprocess.Popen(
            guarded_command([sys.executable, "-m", "ml_platform.cli", "serve",
                             "--port", str(args.serve_port)]),
            env=env, start_new_session=True)
        dagster = subprocess.Popen(
            # `dagster dev` warns that it is superseded by `dg dev`, a tool not installed here
            guarded_command([sys.executable, "-W",
                             "ignore:Function `dev_command` is superseded:FutureWarning",
                             "-m", "dagster", "dev", "-m", "ml_platform.definitions",
                             "-h", "127.0.0.1", "-p", str(args.port)]),
            env=env,
            start_new_session=True,  # its own process group, so shutdown reaches every child
        )

        def _interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the UIs as cleanly as Ctrl-C
        try:
            return dagster.wait()
        except KeyboardInterrupt:
            for child in (dagster, endpoint):  # as Ctrl-C in a terminal: each whole group
                os.killpg(child.pid, signal.SIGINT)
            try:
                return dagster.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(dagster.pid, signal.SIGKILL)
                return dagster.wait()
        finally:
            _stop(endpoint)


def cmd_serve(args: argparse.Namespace) -> int:
    from ml_platform.ops.platform import open_platform
    from ml_platform.ops.serving import run_serve

    with open_platform(args.mlflow_port) as p:
        run_serve(p, args.port, lambda line: print(line, flush=True))
    return 0


def cmd_serving_status(args: argparse.Namespace) -> int:
    from ml_platform.ops.platform import open_platform
    from ml_platform.ops.serving import render_serving_status, serving_status

    with open_platform(args.mlflow_port) as p:
        status = serving_status(p)
    _print(status, args.json, render_serving_status(status))
    return 0


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a child started in its own session (SIGTERM to its group, SIGKILL after 30 s)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def cmd_lineage(args: argparse.Namespace) -> int:
    from ml_platform.ops.lineage import (
        lineage,
        prediction_lineage,
        render,
        render_prediction,
        trained_on,
    )
    from ml_platform.ops.platform import open_platform, require_dataset, require_model
    from ml_platform.specs import load_specs

    if not args.model and not args.partition:
        raise UsageError("lineage needs MODEL or --partition DATASET/YYYY-MM-DD")
    if args.predictions:
        _day(args.predictions, "--predictions day")
    dataset, _, day = (args.partition or "").partition("/")
    if args.partition:
        if not day:
            raise UsageError(f"--partition {args.partition!r} is not DATASET/YYYY-MM-DD, "
                             "e.g. bookings/2026-03-01")
        require_dataset(load_specs(), dataset)
        _day(day, "--partition day")
    else:
        require_model(load_specs(), args.model)
    with open_platform(args.mlflow_port) as p:
        if args.partition:
            answer = trained_on(day, dataset, p.specs, p.instance, p.tracker)
            lines = [f"{dataset}/{day}: {(answer['landed_file'] or {}).get('file', 'not landed')}"]
            lines += [f"  {v['model']} v{v['version']}"
                      f"{'  <- production' if v['in_production'] else ''}"
                      for v in answer["model_versions"]] or ["  no model version trained on it"]
            _print(answer, args.json, "\n".join(lines))
            return 0
        if args.predictions:
            chain = prediction_lineage(p.spec(args.model), p.instance, p.tracker,
                                       args.predictions)
            _print(chain, args.json, render_prediction(chain))
            return 0
        chain = lineage(p.spec(args.model), p.instance, p.tracker, alias=args.alias,
                        version=args.version)
    _print(chain, args.json, render(chain))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    _quiet_libraries(args.verbose)
    from ml_platform.ops.execute import ingest
    from ml_platform.ops.platform import open_platform, require_dataset
    from ml_platform.ops.progress import StepProgress
    from ml_platform.pipeline.build import build_definitions
    from ml_platform.specs import load_specs

    if args.dataset:
        require_dataset(load_specs(), args.dataset)
    # with --json, stdout is the report alone: the steps go to stderr
    progress = StepProgress(sys.stderr if args.json else sys.stdout, verbose=args.verbose)
    with open_platform(args.mlflow_port) as p:
        datasets = [d for d in p.datasets() if args.dataset in (None, d.name)]
        defs = build_definitions(p.specs, profile=p.profile)
        reports = []
        for d in datasets:
            with progress.running(d.name):
                reports.append(ingest(defs, d, p.instance, p.landing, progress=progress))
    if args.json:
        print(json.dumps(reports, indent=2, default=str))
    else:
        for r in reports:
            status = "ok" if r["success"] else "FAILED"
            runs = ", ".join(r["run_ids"])
            print(f"{r['dataset']}: {len(r['days'])} day(s) due, run {runs} {status}"
                  if r["run_id"] else f"{r['dataset']}: {r['note']}")
            for c in r.get("failed_checks", []):
                print(f"  check {c['asset']}:{c['check']} [{c['severity']}] {c['description']}")
            for f in r.get("failed_steps", []):
                print(f"  step {f['step']} failed: {f['error'].splitlines()[0]}")
            for m in r.get("promoted", []):
                print(f"  promoted {m['model']} v{m.get('previous_version') or '-'} -> v{m['version']}")
    return 0 if all(r["success"] for r in reports) else 1


def cmd_status(args: argparse.Namespace) -> int:
    from ml_platform.ops.platform import open_platform
    from ml_platform.ops.status import platform_status, render_status

    with open_platform(mlflow=False) as p:
        status = platform_status(p)
    _print(status, args.json, render_status(status))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from ml_platform.ops.platform import open_platform, require_model
    from ml_platform.pipeline.history import migrate_legacy_history, production_history
    from ml_platform.specs import load_specs

    require_model(load_specs(), args.model)
    with open_platform(args.mlflow_port) as p:
        name = p.spec(args.model).name
        migrate_legacy_history(p.instance, p.tracker, name)
        records = production_history(p.instance, name)
    lines = [f"{r.at}  {r.kind:17s} v{r.previous_version or '-'} -> v{r.version}  "
             f"by {r.triggered_by}: {r.reason}" for r in records]
    _print([r.to_metadata() for r in records], args.json,
           "\n".join(lines) or f"{args.model} was never promoted")
    return 0


def cmd_costs(args: argparse.Namespace) -> int:
    from ml_platform.ops.costs import render_costs, training_costs
    from ml_platform.ops.platform import open_platform, require_model
    from ml_platform.specs import load_specs

    since = _day(args.since, "--since") if args.since else None
    specs = load_specs()
    if args.model:
        specs = [require_model(specs, args.model)]
    with open_platform(args.mlflow_port) as p:
        report = training_costs(specs, p.tracker, since)
    _print(report, args.json, render_costs(report))
    return 0


def cmd_predictions(args: argparse.Namespace) -> int:
    from ml_platform.ops.platform import open_platform, require_model
    from ml_platform.ops.predictions import (
        predictions_status,
        render_predictions,
        require_predictions,
        rescore,
    )
    from ml_platform.pipeline.build import build_definitions
    from ml_platform.specs import load_specs

    require_predictions(require_model(load_specs(), args.model))
    with open_platform(args.mlflow_port) as p:
        spec = p.spec(args.model)
        defs = build_definitions(p.specs, profile=p.profile)
        status = predictions_status(defs, spec, p.instance, p.lake)
        failed = []
        if args.rescore and status["to_score"]:
            results = rescore(defs, spec, p.instance, status["to_score"])
            failed = [r.run_id for r in results if not r.success]
            status = predictions_status(defs, spec, p.instance, p.lake)
    _print(status, args.json, render_predictions(status))
    if failed:
        raise PlatformError(f"{spec.name}: re-scoring failed in run(s) {', '.join(failed)}; "
                            "see `ml-platform dev` for details")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from ml_platform.ops.platform import open_platform, require_model
    from ml_platform.ops.registry import promote
    from ml_platform.specs import load_specs

    require_model(load_specs(), args.model)
    with open_platform(args.mlflow_port) as p:
        record = promote(p.spec(args.model), str(args.version), args.reason, force=args.force,
                         instance=p.instance, tracker=p.tracker, lake=p.lake)
    print(f"{args.model}: production v{record.previous_version or '-'} -> v{record.version} "
          f"({record.gates})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from ml_platform.ops.platform import open_platform, require_model
    from ml_platform.ops.registry import rollback
    from ml_platform.specs import load_specs

    require_model(load_specs(), args.model)
    with open_platform(args.mlflow_port) as p:
        record = rollback(p.spec(args.model), str(args.to) if args.to else None, args.reason,
                          instance=p.instance, tracker=p.tracker, lake=p.lake)
    print(f"{args.model}: production rolled back v{record.previous_version} -> v{record.version}")
    return 0


def cmd_k8s_render(args: argparse.Namespace) -> int:
    import yaml

    from ml_platform.compute.k8s import render_training
    from ml_platform.ops.platform import require_model
    from ml_platform.specs import load_specs

    spec = require_model(load_specs(), args.model)
    manifests = render_training(spec, namespace=args.namespace)
    what = "pod" if len(manifests) == 1 else (
        f"pods ({spec.compute.nodes} nodes: node 0's pod, its rendezvous Service and the Job "
        "of the others; created and deleted with the step)")
    print(f"# The {what} the `trained` step of {args.model} submits (k8s profile).")
    env = {e["name"]: e["value"] for e in manifests[-1]["spec"]["containers"][0]["env"]}
    code = env[settings.CODE_HASH_ENV]
    print(f"# Code: package {code} of this checkout, fetched and verified by the pod (code sync)"
          if settings.CODE_PACKAGE_ENV in env else
          f"# Code: the image's, which must hash to {code} (code sync off)")
    print(yaml.safe_dump_all(manifests, sort_keys=False), end="")
    return 0


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Examples keep their lines; options show their defaults."""


def _command(sub: Any, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text.capitalize() + ".",
                          epilog=f"example:\n  {example}", formatter_class=_Formatter)


def _mlflow_port(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mlflow-port", type=int, default=5000,
                   help="local profile: port of the MLflow server to use or start, when "
                        "MLFLOW_TRACKING_URI is unset")


def _verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show Dagster's and MLflow's own log besides the one line per step")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "simulate", "land synthetic days into the landing zone",
                 "ml-platform simulate --dataset bookings --days 2 --corrupt wrong_dtype")
    p.add_argument("--dataset", required=True, help="dataset to land (a spec's dataset.name)")
    p.add_argument("--days", type=int, default=1, help="how many consecutive days")
    p.add_argument("--start", help="first day, YYYY-MM-DD (default: N days ending yesterday)")
    p.add_argument("--corrupt", choices=_corruptions(), help="damage the last day")
    p.add_argument("--incomplete", nargs="?", type=float, const=0.6, metavar="FRACTION",
                   help="land only FRACTION (default 0.6) of the last day's rows")
    p.add_argument("--late", action="store_true", help="hold the last day back")
    p.add_argument("--overwrite", action="store_true", help="replace days already landed")
    _mlflow_port(p)
    p.set_defaults(fn=cmd_simulate)

    p = _command(sub, "demo", "land 30 days and run every model to production",
                 "ml-platform demo --retrain")
    p.add_argument("--days", type=int, default=30, help="days to land (those landed are kept)")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--retrain", action="store_true",
                   help="only retrain (forced) on the current training sets, and gate/promote")
    _verbose(p)
    _mlflow_port(p)
    p.set_defaults(fn=cmd_demo)

    p = _command(sub, "dev", "Dagster webserver + daemon and an MLflow server",
                 "ml-platform dev --port 3000")
    p.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    p.add_argument("--serve-port", type=int, default=names.SERVE_PORT,
                   help="port of the models' endpoint (`ml-platform serve`)")
    _mlflow_port(p)
    p.set_defaults(fn=cmd_dev)

    p = _command(sub, "serve", "serve every model's production version on loopback (MLflow's "
                 "scoring protocol), switched by the `serving` steps",
                 "ml-platform serve --port 8080")
    p.add_argument("--port", type=int, default=names.SERVE_PORT, help="port of the endpoint")
    _mlflow_port(p)
    p.set_defaults(fn=cmd_serve)

    p = _command(sub, "serving", "the models' endpoint", "ml-platform serving status --json")
    serving = p.add_subparsers(dest="serving_command", required=True, metavar="COMMAND")
    p = _command(serving, "status", "each model's endpoint URL and the version it answers with",
                 "ml-platform serving status --json")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _mlflow_port(p)
    p.set_defaults(fn=cmd_serving_status)

    p = _command(sub, "lineage", "alias/version -> MLflow run -> Dagster run -> data, or "
                 "--partition: which versions trained on a day",
                 "ml-platform lineage listing_price --version 2")
    p.add_argument("model", nargs="?", help="model name")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--alias", default=names.PRODUCTION_ALIAS, help="follow this alias")
    group.add_argument("--version", help="follow this version")
    group.add_argument("--partition", help="DATASET/YYYY-MM-DD: the reverse question")
    group.add_argument("--predictions", metavar="DAY",
                       help="YYYY-MM-DD: from MODEL's predictions of that day to the version "
                            "that scored them")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _mlflow_port(p)
    p.set_defaults(fn=cmd_lineage)

    p = _command(sub, "ingest", "the sensors' work once, without a daemon: register, validate, "
                 "retrain, gate, promote", "ml-platform ingest --dataset bookings --json")
    p.add_argument("--dataset", help="only this dataset (default: every dataset)")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    _verbose(p)
    _mlflow_port(p)
    p.set_defaults(fn=cmd_ingest)

    p = _command(sub, "status", "each dataset's days: due, in flight, rejected (why), done; "
                 "each model's newest trained day", "ml-platform status --json")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_status)

    p = _command(sub, "history", "every promotion and rollback of a model",
                 "ml-platform history listing_price --json")
    p.add_argument("model", help="model name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _mlflow_port(p)
    p.set_defaults(fn=cmd_history)

    p = _command(sub, "costs", "what the trainings used and cost, per model and per day (from "
                 "their MLflow runs)", "ml-platform costs listing_price --since 2026-03-01 --json")
    p.add_argument("model", nargs="?", help="only this model (default: every model)")
    p.add_argument("--since", metavar="DATE",
                   help="only trainings started on or after this day (YYYY-MM-DD, UTC)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _mlflow_port(p)
    p.set_defaults(fn=cmd_costs)

    p = _command(sub, "predictions", "a model's batch predictions: the version that scored "
                 "each validated day, stale days; --rescore scores the stale and missing ones",
                 "ml-platform predictions listing_price --rescore")
    p.add_argument("model", help="model name (its spec enables batch_inference)")
    p.add_argument("--rescore", action="store_true",
                   help="score every stale or not yet scored day with the production version")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _mlflow_port(p)
    p.set_defaults(fn=cmd_predictions)

    p = _command(sub, "promote", "promote a version (gates run unless --force)",
                 "ml-platform promote listing_price --version 3 --reason 'hotfix'")
    p.add_argument("model", help="model name")
    p.add_argument("--version", required=True, help="the model version to promote")
    p.add_argument("--reason", required=True, help="why (recorded in the history)")
    p.add_argument("--force", action="store_true", help="promote even if gates fail (recorded)")
    _mlflow_port(p)
    p.set_defaults(fn=cmd_promote)

    p = _command(sub, "rollback", "move production back (default: the previous version)",
                 "ml-platform rollback listing_price --to 1")
    p.add_argument("model", help="model name")
    p.add_argument("--to", help="version to roll back to")
    p.add_argument("--reason", default="rollback", help="why (recorded in the history)")
    _mlflow_port(p)
    p.set_defaults(fn=cmd_rollback)

    p = _command(sub, "k8s", "what the k8s profile submits to Kubernetes",
                 "ml-platform k8s render feed_ranking --namespace ml")
    k8s = p.add_subparsers(dest="k8s_command", required=True, metavar="COMMAND")
    p = _command(k8s, "render", "print the manifests of MODEL's training (YAML)",
                 "ml-platform k8s render listing_price")
    p.add_argument("model", help="model name")
    p.add_argument("--namespace", help="set metadata.namespace")
    p.set_defaults(fn=cmd_k8s_render)
    return parser


def _corruptions() -> Sequence[str]:
    from ml_platform.simulation.drills import CORRUPTIONS

    return CORRUPTIONS


def _one_line(exc: BaseException) -> tuple[str, int]:
    """The message and exit status of an error, by the CLI error convention."""
    from ml_platform.specs import SpecError

    if isinstance(exc, PlatformError):
        return str(exc), exc.exit_code
    if isinstance(exc, settings.SettingError | SpecError):
        return str(exc).splitlines()[0], 2
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first} (run with --debug for the traceback)", 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # No usage reports from this process, its children or its MLflow server: nothing here may
    # reach beyond the machine (and each attempt costs time on a closed network).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Dagster flags the beta/preview APIs it is asked to use on every run; say it once, here:
    # backfill policies (one run for a range of days) and Pipes' message reader.
    warnings.filterwarnings("ignore", message=".*(currently in beta|currently in preview).*")
    try:
        settings.profile()  # fail early on a bad ML_PLATFORM_PROFILE
        code = int(args.fn(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt):
            return 130
        if args.debug:
            traceback.print_exc()
        message, code = _one_line(exc)
        print(f"{PROG}: error: {message}", file=sys.stderr)
    if args.command == "demo":
        # Everything is stored and every server stopped: skip the second or so the interpreter
        # spends tearing down torch, MLflow and Dagster at exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
