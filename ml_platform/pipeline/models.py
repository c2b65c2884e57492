"""The asset chain of one model, built from its spec: features → training_set → trained →
evaluation → registered → production → serving. No model-specific code lives here: what
differs between models is in their specs and in `ml_platform.ml`."""


from importlib.metadata import version as installed_version
from typing import Any

import dagster as dg
import pandas as pd

from ml_platform import settings
from ml_platform.compute.request import TrainingRequest
from ml_platform.compute.trainer import Trainer
from ml_platform.ml.features import build_features
from ml_platform.ml.training_set import SPLIT_COLUMN, content_hash, make_training_set
from ml_platform.pipeline.code_version import training_code_version
from ml_platform.pipeline.datasets import (
    PREVIOUS_DAY_CHECK,
    STORAGE_RETRY,
    freshness_policy,
    previous_day_check,
    validated_key,
    validated_lake_key,
)
from ml_platform.pipeline.metadata import compact_partitions, latest_metadata
from ml_platform.specs import ModelSpec
from ml_platform.storage.lake import Lake
from ml_platform.storage.landing import LandingZone
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.promotion import (
    PRODUCTION,
    PromotionConflict,
    move_alias,
    serving_manifest,
)
from ml_platform.tracking.scoring import compare_with_champion

# Steps that talk to MLflow ride out a restarting tracking server.
MLFLOW_RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
STAGES = ("features", "training_set", "trained", "evaluation", "registered", "production",
          "serving")


def _shared(uri: str) -> str:
    """`uri` if other machines can read it (an object store), else "": a local lake is on the
    disk the local training already checkpoints to."""
    return uri if "://" in uri else ""


def model_key(model: str, stage: str) -> dg.AssetKey:
    return dg.AssetKey([model, stage])


class TrainConfig(dg.Config):
    force: bool = False
    """Retrain even if a finished MLflow run exists for this training set and code version."""


