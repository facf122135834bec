"""torchrun / torch.distributed: 2-process gloo jobs on CPU started from pytest (each with a timeout, so
a hang fails the test instead of blocking CI).

What is pinned down: a 2-process training job equals itself after a kill of one rank and a resume
(bit for bit: gloo sums two floats the same way every time); the wall-clock budget stops every rank
at the same epoch; sharded sampling gathers exactly the single-process samples (to the batch-blocking
tolerance) with E2-CRF stats reduced over ranks; errors on rank 0 reach every rank.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyfdc import cli, distributed
from pyfdc.training import trainer as training

WORKER = Path(__file__).with_name("ddp_kill_worker.py")
TIMEOUT_S = 180  # a 2-process tiny job takes ~5 s here; a hang must fail, not block


def _data(tmp: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 32)
    x = np.sin(2 * np.pi * t[None, :] * rng.uniform(1, 3, (80, 1)))[..., None] + 0.1 * rng.standard_normal((80, 32, 1))
    path = tmp / "series.npy"
    np.save(path, x.astype(np.float32))
    return path


def _torchrun(args: list[str], env: dict[str, str] | None = None, script: Path | None = None,
              nproc: int = 2) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += [str(script)] if script is not None else ["-m", "pyfdc"]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    try:
        return subprocess.run(cmd + args, capture_output=True, text=True, timeout=TIMEOUT_S, env=full_env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun {' '.join(args[:1])} hung for {TIMEOUT_S}s: {exc.stderr!s:.2000}")


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--tiny", "--epochs", "4", "--batch-size", "16", "--ema", "0.9",
            "--out", str(out), "--no-progress", *extra]


def _state(out: Path) -> dict:
    return torch.load(out / training.STATE_FILE, weights_only=False)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A straight 4-epoch 2-process training run: (data file, checkpoint folder)."""
    tmp = tmp_path_factory.mktemp("ddp")
    data = _data(tmp)
    res = _torchrun(_train_args(data, tmp / "straight"))
    assert res.returncode == 0, res.stderr[-3000:]
    return data, tmp / "straight"


def test_shard_blocks_cover_every_id_once() -> None:
    for n in (2, 5, 64, 65):
        for size in (1, 2, 3, 8):
            blocks = [distributed.shard(n, distributed.World(rank=r, size=size)) for r in range(size)]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
            sizes = [b - a for a, b in blocks]
            assert max(sizes) - min(sizes) <= 1


