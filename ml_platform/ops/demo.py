"""`ml-platform demo`: land synthetic days and run every model to production, in process."""

from __future__ import annotations

from ml_platform.ops.execute import fail_dead_runs, run_model_pipeline
from ml_platform.ops.lineage import lineage, render
from ml_platform.ops.platform import Platform
from ml_platform.ops.progress import StepProgress
from ml_platform.pipeline.build import build_definitions
from ml_platform.pipeline.keys import model_key
from ml_platform.simulation.landing import default_start, land_days


def run_demo(p: Platform, *, days: int, models: list[str] | None, retrain: bool,
             progress: StepProgress | None = None) -> int:
    """Land `days` days of each dataset and run each model's pipeline (`retrain`: only a forced
    retrain on the current training set, then gates and promotion), its steps shown by
    `progress`. Prints each production version with its lineage; returns the number of models
    that did not reach production."""
    progress = progress or StepProgress()
    specs = [p.spec(m) for m in models] if models else p.specs
    fail_dead_runs(p.instance)  # runs a killed command left STARTED
    for ds in {s.dataset.name: s.dataset for s in specs}.values():
        landed = land_days(p.landing, ds, default_start(days), days)
        print(f"{ds.name}: {sum(x.written for x in landed)} day(s) landed, "
              f"{sum(not x.written for x in landed)} already there")
    defs = build_definitions(specs, profile=p.profile)
    failures = 0
    for spec in specs:
        trained_before = p.instance.get_latest_materialization_event(
            model_key(spec.name, "training_set")) is not None
        with progress.running(f"\n{spec.name}"):
            result = run_model_pipeline(defs, spec, p.instance, p.landing, progress=progress,
                                        retrain_only=retrain and trained_before)
        if not result.success:
            failures += 1
            print(f"{spec.name}: run {result.run_id} FAILED; see `ml-platform dev` for details")
            continue
        chain = lineage(spec, p.instance, p.tracker)
        metric = spec.promotion.primary_metric
        value = chain["mlflow_run"]["metrics"].get("test_" + metric, float("nan"))
        print(f"\n{spec.name}: production is v{chain['version']}, {metric} = {value:.3f}")
        print(f"MLflow run: {chain['mlflow_run']['url']}")
        print(render(chain))
    return failures
