"""Training throughput: what tracking, checkpoints and data parallelism cost the training loop.

    .venv/bin/python benchmarks/training_throughput.py

Measures samples/s (training rows through forward+backward+step, per second of the epoch loop)
of the training entrypoint's training path, `ml_platform.compute.entrypoint.run_training`
(per-epoch validation, atomic checkpoint and asynchronous MLflow logging to a real `mlflow
server` on loopback), against a bare torch loop over the same model, data, device and batches:

- tracked vs bare                       budget >= 0.95x (tracking + checkpoints cost < 5%)
- tracked, server 200 ms away, vs bare   budget >= 0.90x (a loopback proxy in a child process
                                         holds every HTTP request 200 ms; logging must not block)
- DDP, 2 processes vs 1 (torchrun, the entrypoint's `--request` path, no tracking)

The training path's time includes draining the asynchronous metric queue after the last epoch
(`flush`), so a logger that only looks non-blocking still shows up. Fixed per-run costs that
do not scale with training (creating the run, logging the model) are reported, not budgeted.
Each case runs 5 times (`--repeats`), interleaved; medians are printed and written to docs/benchmarks.md.
CUDA is used when present (bf16 autocast), as the entrypoint does; nothing else changes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

from common import ROOT, publish, run_context

SECTION = "training_throughput"
IMPORTANCE_COLUMNS = 13  # the bookings transform's raw inputs, booking_date included
LATENCY_S = 0.2
BUDGET_TRACKED, BUDGET_LATENCY = 0.95, 0.90


# -- a loopback proxy that holds each HTTP request back ------------------------------------------

def serve_delay_proxy(listen_port: int, target_port: int, delay: float) -> None:
    """Forward 127.0.0.1:listen_port to :target_port, holding each request `delay` seconds.

    A request is the first client bytes after the server last answered on that connection, so
    a keep-alive connection's requests are each delayed once (not once per TCP chunk)."""

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        fresh = [True]

        async def upstream() -> None:
            while data := await client_r.read(1 << 16):
                if fresh[0]:
                    fresh[0] = False
                    await asyncio.sleep(delay)
                server_w.write(data)
                await server_w.drain()
            server_w.close()

        async def downstream() -> None:
            while data := await server_r.read(1 << 16):
                fresh[0] = True
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await asyncio.gather(upstream(), downstream())

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- the cases ----------------------------------------------------------------------------------

@dataclass
class Sample:
    samples_per_s: float
    seconds: float
    extra: dict[str, float]


def training_setup() -> str:
    """How both loops train here: device, torch threads per process, MLflow version."""
    import torch

    from ml_platform.ml.distributed import select_device, threads_per_process

    device = select_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (f"MLflow {installed_version('mlflow')}; training on **{name}** with "
            f"{threads_per_process(1)} torch thread(s) per process, as the entrypoint sets them")


def make_training_set(path: Path, days: int, rows: int) -> None:
    import pandas as pd

    from ml_platform.ml.features import build_features
    from ml_platform.ml.training_set import make_training_set as freeze
    from ml_platform.simulation.bookings import generate_bookings

    raw = pd.concat([generate_bookings(dt.date(2024, 1, 1) + dt.timedelta(days=i), rows)
                     for i in range(days)], ignore_index=True)
    feats = build_features("bookings", raw, key="booking_id", date_column="booking_date",
                           target="nightly_price")
    freeze(feats, key="booking_id", valid_fraction=0.15, test_fraction=0.15, seed=7).to_parquet(path)