def _markdown_metrics(rows: dict[str, dict[str, float] | None]) -> str:
    names = sorted({m for metrics in rows.values() if metrics for m in metrics})
    lines = ["| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for who, metrics in rows.items():
        cells = [f"{metrics[n]:.4g}" if metrics and n in metrics else "-" for n in names]
        lines.append(f"| {who} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    """Every asset of `spec`'s chain, from features to serving."""
    name, ds, tr = spec.name, spec.dataset, spec.training
    key = {stage: model_key(name, stage) for stage in STAGES}
    code_version = training_code_version(spec)
    group = dict(group_name=name, owners=[f"team:{spec.owner}"])

    @dg.asset(
        key=key["features"],
        deps=[dg.AssetDep(validated_key(ds.name), partition_mapping=dg.AllPartitionMapping())],
        kinds={"pandas", "parquet"}, retry_policy=STORAGE_RETRY,
        check_specs=[dg.AssetCheckSpec(
            PREVIOUS_DAY_CHECK, asset=key["features"], blocking=True,
            description="The day before the newest landed day passed validation, completeness "
                        "included: training waits for it.",
        )] if ds.require_previous_day_complete else None,
        **group,
    )
    def features(context: dg.AssetExecutionContext, lake: Lake,
                 landing: LandingZone) -> dg.MaterializeResult:
        """Feature table over the validated days in the training window (content-hashed)."""
        days = sorted(context.instance.get_dynamic_partitions(f"{ds.name}_days"))
        window = days[-tr.window_days:] if tr.window_days else days
        present = [d for d in window if lake.exists(validated_lake_key(ds.name, d))]
        if not present:
            raise dg.Failure(f"no validated days of {ds.name} in the lake: land and validate data",
                             allow_retries=False)
        frame = pd.concat(
            [lake.read_parquet(validated_lake_key(ds.name, d)) for d in present], ignore_index=True
        )
        table = build_features(
            tr.feature_builder, frame, key=ds.key, date_column=ds.date_column, target=tr.target
        )
        digest = content_hash(table)
        lake_key = f"{name}/features/{digest[:16]}.parquet"
        lake.write_parquet(lake_key, table)
        return dg.MaterializeResult(
            metadata={
                "lake_key": lake_key, "path": dg.MetadataValue.path(lake.uri(lake_key)),
                "content_hash": digest, "dagster/row_count": len(table),
                "partitions": dg.MetadataValue.json(present),
                "skipped_partitions": dg.MetadataValue.json(sorted(set(window) - set(present))),
                "preview": dg.MetadataValue.md(table.head(5).to_markdown(index=False)),
            },
            data_version=dg.DataVersion(digest[:16]),
            check_results=[previous_day_check(ds, days, lake, landing)]
            if ds.require_previous_day_complete else None,
        )

    @dg.asset(key=key["training_set"], deps=[features], kinds={"parquet"},
              retry_policy=STORAGE_RETRY, **group)
    def training_set(context: dg.AssetExecutionContext, lake: Lake) -> dg.MaterializeResult:
        """Frozen train/valid/test snapshot of the features, identified by its content hash."""
        upstream = latest_metadata(context, key["features"])
        frame = make_training_set(
            lake.read_parquet(upstream["lake_key"]), key=ds.key,
            valid_fraction=tr.valid_fraction, test_fraction=tr.test_fraction, seed=tr.seed,
            # a ranking query (a user's feed of a day) stays whole within one split
            split_by=spec.query_columns,
        )
        digest = content_hash(frame)
        lake_key = f"{name}/training_set/{digest[:16]}.parquet"
        if not lake.exists(lake_key):  # content-addressed: an existing snapshot is never rewritten
            lake.write_parquet(lake_key, frame)
        counts = frame[SPLIT_COLUMN].value_counts().to_dict()
        return dg.MaterializeResult(
            metadata={
                "lake_key": lake_key, "path": dg.MetadataValue.path(lake.uri(lake_key)),
                "training_set_hash": digest, "features_hash": upstream["content_hash"],
                "partitions": dg.MetadataValue.json(upstream["partitions"]),
                "dagster/row_count": len(frame),
                **{f"rows_{s}": int(counts.get(s, 0)) for s in ("train", "valid", "test")},
            },
            data_version=dg.DataVersion(digest[:16]),
        )

    @dg.asset(
        key=key["trained"], deps=[training_set], kinds={"pytorch", "mlflow"},
        code_version=code_version, retry_policy=MLFLOW_RETRY, pool="training",
        tags={"ml_platform/gpu": str(spec.compute.gpu)}, **group,
    )
    def trained(context: dg.AssetExecutionContext, config: TrainConfig, lake: Lake,
                mlflow: MlflowTracker, trainer: Trainer) -> dg.MaterializeResult:
        """Torch model trained on the training set, logged to one MLflow run."""
        ts = latest_metadata(context, key["training_set"])
        identity = {"ml_platform.model": name, "ml_platform.training_set_hash":
                    ts["training_set_hash"], "ml_platform.code_version": code_version}
        run = None if config.force else mlflow.find_run(name, identity)
        if run is not None:
            context.log.info(f"reusing MLflow run {run.info.run_id}: same training set and code")
            run_id, model_uri, reused = run.info.run_id, run.data.tags["ml_platform.model_uri"], True
            summary = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
        else:
            # A retry (of the step, or of the run from failure) resumes the attempt's MLflow run
            # and its checkpoint instead of starting over in a new run.
            attempt = {**identity, "dagster.root_run_id": context.run.root_run_id or context.run_id}
            run_id = mlflow.find_unfinished_run(name, attempt) or ""
            if run_id:
                context.log.info(f"resuming MLflow run {run_id} from its last checkpoint")
            run_id = run_id or mlflow.create_run(name, f"{name}-{context.run_id[:8]}", {
                **attempt,
                "dagster.run_id": context.run_id,
                "dagster.run_url": mlflow.dagster_run_url(context.run_id),
                "dagster.asset_key": key["trained"].to_user_string(),
                "dagster.partitions": compact_partitions(ts["partitions"]),
                "ml_platform.features_hash": ts["features_hash"],
            })
            request = TrainingRequest(
                model=name, task=tr.task, feature_builder=tr.feature_builder, target=tr.target,
                training_set_uri=lake.uri(ts["lake_key"]), mlflow_run_id=run_id,
                checkpoint_dir=str(settings.home() / "checkpoints" / name / run_id),
                checkpoint_mirror=_shared(lake.uri(f"checkpoints/{name}/{run_id}")),
                hidden=list(tr.hidden), epochs=tr.epochs, batch_size=tr.batch_size,
                learning_rate=tr.learning_rate, weight_decay=tr.weight_decay, seed=tr.seed,
                shuffle_labels=tr.shuffle_labels,
                query_columns=list(spec.query_columns),
                training_set_hash=ts["training_set_hash"], partitions=list(ts["partitions"]),
                processes=spec.compute.processes, nodes=spec.compute.nodes,
                pip_requirements=[f"torch=={installed_version('torch').split('+')[0]}",
                                  f"mlflow=={installed_version('mlflow')}"],
            )
            summary = trainer.train(context, request, env={
                "MLFLOW_TRACKING_URI": mlflow.uri,
                # MLflow prints run URLs as given, credentials included: links go in metadata.
                "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            })
            model_uri, reused = summary.pop("model_uri"), False
        return dg.MaterializeResult(metadata={
            "mlflow_run_id": run_id,
            "mlflow_run_url": dg.MetadataValue.url(mlflow.run_url(run_id)),
            "model_uri": model_uri,
            "training_set_hash": ts["training_set_hash"],
            "code_version": code_version,
            "reused_run": reused,
            **{k: v for k, v in summary.items() if isinstance(v, int | float)},
        })

    @dg.asset(
        key=key["evaluation"], deps=[trained], kinds={"mlflow"}, retry_policy=MLFLOW_RETRY,
        check_specs=[dg.AssetCheckSpec(
            "promotion_gates", asset=key["evaluation"],
            description="The candidate passes every gate of the spec and is not worse than the "
                        "champion on the same frozen test split.",
        )],
        **group,
    )
    def evaluation(context: dg.AssetExecutionContext, lake: Lake,
                   mlflow: MlflowTracker) -> dg.MaterializeResult:
        """Holdout metrics of the candidate and the current champion on the same test split."""
        model = latest_metadata(context, key["trained"])
        ts = latest_metadata(context, key["training_set"])
        test = lake.read_parquet(ts["lake_key"])
        test = test[test[SPLIT_COLUMN] == "test"]
        cmp = compare_with_champion(spec, mlflow.uri, test, model["model_uri"],
                                    mlflow.alias_version(name, PRODUCTION))
        champion_label = f"champion v{cmp.champion_version}" if cmp.champion_version else "champion"
        return dg.MaterializeResult(
            metadata={
                "mlflow_run_id": model["mlflow_run_id"],
                "champion_version": cmp.champion_version or "",
                "gates_passed": cmp.report.passed,
                "gates": cmp.report.summary(),
                "candidate_metrics": dg.MetadataValue.json(cmp.candidate),
                "champion_metrics": dg.MetadataValue.json(cmp.champion or {}),
                "comparison": dg.MetadataValue.md(_markdown_metrics(
                    {"candidate": cmp.candidate, champion_label: cmp.champion})),
                "test_rows": len(test),
                **{f"candidate_{k}": v for k, v in cmp.candidate.items()},
            },
            check_results=[dg.AssetCheckResult(
                check_name="promotion_gates", passed=cmp.report.passed,
                severity=dg.AssetCheckSeverity.WARN, description=cmp.report.summary(),
                metadata={r.gate: dg.MetadataValue.text("pass" if r.passed else "FAIL")
                          for r in cmp.report.results},
            )],
        )

    @dg.asset(key=key["registered"], deps=[evaluation], kinds={"mlflow"},
              retry_policy=MLFLOW_RETRY, **group)
    def registered(context: dg.AssetExecutionContext,
                   mlflow: MlflowTracker) -> dg.MaterializeResult:
        """MLflow model version of the candidate, aliased `candidate`."""
        model = latest_metadata(context, key["trained"])
        verdict = latest_metadata(context, key["evaluation"])
        run = mlflow.client().get_run(model["mlflow_run_id"])
        tags = {k: v for k, v in run.data.tags.items() if k.startswith(("dagster.", "ml_platform."))}
        tags.update({"ml_platform.gates": verdict["gates"],
                     "ml_platform.gates_passed": str(verdict["gates_passed"]).lower()})
        mv = mlflow.register(name, model["model_uri"], model["mlflow_run_id"], tags)
        mlflow.set_alias(name, "candidate", mv.version)
        return dg.MaterializeResult(metadata={
            "version": mv.version,
            "model_uri": f"models:/{name}/{mv.version}",
            "mlflow_run_id": model["mlflow_run_id"],
            "registry_url": dg.MetadataValue.url(mlflow.model_version_url(name, mv.version)),
            "mlflow_run_url": dg.MetadataValue.url(mlflow.run_url(model["mlflow_run_id"])),
            "gates": verdict["gates"],
        })

    @dg.asset(
        key=key["production"], deps=[registered], kinds={"mlflow"}, output_required=False,
        retry_policy=MLFLOW_RETRY,
        freshness_policy=freshness_policy(spec.freshness.warn_hours, spec.freshness.fail_hours),
        **group,
    )
    def production(context: dg.AssetExecutionContext, mlflow: MlflowTracker):
        """The model version behind alias `production`, moved only when every gate passes."""
        candidate = latest_metadata(context, key["registered"])
        verdict = latest_metadata(context, key["evaluation"])
        version = str(candidate["version"])
        if verdict["mlflow_run_id"] != candidate["mlflow_run_id"]:
            raise dg.Failure("evaluation is of another candidate: re-run evaluation first",
                             allow_retries=False)
        current = mlflow.alias_version(name, PRODUCTION)
        if current == version:
            context.log.info(f"{name} v{version} is already in production")
            return
        if not verdict["gates_passed"]:
            mlflow.client().set_model_version_tag(
                name, version, "ml_platform.promotion_status", f"rejected: {verdict['gates']}")
            context.log.warning(f"{name} v{version} stays `candidate`: {verdict['gates']}")
            return
        try:
            record = move_alias(
                mlflow, name, version, expected_current=verdict["champion_version"] or None,
                kind="promotion", reason=verdict["gates"], triggered_by="dagster",
                details={"dagster_run_id": context.run_id, "metrics": verdict["candidate_metrics"]},
            )
        except PromotionConflict as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        yield dg.MaterializeResult(metadata=production_metadata(mlflow, name, record))

    @dg.asset(key=key["serving"], deps=[production], kinds={"json"}, retry_policy=MLFLOW_RETRY,
              **group)
    def serving(lake: Lake, mlflow: MlflowTracker) -> dg.MaterializeResult:
        """The serving manifest inference reads: model URI, version and metrics."""
        manifest = serving_manifest(mlflow, name)
        return dg.MaterializeResult(metadata=serving_metadata(lake, name, manifest))

    return [features, training_set, trained, evaluation, registered, production, serving]


def production_metadata(tracker: MlflowTracker, model: str,
                        record: dict[str, Any]) -> dict[str, Any]:
    """Metadata of a `production` materialization, from the pipeline or the CLI."""
    version = record["version"]
    mv = tracker.client().get_model_version(model, version)
    return {
        "version": version,
        "previous_version": record["previous_version"] or "",
        "kind": record["kind"],
        "reason": record["reason"],
        "triggered_by": record["triggered_by"],
        "model_uri": f"models:/{model}/{version}",
        "mlflow_run_id": mv.run_id,
        "registry_url": dg.MetadataValue.url(tracker.model_version_url(model, version)),
        **{k: v for k, v in record.get("metrics", {}).items() if isinstance(v, int | float)},
    }


def serving_metadata(lake: Lake, model: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the serving manifest; metadata of the `serving` materialization."""
    lake_key = f"serving/{model}.json"
    lake.write_json(lake_key, manifest)
    return {"version": manifest["version"], "path": dg.MetadataValue.path(lake.uri(lake_key)),
            "manifest": dg.MetadataValue.json(manifest)}


def pipeline_job(spec: ModelSpec):  # -> UnresolvedAssetJobDefinition (not exported)
    """`<model>_pipeline`: every asset from raw data to serving for one model."""
    return dg.define_asset_job(
        f"{spec.name}_pipeline",
        selection=dg.AssetSelection.assets(model_key(spec.name, "serving")).upstream(),
        description=f"Land-to-serving pipeline of {spec.name}.",
    )


