"""Unit tests of ranking in `ml_platform.ml.train`: LambdaRank equals a pair-by-pair
computation of its definition and is the ranking default; the listwise softmax cross-entropy
in torch equals its numpy definition in `ml.metrics` and ignores queries without a click; an epoch's
batches hold whole queries of about `batch_size` rows; a ranking training reports the ranking
metrics every epoch and resumes from its checkpoint exactly; bad loss/task combinations are
refused. Real torch on CPU over small generated feeds; nothing is faked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ml_platform.ml.features import build_features, feature_columns, query_ids
from ml_platform.ml.metrics import listwise_softmax_loss
from ml_platform.ml.train import (
    TrainParams,
    _Queries,
    default_loss,
    lambdarank,
    listwise_softmax,
    train_network,
)
from ml_platform.ml.training_set import SPLIT_COLUMN, make_training_set
from ml_platform.simulation.engagement import generate_engagement

QUERY = ("event_date", "user_id")


@pytest.fixture(scope="module")
def feeds() -> pd.DataFrame:
    raw = pd.concat([generate_engagement(dt.date(2024, 6, 1) + dt.timedelta(days=i), 1200)
                     for i in range(3)], ignore_index=True)
    feats = build_features("engagement", raw, key="impression_id", date_column="event_date",
                           target="clicked")
    return make_training_set(feats, key="impression_id", valid_fraction=0.2, test_fraction=0.1,
                             seed=3, split_by=QUERY)


def test_torch_loss_matches_the_numpy_definition() -> None:
    rng = np.random.default_rng(0)
    sizes = [5, 1, 7, 3]
    groups = np.repeat(np.arange(len(sizes)), sizes)
    relevance = (rng.random(groups.size) < 0.4).astype(np.float32)
    relevance[groups == 3] = 0.0  # a query without a click carries no loss
    scores = rng.normal(size=groups.size).astype(np.float32)
    first = np.r_[1.0, (groups[1:] != groups[:-1])].astype(np.float32)
    target = torch.from_numpy(np.stack([relevance, first], axis=1))
    got = listwise_softmax(torch.from_numpy(scores), target)
    assert float(got) == pytest.approx(listwise_softmax_loss(relevance, scores, groups), rel=1e-5)
    # Softmax is shift-invariant per query; the gradient pushes a query's clicked items up
    # (together) and sums to zero over each query.
    shifted = torch.from_numpy(scores + 100.0 * groups.astype(np.float32))
    assert float(listwise_softmax(shifted, target)) == pytest.approx(float(got), rel=1e-4)
    s = torch.from_numpy(scores).requires_grad_()
    listwise_softmax(s, target).backward()
    assert s.grad is not None
    grad = s.grad.numpy()
    for q in range(len(sizes)):
        clicks = relevance[groups == q] > 0
        if clicks.any() and not clicks.all():
            assert grad[(groups == q) & (relevance > 0)].sum() < 0
        assert grad[groups == q].sum() == pytest.approx(0.0, abs=1e-6)
    assert np.allclose(grad[groups == 3], 0.0)


def _lambdarank_by_pairs(relevance: np.ndarray, scores: np.ndarray, groups: np.ndarray,
                        k: int = 10) -> float:
    total, queries = 0.0, 0
    for q in np.unique(groups):
        y, s = relevance[groups == q], scores[groups == q]
        ideal = np.sort(y)[::-1][:k]
        idcg = float((ideal / np.log2(np.arange(len(ideal)) + 2)).sum())
        if idcg == 0:
            continue
        queries += 1
        rank = np.argsort(np.argsort(-s, kind="stable"), kind="stable")
        disc = np.where(rank < k, 1 / np.log2(rank + 2.0), 0.0)
        for i in range(len(y)):
            for j in range(len(y)):
                if y[i] > y[j]:
                    delta = (y[i] - y[j]) * abs(disc[i] - disc[j]) / idcg
                    total += delta * np.log1p(np.exp(-(s[i] - s[j])))
    return total / queries


def test_lambdarank_matches_its_pair_by_pair_definition() -> None:
    rng = np.random.default_rng(1)
    sizes = [12, 3, 15, 1, 4]
    groups = np.repeat(np.arange(len(sizes)), sizes)
    relevance = (rng.random(groups.size) < 0.5).astype(np.float32)
    relevance[groups == 4] = 0.0
    scores = rng.normal(size=groups.size).astype(np.float32)
    first = np.r_[1.0, (groups[1:] != groups[:-1])].astype(np.float32)
    target = torch.from_numpy(np.stack([relevance, first], axis=1))
    got = float(lambdarank(torch.from_numpy(scores), target, max_len=max(sizes)))
    assert got == pytest.approx(_lambdarank_by_pairs(relevance, scores, groups), rel=1e-5)
    # A grid sized by the batch's queries instead of its rows: the same loss.
    by_queries = lambdarank(torch.from_numpy(scores), target, max_len=max(sizes),
                            max_queries=len(sizes))
    assert float(by_queries) == pytest.approx(got, rel=1e-6)
    assert default_loss("ranking") == "lambdarank" and default_loss("regression") == "mse"


def test_batches_hold_whole_queries() -> None:
    groups = np.array([4, 4, 1, 9, 9, 9, 1, 4, 2, 2])  # queries not contiguous in the rows
    queries = _Queries.of(groups)
    assert sorted(queries.lengths.tolist()) == [2, 2, 3, 3]
    order, sizes = queries.epoch(np.array([3, 0, 2, 1]), per_batch=2)
    assert sum(sizes) == len(groups) and len(sizes) == 2
    for batch in order.split(sizes):
        ids = groups[batch.numpy()]
        # Each query's rows are contiguous and complete within one batch.
        changes = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        assert len(changes) == len(set(ids.tolist())) == 2
        for q in set(ids.tolist()):
            assert (ids == q).sum() == (groups == q).sum()
    flags = queries.first_row_flags(len(groups))
    assert flags.sum() == 4


def _arrays(ts: pd.DataFrame, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    part = ts[ts[SPLIT_COLUMN] == split]
    return (part[list(feature_columns("engagement"))].to_numpy(np.float32),
            part["clicked"].to_numpy(np.float32), query_ids(part, QUERY))


def _params(epochs: int, loss: str = "lambdarank") -> TrainParams:
    return TrainParams(hidden=(16,), epochs=epochs, batch_size=200, learning_rate=3e-3, seed=1,
                       task="ranking", loss=loss)


@pytest.mark.parametrize("loss", ["lambdarank", "listwise_softmax"])
def test_ranking_training_reports_ranking_metrics_and_resumes(feeds: pd.DataFrame,
                                                              tmp_path: Path, loss: str) -> None:
    xt, yt, gt = _arrays(feeds, "train")
    xv, yv, gv = _arrays(feeds, "valid")
    straight = train_network(xt, yt, xv, yv, _params(3, loss), train_groups=gt,
                             valid_groups=gv, device="cpu")
    assert [set(h) for h in straight.history] == [
        {"train_loss", "valid_ndcg_at_10", "valid_precision_at_10", "valid_loss"}] * 3
    assert straight.history[-1]["valid_loss"] < straight.history[0]["valid_loss"]
    assert 0.5 < straight.history[-1]["valid_ndcg_at_10"] <= 1.0
    # A raw score: nothing to de-standardise.
    assert float(straight.model.y_mean) == 0.0 and float(straight.model.y_std) == 1.0

    ckpt = tmp_path / "ckpt"
    train_network(xt, yt, xv, yv, _params(2, loss), train_groups=gt, valid_groups=gv,
                  device="cpu", checkpoint_dir=ckpt)
    resumed = train_network(xt, yt, xv, yv, _params(3, loss), train_groups=gt, valid_groups=gv,
                            device="cpu", checkpoint_dir=ckpt)
    assert resumed.resumed_from_epoch == 2
    assert resumed.history == straight.history  # CPU: bit for bit
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b)


def test_pointwise_mse_on_a_ranking_task_still_reports_ranking_metrics(
        feeds: pd.DataFrame) -> None:
    xt, yt, _ = _arrays(feeds, "train")
    xv, yv, gv = _arrays(feeds, "valid")
    params = TrainParams(hidden=(16,), epochs=1, batch_size=200, learning_rate=3e-3, seed=1,
                         task="ranking", loss="mse")
    result = train_network(xt, yt, xv, yv, params, valid_groups=gv, device="cpu")
    assert set(result.history[0]) == {"train_loss", "valid_ndcg_at_10", "valid_precision_at_10",
                                      "valid_loss"}


def test_bad_combinations_are_refused(feeds: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="needs task 'ranking'"):
        TrainParams(hidden=(4,), epochs=1, batch_size=8, learning_rate=0.1,
                    loss="listwise_softmax")
    with pytest.raises(ValueError, match="unknown loss 'bce'"):
        TrainParams(hidden=(4,), epochs=1, batch_size=8, learning_rate=0.1, loss="bce")
    xt, yt, _ = _arrays(feeds, "train")
    xv, yv, gv = _arrays(feeds, "valid")
    with pytest.raises(ValueError, match="'lambdarank' needs task 'ranking'"):
        TrainParams(hidden=(4,), epochs=1, batch_size=8, learning_rate=0.1, loss="lambdarank")
    with pytest.raises(ValueError, match="needs train_groups"):
        train_network(xt, yt, xv, yv, _params(1), valid_groups=gv)
    with pytest.raises(ValueError, match="needs valid_groups"):
        train_network(xt, yt, xv, yv, _params(1), train_groups=np.zeros(len(xt)))


def _ddp_ranking_worker(rank: int, port: int, arrays: tuple[np.ndarray, ...], out: str) -> None:
    """One of two ranks, started the way torchrun starts them: by environment variables."""
    import json
    import os

    from ml_platform.ml.distributed import distributed_session

    os.environ.update({
        "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "ML_PLATFORM_DEVICE": "cpu",
    })
    xt, yt, gt, xv, yv, gv = arrays
    with distributed_session() as (_ctx, _device):
        result = train_network(xt, yt, xv, yv, _params(3), train_groups=gt, valid_groups=gv)
    torch.save(result.model.state_dict(), Path(out) / f"model{rank}.pt")
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result.history))


def test_two_ranks_train_whole_queries_like_one_process(feeds: pd.DataFrame,
                                                        tmp_path: Path) -> None:
    import json

    import torch.multiprocessing as mp

    from ml_platform.tracking.server import free_port

    arrays = (*_arrays(feeds, "train"), *_arrays(feeds, "valid"))
    mp.start_processes(_ddp_ranking_worker, args=(free_port(), arrays, str(tmp_path)), nprocs=2,
                       start_method="spawn")
    histories = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert histories[0] == histories[1]
    models = [torch.load(tmp_path / f"model{r}.pt", weights_only=True) for r in range(2)]
    for name, tensor in models[0].items():
        assert torch.equal(tensor, models[1][name]), name
    xt, yt, gt, xv, yv, gv = arrays
    single = train_network(xt, yt, xv, yv, _params(3), train_groups=gt, valid_groups=gv,
                           device="cpu")
    # Each rank's batches are half the queries of a single-process batch (a padded query or
    # two per epoch, and per-rank loss normalisation, make it differ by a little).
    assert histories[0][-1]["valid_ndcg_at_10"] == pytest.approx(
        single.history[-1]["valid_ndcg_at_10"], abs=0.02)