def bare_loop(request, splits) -> Sample:
    """The loop anyone would write: same model, data, device, batches, and the same per-epoch
    validation metrics (MAE, RMSE, loss: one host sync an epoch); no checkpoint, no tracking,
    no DDP wrapper."""
    import torch
    from torch import nn

    from ml_platform.ml.distributed import autocast, select_device
    from ml_platform.ml.models import build_regressor

    device = select_device()
    torch.manual_seed(request.seed)
    model = build_regressor(torch.from_numpy(splits.x_train), torch.from_numpy(splits.y_train),
                            request.hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=request.learning_rate, fused=device.type == "cuda")
    xt, yt = (torch.from_numpy(a).to(device) for a in (splits.x_train, splits.y_train))
    xv, yv = (torch.from_numpy(a).to(device) for a in (splits.x_valid, splits.y_valid))
    target = (yt - model.y_mean) / model.y_std
    loss_fn = nn.MSELoss()
    gen = torch.Generator().manual_seed(request.seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(request.epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen).to(device)
        for i in range(0, len(order), request.batch_size):
            idx = order[i : i + request.batch_size]
            with autocast(device):
                pred = model.normalised(xt[idx])
            loss = loss_fn(pred.float(), target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():  # valid_mae, valid_rmse, valid_loss: one host sync an epoch
            err = (model(xv) - yv).double()
            mae, mse = torch.stack([err.abs().mean(), err.square().mean()]).tolist()
            _ = {"valid_mae": mae, "valid_rmse": mse**0.5,
                 "valid_loss": mse / float(model.y_std) ** 2}
    seconds = time.perf_counter() - began
    return Sample(request.epochs * len(xt) / seconds, seconds, {})


def tracked(request, tracking_uri: str, direct_uri: str, experiment: str) -> Sample:
    """The entrypoint's own training path, in this process, logging to `tracking_uri`."""
    import shutil

    import mlflow

    from ml_platform.compute.entrypoint import run_training

    run_id = mlflow.MlflowClient(direct_uri).create_run(experiment).info.run_id
    shutil.rmtree(request.checkpoint_dir, ignore_errors=True)  # train from scratch, not resume
    mlflow.set_tracking_uri(tracking_uri)
    began = time.perf_counter()
    summary = run_training(type(request)(**{**request.to_extras(), "mlflow_run_id": run_id}))
    total = time.perf_counter() - began
    seconds = summary["train_seconds"]  # the epoch loop, its checkpoints and logging calls
    flush = summary["tracking_flush_seconds"]
    samples = summary["train_samples_per_second"] * seconds
    return Sample(samples / seconds, seconds, {
        "blocked_ms_per_epoch": 1000 * summary["tracking_blocked_seconds"] / summary["epochs"],
        "flush_s": flush,
        "with_flush": samples / (seconds + flush),
        "fixed_s": total - seconds,
        "importance_s": summary["feature_importance_seconds"],
    })


def untracked(request, splits) -> Sample:
    """The entrypoint's training path without MLflow (`run_untracked`): checkpoints only."""
    import shutil

    from ml_platform.compute.entrypoint import run_untracked

    shutil.rmtree(request.checkpoint_dir, ignore_errors=True)
    summary = run_untracked(request)
    assert summary is not None
    return Sample(summary["train_samples_per_second"], summary["train_seconds"], {})


def entrypoint_untracked(request, workdir: Path, processes: int) -> Sample:
    """`python -m ml_platform.compute.entrypoint --request` (under torchrun when processes > 1)."""
    req = type(request)(**{**request.to_extras(), "processes": processes,
                           "checkpoint_dir": str(workdir / f"ckpt-ddp{processes}")})
    import shutil

    shutil.rmtree(req.checkpoint_dir, ignore_errors=True)
    (workdir / "request.json").write_text(json.dumps(req.to_extras()))
    out = workdir / f"summary-{processes}.json"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    from ml_platform.ml.distributed import threads_per_process

    env["OMP_NUM_THREADS"] = str(threads_per_process(processes))
    subprocess.run([*req.command(sys.executable), "--request", str(workdir / "request.json"),
                    "--output", str(out)], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    summary = json.loads(out.read_text())
    return Sample(summary["train_samples_per_second"], summary["train_seconds"],
                  {"test_mae": summary["test_mae"]})


# -- report ---------------------------------------------------------------------------------------

def median(samples: list[Sample], key: str | None = None) -> float:
    return statistics.median(s.samples_per_s if key is None else s.extra[key] for s in samples)


def render(setup: str, args: argparse.Namespace, n_train: int,
           results: dict[str, list[Sample]], wall: float) -> tuple[str, bool]:
    bare = median(results["bare"])
    spread = (max(x.samples_per_s for x in results["bare"])
              - min(x.samples_per_s for x in results["bare"])) / bare
    ok = True
    lines = [
        f"| case | samples/s, median | {args.repeats} runs | vs bare | budget | logging call, ms/epoch "
        "| vs bare incl. queue drain | queue drain, s | fixed cost per run, s |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for label, key, budget in (
        ("bare torch loop", "bare", None),
        ("entrypoint: checkpoints, no MLflow", "untracked", None),
        ("entrypoint: MLflow + checkpoints", "tracked", BUDGET_TRACKED),
        (f"entrypoint: MLflow {LATENCY_S * 1000:.0f} ms away", "latency", BUDGET_LATENCY),
    ):
        med = median(results[key])
        verdict = "-"
        if budget is not None:
            ok &= med / bare >= budget
            verdict = f">= {budget:.2f}x: {'pass' if med / bare >= budget else 'FAIL'}"
        runs = ", ".join(f"{s.samples_per_s:,.0f}" for s in results[key])
        tracked_cells = ["-"] * 4
        if key in ("tracked", "latency"):
            tracked_cells = [f"{median(results[key], 'blocked_ms_per_epoch'):.2f}",
                             f"{median(results[key], 'with_flush') / bare:.3f}x",
                             f"{median(results[key], 'flush_s'):.2f}",
                             f"{median(results[key], 'fixed_s'):.1f}"]
        lines.append(f"| {label} | {med:,.0f} | {runs} | {med / bare:.3f}x | {verdict} | "
                     + " | ".join(tracked_cells) + " |")
    one = median(results["ddp1"])
    lines += [
        "",
        f"| data parallel (`--request`, no tracking) | samples/s, median | {args.repeats} runs "
        "| vs 1 process | test MAE |",
        "|---|---:|---|---:|---:|",
    ]
    for label, key in (("1 process", "ddp1"), ("DDP, 2 processes (torchrun)", "ddp2")):
        med = median(results[key])
        runs = ", ".join(f"{s.samples_per_s:,.0f}" for s in results[key])
        lines.append(f"| {label} | {med:,.0f} | {runs} | {med / one:.3f}x | "
                     f"{median(results[key], 'test_mae'):.2f} |")
    lines += ["", "| after the loop (entrypoint with MLflow) | seconds, median |", "|---|---:|",
              f"| permutation feature importance ({IMPORTANCE_COLUMNS} raw columns x 3 "
              f"shuffles, validation rows) | {median(results['tracked'], 'importance_s'):.2f} |"]
    table = "\n".join(lines)
    context = "\n".join(run_context(__file__, setup))
    text = f"""## Training throughput

{context}
- wall time: {wall:.0f} s; the bare loop's {args.repeats} runs spread by {spread:.0%} of their
  median, so differences of a few percent between rows are within noise

Workload: the shipped `listing_price` model (MLP {args.hidden}, batch {args.batch_size}, Adam
lr 3e-3) on {args.days} generated days of {args.rows} bookings ({n_train:,} training rows),
{args.epochs} epochs a run. samples/s: training rows through forward, backward and step per
second of the epoch loop; all loops compute the same validation metrics once an epoch
(`valid_mae`, `valid_rmse`, `valid_loss`). After the loop the entrypoint also computes
permutation feature importance on the validation rows (reported below on its own: not part of
the loop's samples/s). The entrypoint's loop also writes
its atomic checkpoint every epoch (packed into one buffer, written by a background thread
under a new name, never over the previous file) and, with MLflow, logs
the epoch's metrics asynchronously (`MlflowClient.log_batch(..., synchronous=False)`).
"Logging call" is the time the loop spent in that call per epoch: a client that waited for the
server would spend >= {LATENCY_S * 1000:.0f} ms there in the latency case. After the last
epoch, `mlflow.flush_async_logging()` drains the queue once (the entrypoint sets
`MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS=2`: one request per 2 s instead of one per epoch, and a
flush that does not wait out MLflow's 1 s queue poll); like creating the run and logging the
loss curve, checkpoint and pt2 model ("fixed cost") it is paid once a run: listed, not
budgeted. The latency case sends every HTTP request through a
loopback proxy (a child process) that holds it {LATENCY_S * 1000:.0f} ms.

{table}

Data parallel: the same entrypoint with `processes: 2` under torchrun (gloo on CPU, NCCL on
GPUs) against one process; on CPU each rank gets its share of the CPUs (`threads_per_process`:
one thread each here, as for the single process). The global batch
stays {args.batch_size} (each rank takes half of it), so both take the same optimizer steps and
reach the same test MAE. Two ranks sharing the same CPUs cannot beat one process using all of
them: this row measures what the gradient all-reduce and the second Python process cost on
shared cores. The speed-up comes where each rank has its own GPU (`compute.gpu`) or node.
"""
    return text, ok




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="generated days of bookings")
    parser.add_argument("--rows", type=int, default=1000, help="bookings per day")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", default="64,64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", "--no-doc", dest="no_write", action="store_true",
                        help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--proxy", nargs=3, metavar=("LISTEN", "TARGET", "DELAY"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.proxy:
        serve_delay_proxy(int(args.proxy[0]), int(args.proxy[1]), float(args.proxy[2]))
        return
    from ml_platform.compute.entrypoint import load_splits
    from ml_platform.compute.request import TrainingRequest
    from ml_platform.ml.distributed import distributed_session
    from ml_platform.tracking.server import free_port, start_mlflow_server

    began = time.perf_counter()
    setup = training_setup()
    with tempfile.TemporaryDirectory(prefix="training_throughput-") as tmp:
        work = Path(tmp)
        server = start_mlflow_server(store=work / "mlflow")  # ~10 s to answer: start it first
        proxy_port = free_port()
        target_port = int(server.url.rsplit(":", 1)[1])
        proxy = subprocess.Popen([sys.executable, __file__, "--proxy", str(proxy_port),
                                  str(target_port), str(LATENCY_S)])
        try:
            make_training_set(work / "ts.parquet", args.days, args.rows)
            request = TrainingRequest(
                model="bench", task="regression", feature_builder="bookings", target="nightly_price",
                training_set_uri=str(work / "ts.parquet"), mlflow_run_id="",
                checkpoint_dir=str(work / "ckpt"), hidden=[int(h) for h in args.hidden.split(",")],
                epochs=args.epochs, batch_size=args.batch_size, learning_rate=3e-3, seed=7,
                pip_requirements=[f"torch=={installed_version('torch').split('+')[0]}",
                                  f"mlflow=={installed_version('mlflow')}"],
            )
            splits = load_splits(request)
            server.wait_ready(timeout=180)
            import mlflow

            experiment = mlflow.MlflowClient(server.url).create_experiment("training_throughput")
            proxied = f"http://127.0.0.1:{proxy_port}"
            results: dict[str, list[Sample]] = {
                k: [] for k in ("bare", "untracked", "tracked", "latency", "ddp1", "ddp2")}
            cases = {
                "bare": lambda: bare_loop(request, splits),
                "untracked": lambda: untracked(request, splits),
                "tracked": lambda: tracked(request, server.url, server.url, experiment),
                "latency": lambda: tracked(request, proxied, server.url, experiment),
                "ddp1": lambda: entrypoint_untracked(request, work, 1),
                "ddp2": lambda: entrypoint_untracked(request, work, 2),
            }
            with distributed_session():  # the entrypoint's thread sizing, for both loops
                bare_loop(request, splits)  # warm-up: first-call allocations, lazy imports
                tracked(request, server.url, server.url, experiment)
                for i in range(args.repeats):
                    for key, case in cases.items():
                        sample = case()
                        results[key].append(sample)
                        print(f"run {i + 1}/{args.repeats} {key:8s} {sample.samples_per_s:>10,.0f} "
                              f"samples/s  {sample.seconds:6.2f} s  {sample.extra}", flush=True)
        finally:
            proxy.terminate()
            proxy.wait()
            server.stop()
    section, ok = render(setup, args, len(splits.x_train), results, time.perf_counter() - began)
    publish(SECTION, section, write=not args.no_write)
    if not ok:  # reported, not fatal: `make bench` runs the other benchmarks too
        print("a budget was missed: see the table")


if __name__ == "__main__":
    main()
