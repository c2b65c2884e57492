"""Model specs: one YAML file per model, shipped with the package."""

from ml_platform.specs.model_spec import (
    BatchInferenceSpec,
    ColumnSpec,
    ComputeSpec,
    DatasetSpec,
    FreshnessWindow,
    Gate,
    ModelSpec,
    Prices,
    PromotionSpec,
    SpecError,
    TrainingSpec,
    check_cron,
    load_spec,
    load_specs,
)

__all__ = [
    "BatchInferenceSpec",
    "ColumnSpec",
    "ComputeSpec",
    "DatasetSpec",
    "FreshnessWindow",
    "Gate",
    "ModelSpec",
    "Prices",
    "PromotionSpec",
    "SpecError",
    "TrainingSpec",
    "check_cron",
    "load_spec",
    "load_specs",
]
