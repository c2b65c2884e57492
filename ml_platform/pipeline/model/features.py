"""`<model>/features`: the feature table over the validated days of the training window."""


import dagster as dg
import pandas as pd

from ml_platform import names
from ml_platform.ml.features import build_features
from ml_platform.ml.training_set import content_hash
from ml_platform.pipeline.datasets import previous_day_check
from ml_platform.pipeline.keys import raw_key, validated_key
from ml_platform.pipeline.model.common import Chain
from ml_platform.pipeline.raw_versions import SOURCE_ATTR
from ml_platform.pipeline.retries import STORAGE_RETRY, fail_fast
from ml_platform.records import FeaturesRecord
from ml_platform.storage.interfaces import LakeStore, LandingStore


def features_asset(chain: Chain) -> dg.AssetsDefinition:
    ds, tr = chain.spec.dataset, chain.spec.training
    key = chain.key("features")
    window = f"the newest {tr.window_days}" if tr.window_days else "all"  # validated days

    @dg.asset(
        key=key,
        description=f"Feature table ({tr.feature_builder} builder) over {window} validated "
                    f"days of {ds.name}, content-hashed.",
        deps=[dg.AssetDep(validated_key(ds.name), partition_mapping=dg.AllPartitionMapping())],
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
        """Feature table over the validated days in the training window (content-hashed)."""
        with fail_fast():
            copied = sorted(context.instance.get_materialized_partitions(raw_key(ds.name)))
            validated = [d for d in copied if lake.exists(names.validated_lake_key(ds.name, d))]
            present = validated[-tr.window_days:] if tr.window_days else validated
            if not present:
                raise dg.Failure(f"no validated days of {ds.name} in the lake: land and validate data",
                                 allow_retries=False)
            frames = {d: lake.read_parquet(names.validated_lake_key(ds.name, d)) for d in present}
            frame = pd.concat(frames.values(), ignore_index=True)
            table = build_features(tr.feature_builder, frame, key=ds.key, date_column=ds.date_column,
                                   target=tr.target)
            digest = content_hash(table)
            record = FeaturesRecord(
                lake_key=names.features_lake_key(chain.name, digest), content_hash=digest,
                partitions=present,
                sources={d: f.attrs.get(SOURCE_ATTR, "") for d, f in frames.items()},
                skipped_partitions=[d for d in copied if present[0] <= d <= present[-1]
                                    and d not in present])
            lake.write_parquet(record.lake_key, table)
            return dg.MaterializeResult(
                metadata={
                    **record.to_metadata(),
                    "path": dg.MetadataValue.path(lake.uri(record.lake_key)),
                    "dagster/row_count": len(table),
                    "preview": dg.MetadataValue.md(table.head(5).to_markdown(index=False)),
                },
                data_version=dg.DataVersion(digest[:16]),
                check_results=[previous_day_check(ds, copied, lake, landing)]
                if ds.require_previous_day_complete else None,
            )

    return features
