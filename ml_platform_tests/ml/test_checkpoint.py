"""Unit tests of `ml_platform.ml.checkpoint`: a packed state round-trips exactly (dtypes,
shapes, 0-dim and non-contiguous tensors, nested plain values), is a snapshot, loads with
`torch.load(weights_only=True)`; the writer keeps only the newest complete checkpoint, in
order, and mirrors it to S3 (moto's real S3 API on loopback, through the same pyarrow URIs the
`k8s` profile's lake gives), from where a fresh disk resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ml_platform.ml import checkpoint as checkpoints
from ml_platform.storage.s3 import pyarrow_uri
from ml_platform_tests.services import moto_s3


def _state() -> dict:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    model(torch.randn(8, 3)).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
        "history": [{"train_loss": 0.5, "valid_mae": 4.0}], "rng": torch.get_rng_state(),
        "odd": [torch.arange(6, dtype=torch.int64).reshape(2, 3).t(),  # not contiguous
                torch.tensor(2.5, dtype=torch.bfloat16), torch.tensor([True, False]),
                torch.empty(0, 5)],
    }


def _assert_same(got: object, want: object) -> None:
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor)
        assert got.dtype == want.dtype and got.shape == want.shape and got.device.type == "cpu"
        assert torch.equal(got, want.cpu())
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys()
        for key in want:
            _assert_same(got[key], want[key])
    elif isinstance(want, list | tuple):
        assert type(got) is type(want) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _assert_same(g, w)
    else:
        assert got == want


def test_pack_round_trips_every_tensor_and_value() -> None:
    state = _state()
    packed = checkpoints.pack(state)
    assert packed["tensors"].dtype == torch.uint8 and packed["tensors"].dim() == 1
    _assert_same(checkpoints.unpack(packed), state)


def test_pack_is_a_snapshot() -> None:
    weights = torch.zeros(4)
    packed = checkpoints.pack({"w": weights})
    weights += 1  # training goes on updating in place
    assert torch.equal(checkpoints.unpack(packed)["w"], torch.zeros(4))


def test_written_checkpoint_loads_without_unpickling_objects(tmp_path: Path) -> None:
    state = _state()
    path = checkpoints.write(tmp_path, 3, checkpoints.serialise(checkpoints.pack(state)))
    assert path == tmp_path / "epoch-000003.pt"
    raw = torch.load(path, weights_only=True)  # refuses anything but tensors and plain values
    assert set(raw) == {"state", "layout", "tensors"}
    _assert_same(checkpoints.read(path), state)


def _write(directory: Path, epoch: int) -> Path:
    return checkpoints.write(directory, epoch, checkpoints.serialise(checkpoints.pack({"epoch": epoch})))


def test_the_two_newest_complete_checkpoints_are_kept(tmp_path: Path) -> None:
    assert checkpoints.latest(tmp_path / "absent") is None
    assert checkpoints.read_newest(tmp_path / "absent") is None
    (tmp_path / ".epoch-000009.pt.tmp").write_bytes(b"torn")  # a write killed half-way
    assert checkpoints.latest(tmp_path) is None
    for epoch in (1, 2, 10):
        _write(tmp_path, epoch)
    assert checkpoints.latest(tmp_path) == tmp_path / "epoch-000010.pt"  # not 2 > 10 by name
    assert sorted(p.name for p in tmp_path.glob("epoch-*")) == ["epoch-000002.pt", "epoch-000010.pt"]
    assert checkpoints.read_newest(tmp_path) == {"epoch": 10}


def test_a_checkpoint_emptied_by_a_crash_falls_back_to_the_one_before(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(tmp_path, 1)
    _write(tmp_path, 2).write_bytes(b"")  # renamed, but its data never reached the disk
    assert checkpoints.read_newest(tmp_path) == {"epoch": 1}
    assert "epoch-000002.pt does not load" in caplog.text


def test_writer_keeps_the_last_submitted_epoch(tmp_path: Path) -> None:
    writer = checkpoints.CheckpointWriter(tmp_path / "ckpt")  # creates the directory
    weights = torch.zeros(2)
    for epoch in range(1, 6):
        weights += 1
        writer.submit(epoch, {"epoch": epoch, "w": weights})
    writer.close()
    path = checkpoints.latest(tmp_path / "ckpt")
    assert path is not None
    state = checkpoints.read(path)
    assert state["epoch"] == 5 and torch.equal(state["w"], torch.full((2,), 5.0))


def test_writer_reraises_a_failed_write(tmp_path: Path) -> None:
    writer = checkpoints.CheckpointWriter(tmp_path)
    writer.submit(1, {"epoch": 1, "not a tensor": lambda: None})  # torch.save cannot pickle it
    with pytest.raises(Exception, match="pickle"):
        writer.close()
    assert checkpoints.latest(tmp_path) is None


def test_mirror_on_s3_resumes_a_fresh_disk(tmp_path: Path) -> None:
    with moto_s3("ckpt") as endpoint:
        mirror = pyarrow_uri("ckpt", "lake/checkpoints/m/run1", endpoint, "us-east-1")
        assert checkpoints.latest(tmp_path / "fresh", mirror) is None  # nothing anywhere yet

        writer = checkpoints.CheckpointWriter(tmp_path / "pod-1", mirror)
        for epoch in range(1, 4):
            writer.submit(epoch, {"epoch": epoch, "w": torch.full((3,), float(epoch))})
        writer.close()  # waits for the last upload

        import boto3

        listed = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket="ckpt")
        objects = [o["Key"] for o in listed["Contents"] if not o["Key"].endswith("/")]  # not
        assert objects == ["lake/checkpoints/m/run1/epoch-000003.pt"]  # pyarrow's folder marker
        assert writer.uploaded == "epoch-000003.pt"

        # A retried pod starts on an empty disk: the mirror's checkpoint is fetched and read.
        state = checkpoints.read_newest(tmp_path / "pod-2", mirror)
        assert state is not None
        assert state["epoch"] == 3 and torch.equal(state["w"], torch.full((3,), 3.0))
        assert checkpoints.latest(tmp_path / "pod-2") == tmp_path / "pod-2" / "epoch-000003.pt"
        # A local checkpoint at least as new as the mirror's is used as it is.
        assert checkpoints.latest(tmp_path / "pod-1", mirror) == tmp_path / "pod-1" / "epoch-000003.pt"


def test_a_failed_upload_is_logged_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The mirror only speeds a retry up: training goes on, and the next epoch tries again."""
    with moto_s3("ckpt") as endpoint:
        mirror = pyarrow_uri("no-such-bucket", "x", endpoint, "us-east-1")
        writer = checkpoints.CheckpointWriter(tmp_path, mirror)
        writer.submit(1, {"epoch": 1})
        writer.close()
    assert writer.uploaded is None
    assert "epoch-000001.pt not uploaded to the mirror" in caplog.text
    assert checkpoints.latest(tmp_path) == tmp_path / "epoch-000001.pt"  # the local one is kept


def test_close_can_leave_the_error_to_the_training(tmp_path: Path) -> None:
    writer = checkpoints.CheckpointWriter(tmp_path)
    writer.submit(1, {"epoch": 1, "not a tensor": lambda: None})
    writer.close(raise_errors=False)  # the error already on its way up is the one reported
