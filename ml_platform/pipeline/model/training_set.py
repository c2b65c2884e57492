"""`<model>/training_set`: a frozen train/valid/test snapshot of the training window's features.

The window ends with the newest validated day and spans `training.window_days` calendar days
(`partitions.window`, a time-window partition mapping; every day without a window): the
training set reads those days' feature tables, which `features` computed once per day, so
the cost of a retrain follows the window, not the history.
"""


import dagster as dg
import pandas as pd

from ml_platform import names
from ml_platform.ml.training_set import SPLIT_COLUMN, content_hash, make_training_set
from ml_platform.pipeline.keys import raw_key
from ml_platform.pipeline.model.common import Chain
from ml_platform.pipeline.model.features import day_features
from ml_platform.pipeline.partitions import window
from ml_platform.pipeline.raw_versions import SOURCE_ATTR
from ml_platform.pipeline.retries import STORAGE_RETRY, fail_fast
from ml_platform.records import TrainingSetRecord
from ml_platform.storage.interfaces import LakeStore


def window_features(chain: Chain, context: dg.AssetExecutionContext, lake: LakeStore
                    ) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The feature table of each validated day of the training window (oldest first) and the
    window's days that landed without a validated table. A validated day without a feature
    table (a model added to a dataset with history) has it computed here, once."""
    ds, tr = chain.spec.dataset, chain.spec.training
    copied = context.instance.get_materialized_partitions(raw_key(ds.name))
    newest = next((d for d in sorted(copied, reverse=True)
                   if lake.exists(names.validated_lake_key(ds.name, d))), None)
    if newest is None:
        raise dg.Failure(f"no validated days of {ds.name} in the lake: land and validate data",
                         allow_retries=False)
    tables: dict[str, pd.DataFrame] = {}
    skipped, computed = [], []
    for day in (d for d in window(ds, tr.window_days, newest) if d in copied):
        key = names.features_lake_key(chain.name, day)
        if lake.exists(key):
            tables[day] = lake.read_parquet(key)
        elif (table := day_features(chain.spec, lake, day)) is not None:
            tables[day] = table
            computed.append(day)
        else:
            skipped.append(day)
    if computed:
        context.log.info(f"computed the missing feature tables of {len(computed)} day(s): "
                         f"{', '.join(computed)}")
    return tables, skipped


def training_set_asset(chain: Chain) -> dg.AssetsDefinition:
    spec, ds, tr = chain.spec, chain.spec.dataset, chain.spec.training

    train = 1 - tr.valid_fraction - tr.test_fraction
    split = f"{train:.0%}/{tr.valid_fraction:.0%}/{tr.test_fraction:.0%}"
    by = f", whole {'+'.join(spec.query_columns)} queries per split" if spec.query_columns else ""
    days = f"the newest {tr.window_days} days" if tr.window_days else "every day"

    @dg.asset(key=chain.key("training_set"),
              # reads the window's days (see the module docstring), not all of them
              deps=[dg.AssetDep(chain.key("features"), partition_mapping=dg.AllPartitionMapping())],
              kinds={"parquet"}, retry_policy=STORAGE_RETRY, **chain.group,
              description=f"Frozen {split} train/valid/test snapshot of the features of {days} "
                          f"up to the newest validated one (seed {tr.seed}{by}), identified by "
                          "its content hash.")
    def training_set(context: dg.AssetExecutionContext, lake: LakeStore) -> dg.MaterializeResult:
        """Frozen train/valid/test snapshot of the window's features, identified by its
        content hash."""
        with fail_fast():
            tables, skipped = window_features(chain, context, lake)
            features = pd.concat(tables.values(), ignore_index=True)
            features.attrs = {}
            features_hash = content_hash(features)
            frame = make_training_set(
                features, key=ds.key,
                valid_fraction=tr.valid_fraction, test_fraction=tr.test_fraction, seed=tr.seed,
                # a ranking query (a user's feed of a day) stays whole within one split
                split_by=spec.query_columns,
            )
            del features
            digest = content_hash(frame)
            counts = frame[SPLIT_COLUMN].value_counts().to_dict()
            record = TrainingSetRecord(
                lake_key=names.training_set_lake_key(chain.name, digest), training_set_hash=digest,
                features_hash=features_hash, partitions=sorted(tables),
                sources={d: str(t.attrs.get(SOURCE_ATTR, "")) for d, t in tables.items()},
                skipped_partitions=skipped,
                **{f"rows_{s}": int(counts.get(s, 0)) for s in ("train", "valid", "test")},
            )
            if not lake.exists(record.lake_key):  # content-addressed: never rewritten
                lake.write_parquet(record.lake_key, frame)
            return dg.MaterializeResult(
                metadata={**record.to_metadata(), "path": dg.MetadataValue.path(lake.uri(record.lake_key)),
                          "dagster/row_count": len(frame)},
                data_version=dg.DataVersion(digest[:16]),
            )

    return training_set
