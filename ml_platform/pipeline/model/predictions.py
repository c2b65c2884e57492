"""`<model>/predictions` (a spec's `batch_inference`): each validated day scored with the
production version, one Parquet table per day, partitioned like the dataset.

Part of the dataset's retrain runs (it is downstream of `validated`), so a new day is scored
after its retrain has moved production or not; the `<model>_pipeline` job (the demo) leaves it
out. Each materialization records the version that scored the day and carries it as its data
version, and `production`'s data version is its version too: when production moves, Dagster
shows the days scored by the old version as stale ("upstream data changed"), and one backfill
of `predictions` over those days scores them again.
"""


import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_platform import names
from ml_platform.pipeline.keys import validated_key
from ml_platform.pipeline.model.common import Chain
from ml_platform.pipeline.model.production import production_data_version
from ml_platform.pipeline.partitions import day_partitions
from ml_platform.pipeline.raw_versions import SOURCE_ATTR
from ml_platform.pipeline.retries import MLFLOW_RETRY, fail_fast
from ml_platform.records import PredictionsRecord
from ml_platform.specs import ModelSpec
from ml_platform.storage.interfaces import LakeStore
from ml_platform.tracking.mlflow_resource import MlflowTracker
from ml_platform.tracking.scoring import download_model, load_model, predict

VERSION_COLUMN = "model_version"


def prediction_column(spec: ModelSpec) -> str:
    """The column holding the model's output, named after its target."""
    return f"predicted_{spec.training.target}"


def day_predictions(spec: ModelSpec, model: object, version: str,
                    frame: pd.DataFrame) -> pd.DataFrame:
    """The predictions table of one validated day: its key, date and group columns, the
    prediction and the version that made it."""
    ds = spec.dataset
    table = frame[[ds.key, ds.date_column, *spec.group_columns]].copy()
    table[prediction_column(spec)] = predict(model, frame)
    table[VERSION_COLUMN] = version
    table.attrs = {SOURCE_ATTR: frame.attrs.get(SOURCE_ATTR, "")}
    return table


def predictions_asset(chain: Chain) -> dg.AssetsDefinition:
    spec, ds = chain.spec, chain.spec.dataset

    @dg.asset(
        key=chain.key("predictions"),
        description=f"{prediction_column(spec)} for each validated day of {ds.name}, scored "
                    f"with the production version of {spec.name}; a day scored by an earlier "
                    "version shows as stale: materialize it again to re-score.",
        deps=[validated_key(ds.name), chain.key("production")],  # the same day; the version
        partitions_def=day_partitions(ds),
        # like `validated` and `features` (a retrain run takes all three): a re-scoring
        # backfill of N days is ceil(N/10) runs, one model load each
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=10),
        kinds={"mlflow", "parquet"}, output_required=False, retry_policy=MLFLOW_RETRY,
        **chain.group,
    )
    def predictions(context: dg.AssetExecutionContext, lake: LakeStore,
                    mlflow: MlflowTracker) -> Iterator[dg.MaterializeResult]:
        """Each validated day of the run's range scored with the production version."""
        with fail_fast(mlflow):
            version = mlflow.alias_version(spec.name, names.PRODUCTION_ALIAS)
            if version is None:  # a retrain run whose first candidate failed its gates
                context.log.warning(f"{spec.name} has no production version yet: nothing "
                                    "scored; the days stay missing")
                return
            days = [d for d in context.partition_keys
                    if lake.exists(names.validated_lake_key(ds.name, d))]
            skipped = [d for d in context.partition_keys if d not in days]
            if not days:
                raise dg.Failure(f"no validated days of {ds.name} in the lake among "
                                 f"{', '.join(skipped)}: land and validate data",
                                 allow_retries=False)
            model_uri = f"models:/{spec.name}/{version}"
            tables: dict[str, pd.DataFrame] = {}
            with tempfile.TemporaryDirectory() as tmp:
                model = load_model(download_model(model_uri, mlflow.uri, Path(tmp)))
                for day in days:
                    frame = lake.read_parquet(names.validated_lake_key(ds.name, day))
                    tables[day] = table = day_predictions(spec, model, version, frame)
                    lake.write_parquet(names.predictions_lake_key(spec.name, day), table)
            record = PredictionsRecord(
                model=spec.name, version=version, model_uri=model_uri,
                mlflow_run_id=mlflow.client().get_model_version(spec.name, version).run_id,
                partitions=days,
                lake_keys={d: names.predictions_lake_key(spec.name, d) for d in days},
                rows={d: len(t) for d, t in tables.items()},
                sources={d: str(t.attrs.get(SOURCE_ATTR, "")) for d, t in tables.items()},
                skipped_partitions=skipped)
            newest = max(days)
            yield dg.MaterializeResult(
                metadata={
                    **record.to_metadata(),
                    "path": dg.MetadataValue.path(lake.uri(record.lake_keys[newest])),
                    "registry_url": dg.MetadataValue.url(
                        mlflow.model_version_url(spec.name, version)),
                    "dagster/row_count": sum(record.rows.values()),
                    "preview": dg.MetadataValue.md(
                        tables[newest].head(5).to_markdown(index=False)),
                },
                # the version that scored the days: what the UI compares with `production`'s
                data_version=production_data_version(version),
            )

    return predictions
