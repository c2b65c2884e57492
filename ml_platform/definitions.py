"""The Dagster code location: built from the shipped model specs when Dagster loads it."""

import dagster as dg

from ml_platform.pipeline.build import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
