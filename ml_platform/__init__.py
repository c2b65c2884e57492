"""ml_platform: an ML training platform built on Dagster and MLflow."""
