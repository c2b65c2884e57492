"""`<model>/features`: one feature table per validated day, partitioned like the days.

A run computes the feature tables of the days of its partition range only: a day's table is
never computed again unless the day is validated again. The builders are row-wise (a row's
features depend on that row and its day alone), so the tables of a window's days, concatenated,
are exactly the table the builder makes over the window's rows (`ml_platform_tests` checks it).
"""


import dagster as dg
import pandas as pd

from ml_platform import names
from ml_platform.ml.features import build_features
from ml_platform.pipeline.datasets import previous_day_check
from ml_platform.pipeline.keys import raw_key, validated_key
from ml_platform.pipeline.model.common import Chain
from ml_platform.pipeline.partitions import day_partitions
from ml_platform.pipeline.raw_versions import SOURCE_ATTR
from ml_platform.pipeline.retries import STORAGE_RETRY, fail_fast
from ml_platform.records import FeaturesRecord
from ml_platform.specs import ModelSpec
from ml_platform.storage.interfaces import LakeStore, LandingStore


def day_features(spec: ModelSpec, lake: LakeStore, day: str) -> pd.DataFrame | None:
    """Compute and store the feature table of validated `day` (None: the day has no validated
    table). The table keeps, as its Parquet metadata, the landed file it came from."""
    ds, tr = spec.dataset, spec.training
    validated = names.validated_lake_key(ds.name, day)
    if not lake.exists(validated):
        return None
    frame = lake.read_parquet(validated)
    table = build_features(tr.feature_builder, frame, key=ds.key, date_column=ds.date_column,
                           target=tr.target)
    table.attrs = {SOURCE_ATTR: frame.attrs.get(SOURCE_ATTR, "")}
    lake.write_parquet(names.features_lake_key(spec.name, day), table)
    return table


def features_asset(chain: Chain) -> dg.AssetsDefinition:
    ds, tr = chain.spec.dataset, chain.spec.training
    key = chain.key("features")

    @dg.asset(
        key=key,
        description=f"Feature table ({tr.feature_builder} builder) of each validated day of "
                    f"{ds.name}, computed once per day.",
        deps=[validated_key(ds.name)],  # the same day
        partitions_def=day_partitions(ds),
        # like `validated`: a backfill of N days is ceil(N/10) range runs
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=10),
        kinds={"pandas", "parquet"}, retry_policy=STORAGE_RETRY,
        check_specs=[dg.AssetCheckSpec(
            names.PREVIOUS_DAY_CHECK, asset=key, blocking=True,
            description="The day before the newest landed day passed validation, completeness "
                        "included: training waits for it.",
        )] if ds.require_previous_day_complete else None,
        **chain.group,
    )
    def features(context: dg.AssetExecutionContext, lake: LakeStore,
                 landing: LandingStore) -> dg.MaterializeResult:
        """Feature table of each validated day of the run's range."""
        with fail_fast():
            tables: dict[str, pd.DataFrame] = {}
            skipped = []
            for day in context.partition_keys:
                table = day_features(chain.spec, lake, day)
                if table is None:
                    skipped.append(day)
                else:
                    tables[day] = table
            if not tables:
                raise dg.Failure(f"no validated days of {ds.name} in the lake among "
                                 f"{', '.join(skipped)}: land and validate data",
                                 allow_retries=False)
            record = FeaturesRecord(
                partitions=sorted(tables),
                lake_keys={d: names.features_lake_key(chain.name, d) for d in sorted(tables)},
                skipped_partitions=skipped,
                sources={d: str(t.attrs.get(SOURCE_ATTR, "")) for d, t in sorted(tables.items())},
                rows=sum(len(t) for t in tables.values()))
            newest = max(tables)
            copied = sorted(context.instance.get_materialized_partitions(raw_key(ds.name)))
            return dg.MaterializeResult(
                metadata={
                    **record.to_metadata(),
                    "path": dg.MetadataValue.path(lake.uri(record.lake_keys[newest])),
                    "dagster/row_count": record.rows,
                    "preview": dg.MetadataValue.md(tables[newest].head(5).to_markdown(index=False)),
                },
                check_results=[previous_day_check(ds, copied, lake, landing)]
                if ds.require_previous_day_complete else None,
            )

    return features