def test_ddp_train_writes_one_checkpoint_with_every_ranks_state(ddp_run: tuple[Path, Path]) -> None:
    _, out = ddp_run
    state = _state(out)
    assert state["world_size"] == 2 and len(state["noise_rng_ranks"]) == 2
    assert not torch.equal(state["noise_rng_ranks"][0], state["noise_rng_ranks"][1])  # ranks draw different noise
    history = json.loads((out / training.HISTORY_FILE).read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert len(list(out.glob("model-*.safetensors"))) == 1 and (out / "config.json").is_file()


@pytest.mark.parametrize("rank", ["0", "1"])
def test_ddp_resume_after_killing_a_rank_equals_straight_run(ddp_run: tuple[Path, Path], tmp_path: Path,
                                                             rank: str) -> None:
    data, straight = ddp_run
    out = tmp_path / "killed"
    res = _torchrun(_train_args(data, out), env={"PYFDC_TEST_KILL_RANK": rank, "PYFDC_TEST_KILL_EPOCH": "3"},
                    script=WORKER)
    assert res.returncode != 0, res.stderr[-3000:]  # torchrun stops the survivor instead of leaving it waiting
    assert (out / training.STATE_FILE).is_file(), res.stderr[-3000:]
    assert _state(out)["run"]["epoch"] == 2, res.stderr[-3000:]  # epoch 3 never finished: never saved
    res = _torchrun(_train_args(data, out, "--resume"))
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _state(straight), _state(out)
    assert b["run"]["epoch"] == 4
    assert _same(a["net"], b["net"]) and _same(a["ema"], b["ema"])
    assert [h["val_loss"] for h in a["run"]["history"]] == [h["val_loss"] for h in b["run"]["history"]]


def test_resume_refuses_another_process_count(ddp_run: tuple[Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    data, straight = ddp_run
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(straight, out)
    code = cli.main(_train_args(data, out, "--resume"))
    assert code == 2
    assert "processes: checkpoint 2 vs now 1" in capsys.readouterr().err


def test_ddp_budget_stops_every_rank_at_the_same_epoch(ddp_run: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = ddp_run
    out = tmp_path / "budget"
    args = _train_args(data, out, "--max-minutes", "0.04")
    args[args.index("--epochs") + 1] = "100000"
    res = _torchrun(args)  # a rank that stopped alone would leave the other one waiting: a timeout here
    assert res.returncode == 0, res.stderr[-3000:]
    state = _state(out)
    assert 1 <= state["run"]["epoch"] < 100000 and state["run"]["planned_epochs"] < 100000


@pytest.mark.parametrize("sampler", ["em", "e2crf", "e2crf-default"])
def test_sharded_sampling_equals_single_process(ddp_run: tuple[Path, Path], tmp_path: Path, sampler: str) -> None:
    _, ckpt = ddp_run
    args = ["sample", "--checkpoint", str(ckpt), "--sampler", sampler.split("-")[0], "--num-samples", "7",
            "--steps", "30", "--batch-size", "3", "--seed", "5", "--no-progress"]
    if sampler == "e2crf":  # a fixed budget; "e2crf-default" takes the model's calibration (rank 0 makes it)
        args += ["--e2crf-budget", "0.5"]
    torch.set_num_threads(1)
    assert cli.main(args + ["--out", str(tmp_path / "one")]) == 0
    res = _torchrun(args + ["--out", str(tmp_path / "two")])
    assert res.returncode == 0, res.stderr[-3000:]
    one, two = (np.load(tmp_path / d / cli.SAMPLES_FILE) for d in ("one", "two"))
    assert two.shape == one.shape == (7, 32, 1)
    # noise is per sample id, so only float32 matmul blocking differs (batches 3,3,1 vs 3,1 + 3): ~1e-7
    # per step, amplified by the reverse SDE over 30 steps; 1e-4 is far below the sample spread (~1)
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-4)
    assert np.abs(two - one).max() < 1e-2 * np.abs(one).max()
    info = json.loads((tmp_path / "two" / cli.SAMPLE_INFO_FILE).read_text())
    assert info["world_size"] == 2
    assert info["rank_sample_ids"] == [{"rank": 0, "start": 0, "stop": 4}, {"rank": 1, "start": 4, "stop": 7}]
    if sampler == "e2crf-default":  # one calibration, the same choice on every rank and in one process
        i1 = json.loads((tmp_path / "one" / cli.SAMPLE_INFO_FILE).read_text())
        assert info["e2crf_config"] == i1["e2crf_config"] and (ckpt / "calibrations" / "em-30.json").is_file()
    if sampler.startswith("e2crf"):
        s1, s2 = (json.loads((tmp_path / d / cli.STATS_FILE).read_text()) for d in ("one", "two"))
        assert s2["num_samples"] == 7  # reduced over ranks, not rank 0's 4
        np.testing.assert_allclose(s2["recomputed_fraction"], s1["recomputed_fraction"], atol=1e-9)
        np.testing.assert_allclose(s2["token_hit_rate"], s1["token_hit_rate"], atol=1e-9)
        assert s2["refresh_steps"] == s1["refresh_steps"]


def test_an_error_on_rank_0_reaches_every_rank(ddp_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, ckpt = ddp_run
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    res = _torchrun(["sample", "--checkpoint", str(ckpt), "--num-samples", "4", "--steps", "3",
                     "--out", str(busy), "--no-progress"])
    assert res.returncode != 0
    assert "is not empty" in res.stderr and (busy / "mine.txt").read_text() == "keep"


def test_single_process_commands_refuse_torchrun(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = cli.main(["evaluate", "--checkpoint", str(tmp_path), "--samples", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "only train and sample run under torchrun" in capsys.readouterr().err


def test_ranks_meet_before_the_group_is_torn_down(ddp_run: tuple[Path, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished command waits for every rank before leaving the group (a rank tearing gloo down while
    another still writes could abort it); a failed one leaves at once (its peers fail the same way)."""
    _, ckpt = ddp_run
    calls: list[str] = []
    monkeypatch.setattr(distributed, "barrier", lambda world: calls.append("barrier"))
    monkeypatch.setattr(distributed, "leave", lambda world: calls.append("leave"))
    args = ["sample", "--checkpoint", str(ckpt), "--num-samples", "2", "--steps", "3", "--no-progress"]
    assert cli.main(args + ["--out", str(tmp_path / "a")]) == 0 and calls == ["barrier", "leave"]
    calls.clear()
    (tmp_path / "file").write_text("not a folder")
    assert cli.main(args + ["--out", str(tmp_path / "file")]) == 2
    assert calls == ["leave"]


def test_exit_now_flushes_and_ends_with_the_code() -> None:
    """A torchrun rank ends through exit_now (no interpreter finalization, where gloo's worker threads could
    abort the process): what it printed must still arrive, and the status must be the command's."""
    code = ("import sys; from pyfdc import distributed; print('to stdout', end=''); "
            "print('to stderr', end='', file=sys.stderr); distributed.exit_now(3)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as a rank's pipes are
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120,
                         env=env)
    assert (res.returncode, res.stdout, res.stderr) == (3, "to stdout", "to stderr")
