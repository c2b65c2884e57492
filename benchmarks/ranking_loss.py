"""feed_ranking: the ranking losses against the same network trained with MSE.

    .venv/bin/python benchmarks/ranking_loss.py [--seeds 11 12 13] [--no-write]

The shipped `feed_ranking` spec (its data window, rows per day, split, hidden sizes, epochs,
batch size, learning rate) on generated engagement days, trained by the platform's own loop
(`ml.train.train_network`) with the loss the platform ships for ranking (`lambdarank`,
batches of whole user-day queries), with the listwise softmax cross-entropy, and pointwise with
MSE on the click label (what the platform trained before), for each seed (the spec's seed
first). Reports the
test NDCG@10 (the promotion gate's metric) and precision@10 of each, and their mean over the
seeds; the section goes to docs/benchmarks.md and its table into the README by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

import numpy as np
import pandas as pd
from common import publish, run_context

SECTION = "ranking_loss"
FIRST = dt.date(2026, 1, 1)


def training_set(spec) -> pd.DataFrame:
    from ml_platform.ml.features import build_features
    from ml_platform.ml.training_set import make_training_set
    from ml_platform.simulation.generators import generate

    ds, tr = spec.dataset, spec.training
    raw = pd.concat([generate(ds.generator, FIRST + dt.timedelta(days=i), ds.rows_per_day)
                     for i in range(tr.window_days)], ignore_index=True)
    feats = build_features(tr.feature_builder, raw, key=ds.key, date_column=ds.date_column,
                           target=tr.target)
    return make_training_set(feats, key=ds.key, valid_fraction=tr.valid_fraction,
                             test_fraction=tr.test_fraction, seed=tr.seed,
                             split_by=spec.query_columns)


def train_and_test(spec, ts: pd.DataFrame, loss: str, seed: int) -> dict[str, float]:
    import torch

    from ml_platform.ml.features import feature_columns, query_ids
    from ml_platform.ml.metrics import ranking_metrics
    from ml_platform.ml.train import TrainParams, train_network
    from ml_platform.ml.training_set import SPLIT_COLUMN

    tr = spec.training
    cols = list(feature_columns(tr.feature_builder))
    part = {s: ts[ts[SPLIT_COLUMN] == s] for s in ("train", "valid", "test")}
    x = {s: p[cols].to_numpy(np.float32) for s, p in part.items()}
    y = {s: p[tr.target].to_numpy(np.float32) for s, p in part.items()}
    g = {s: query_ids(p, spec.query_columns) for s, p in part.items()}
    params = TrainParams(hidden=tr.hidden, epochs=tr.epochs, batch_size=tr.batch_size,
                         learning_rate=tr.learning_rate, seed=seed, task="ranking", loss=loss)
    result = train_network(x["train"], y["train"], x["valid"], y["valid"], params,
                           train_groups=g["train"], valid_groups=g["valid"], device="cpu")
    with torch.no_grad():
        scores = result.model(torch.from_numpy(x["test"])).numpy()
    return ranking_metrics(y["test"], scores, g["test"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the spec's seed and the next two")
    parser.add_argument("--no-write", dest="no_write", action="store_true")
    args = parser.parse_args()
    import torch

    from ml_platform.specs import load_specs

    torch.set_num_threads(1)  # as the entrypoint on 2 CPUs; deterministic
    spec = next(s for s in load_specs() if s.name == "feed_ranking")
    seeds = args.seeds or [spec.training.seed + i for i in range(3)]
    began = time.perf_counter()
    ts = training_set(spec)
    results: dict[str, list[dict[str, float]]] = {
        "lambdarank": [], "listwise_softmax": [], "mse": []}
    for seed in seeds:
        for loss, runs in results.items():
            runs.append(train_and_test(spec, ts, loss, seed))
            print(f"seed {seed} {loss:16s} {runs[-1]}", flush=True)
    gate = next(g for g in spec.promotion.gates if g.metric == "ndcg_at_10")
    rows = ["| loss | " + " | ".join(f"seed {s}" for s in seeds) + " | mean NDCG@10 | "
            "mean precision@10 | passes the gate (" + str(gate) + ") |",
            "|---" * (len(seeds) + 4) + "|"]
    for loss, runs in results.items():
        ndcg = [r["ndcg_at_10"] for r in runs]
        rows.append(f"| {loss} | " + " | ".join(f"{v:.4f}" for v in ndcg)
                    + f" | **{statistics.mean(ndcg):.4f}** | "
                    f"{statistics.mean(r['precision_at_10'] for r in runs):.4f} | "
                    f"{'all seeds' if all(gate.passes(v) for v in ndcg) else 'NOT all'} |")
    tr = spec.training
    n_test = int((ts["split"] == "test").sum())
    context = "\n".join(run_context(__file__))
    body = f"""## feed_ranking: ranking losses vs MSE

{context}
- wall time: {time.perf_counter() - began:.0f} s

The shipped `feed_ranking` spec on {tr.window_days} generated days of
{spec.dataset.rows_per_day} impressions ({len(ts):,} rows, {n_test:,} test rows in whole
user-day queries): MLP {",".join(map(str, tr.hidden))}, {tr.epochs} epochs, batch
{tr.batch_size}, Adam lr {tr.learning_rate}, trained by `ml.train.train_network` with
LambdaRank (pairs of a user-day weighted by their |ΔNDCG@10|, batches of whole queries: what
the platform ships), with the listwise softmax cross-entropy, and pointwise with MSE on the
click label (what it trained before), per seed. Test NDCG@10 per seed:

{chr(10).join(rows)}
"""
    publish(SECTION, body, write=not args.no_write)


if __name__ == "__main__":
    main()
