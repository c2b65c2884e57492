"""`<model>/training_set`: a frozen train/valid/test snapshot of the features."""


import dagster as dg

from ml_platform import names
from ml_platform.ml.training_set import SPLIT_COLUMN, content_hash, make_training_set
from ml_platform.pipeline.model.common import Chain
from ml_platform.pipeline.retries import STORAGE_RETRY, fail_fast
from ml_platform.pipeline.upstream import upstream, upstream_metadata
from ml_platform.records import FeaturesRecord, TrainingSetRecord
from ml_platform.storage.interfaces import LakeStore


def training_set_asset(chain: Chain) -> dg.AssetsDefinition:
    spec, ds, tr = chain.spec, chain.spec.dataset, chain.spec.training

    train = 1 - tr.valid_fraction - tr.test_fraction
    split = f"{train:.0%}/{tr.valid_fraction:.0%}/{tr.test_fraction:.0%}"
    by = f", whole {'+'.join(spec.query_columns)} queries per split" if spec.query_columns else ""

    @dg.asset(key=chain.key("training_set"), deps=[chain.key("features")], kinds={"parquet"},
              retry_policy=STORAGE_RETRY, **chain.group,
              description=f"Frozen {split} train/valid/test snapshot of the features (seed "
                          f"{tr.seed}{by}), identified by its content hash.")
    def training_set(context: dg.AssetExecutionContext, lake: LakeStore) -> dg.MaterializeResult:
        """Frozen train/valid/test snapshot of the features, identified by its content hash."""
        with fail_fast():
            features = upstream(context, chain.key("features"), FeaturesRecord)
            frame = make_training_set(
                lake.read_parquet(features.record.lake_key), key=ds.key,
                valid_fraction=tr.valid_fraction, test_fraction=tr.test_fraction, seed=tr.seed,
                # a ranking query (a user's feed of a day) stays whole within one split
                split_by=spec.query_columns,
            )
            digest = content_hash(frame)
            counts = frame[SPLIT_COLUMN].value_counts().to_dict()
            record = TrainingSetRecord(
                lake_key=names.training_set_lake_key(chain.name, digest), training_set_hash=digest,
                features_hash=features.record.content_hash, partitions=features.record.partitions,
                sources=features.record.sources,
                **{f"rows_{s}": int(counts.get(s, 0)) for s in ("train", "valid", "test")},
            )
            if not lake.exists(record.lake_key):  # content-addressed: never rewritten
                lake.write_parquet(record.lake_key, frame)
            return dg.MaterializeResult(
                metadata={**record.to_metadata(), "path": dg.MetadataValue.path(lake.uri(record.lake_key)),
                          "dagster/row_count": len(frame),
                          **upstream_metadata(("features", features))},
                data_version=dg.DataVersion(digest[:16]),
            )

    return training_set
