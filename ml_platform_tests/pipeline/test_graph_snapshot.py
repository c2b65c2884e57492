"""A snapshot of the generated asset graph of the shipped specs: every asset (deps, group,
kinds, partitions, checks, pool), job, sensor and schedule. An unintended change to the graph
fails here and shows in review as a diff of `snapshots/asset_graph.json`; an intended one is
recorded with `UPDATE_SNAPSHOTS=1 pytest ml_platform_tests/pipeline/test_graph_snapshot.py`.
Nothing is faked."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from ml_platform.pipeline.build import build_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph_snapshot(defs: dg.Definitions) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "checks": sorted(c.name for c in node.check_keys),
            "pools": sorted(node.pools or ()),
            "code_version": bool(node.code_version),
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs()
                       if not j.name.startswith("__")),
        "sensors": sorted(s.name for s in defs.sensors or []),
        "schedules": sorted((s.name, s.cron_schedule) for s in defs.schedules or []),
    }


def test_asset_graph_matches_its_snapshot() -> None:
    current = json.loads(json.dumps(graph_snapshot(build_definitions())))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), (
        "the asset graph changed: if intended, rerun with UPDATE_SNAPSHOTS=1 and commit the diff")
