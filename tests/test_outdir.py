"""Output folders: one run at a time, sets committed whole, a kill at any rename loses or mixes nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyfdc.outdir import FolderLock, OutputFolderError, OutputSet

CRASH_POINTS = {"exchange": ["staged", "exchanged"], "two-renames": ["staged", "old-moved", "new-moved"]}


def _pyfdc(cwd: Path, *argv: str, crash: str | None = None, exchange: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFDC_CRASH")}
    env.pop("PYFDC_NO_EXCHANGE", None)
    if crash is not None:
        env["PYFDC_CRASH_AT"] = crash
    if not exchange:
        env["PYFDC_NO_EXCHANGE"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "pyfdc", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("outdir")
    t = np.linspace(0, 1, 16)
    np.save(root / "waves.npy", np.sin(2 * np.pi * (3 * t + np.random.default_rng(0).random((30, 1)))))
    res = _pyfdc(root, "train", "--data", "waves.npy", "--tiny", "--epochs", "1", "--out", "ckpt", "--no-progress")
    assert res.returncode == 0, res.stderr
    return root / "ckpt"


def _sample(cwd: Path, ckpt: Path, out: Path, seed: int, *extra: str, **kw) -> subprocess.CompletedProcess:
    return _pyfdc(cwd, "sample", "--checkpoint", str(ckpt), "--num-samples", "4", "--steps", "5", "--seed", str(seed),
                  "--out", str(out), "--no-progress", *extra, **kw)


def _state(out: Path) -> tuple[int, np.ndarray, bool] | None:
    """(seed recorded, samples, has E2-CRF stats) of a committed set, or None if the folder is absent."""
    if not out.exists():
        return None
    info = json.loads((out / "sample_info.json").read_text())
    return info["seed"], np.load(out / "samples.npy"), (out / "e2crf_stats.json").exists()


@pytest.fixture(scope="module")
def refs(tiny_ckpt: Path) -> dict[int, tuple[int, np.ndarray, bool]]:
    """The two sets a kill test may find: EM with seed 0 (no stats) and E2-CRF with seed 1 (stats)."""
    out = {}
    for seed, sampler in ((0, "em"), (1, "e2crf")):
        folder = tiny_ckpt.parent / f"ref{seed}"
        assert _sample(tiny_ckpt.parent, tiny_ckpt, folder, seed, "--sampler", sampler).returncode == 0
        out[seed] = _state(folder)
    return out


@pytest.mark.parametrize("mode, point", [(m, p) for m, pts in CRASH_POINTS.items() for p in pts])
def test_sample_killed_at_each_rename_keeps_one_whole_set(tiny_ckpt: Path, refs: dict, tmp_path: Path, mode: str,
                                                          point: str) -> None:
    exchange = mode == "exchange"
    out = tmp_path / "s"
    assert _sample(tmp_path, tiny_ckpt, out, 0).returncode == 0
    killed = _sample(tmp_path, tiny_ckpt, out, 1, "--sampler", "e2crf", "--overwrite", crash=point, exchange=exchange)
    assert killed.returncode == -9, killed.stderr
    state = _state(out)
    if state is None:  # killed between the two renames: the old set waits beside it and comes back
        assert point == "old-moved" and list(tmp_path.glob(".s.old-*"))
    else:
        seed, x, stats = state
        assert seed in (0, 1) and stats == refs[seed][2]      # info and stats of one run
        np.testing.assert_array_equal(x, refs[seed][1])       # samples of that same run
        assert seed == (1 if point in ("exchanged", "new-moved") else 0)
    again = _sample(tmp_path, tiny_ckpt, out, 1, "--sampler", "e2crf", "--overwrite", exchange=exchange)
    assert again.returncode == 0, again.stderr              # leftovers are no obstacle
    seed, x, stats = _state(out)
    assert seed == 1 and stats and np.array_equal(x, refs[1][1])
    assert not list(tmp_path.glob(".s.stage-*")) and not list(tmp_path.glob(".s.old-*"))


def test_a_held_folder_is_refused_naming_the_holder(tiny_ckpt: Path, tmp_path: Path) -> None:
    lock = FolderLock(tmp_path / "s", "the other run").acquire()
    try:
        res = _sample(tmp_path, tiny_ckpt, tmp_path / "s", 0)
    finally:
        lock.release()
    assert res.returncode == 2 and "in use by another run" in res.stderr and "the other run" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "s" / "samples.npy").exists()
    assert _sample(tmp_path, tiny_ckpt, tmp_path / "s", 0).returncode == 0  # released: the folder is free again


def test_two_runs_started_together_never_mix(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "pyfdc", "sample", "--checkpoint", str(tiny_ckpt), "--num-samples",
                               "4", "--steps", "5", "--seed", str(seed), "--out", str(out), "--no-progress"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (0, 1)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results                       # one run wins, the other is told why
    loser = next(err for code, err in results if code == 2)
    assert "in use by another run" in loser or "not empty" in loser
    winner_seed = [seed for seed, (code, _) in zip((0, 1), results) if code == 0][0]
    assert _sample(tmp_path, tiny_ckpt, tmp_path / "ref", winner_seed).returncode == 0
    seed, x, _ = _state(out)
    assert seed == winner_seed and np.array_equal(x, _state(tmp_path / "ref")[1])


def test_output_set_refuses_foreign_files_and_keeps_them(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="holds files this command does not write"):
        OutputSet(out, True, ("samples.npy",)).open()
    assert (out / "notes.txt").read_text() == "mine" and not list(tmp_path.glob(".o.stage-*"))
    with pytest.raises(OutputFolderError, match="not empty"):
        OutputSet(out, False, ("samples.npy",)).open()


@pytest.mark.parametrize("point", ["weights-written", "config-committed"])
def test_train_overwrite_killed_in_save_stays_loadable(tiny_ckpt: Path, tmp_path: Path, point: str) -> None:
    from pyfdc.core.checkpoint import load_checkpoint

    data = tiny_ckpt.parent / "waves.npy"
    out = tmp_path / "m"
    args = ("train", "--data", str(data), "--tiny", "--epochs", "2", "--out", str(out), "--no-progress")
    assert _pyfdc(tmp_path, *args).returncode == 0
    killed = _pyfdc(tmp_path, *args, "--overwrite", "--seed", "3", crash=point)
    assert killed.returncode == -9, killed.stderr
    load_checkpoint(out)                                   # the old or the new model, whole
    again = _pyfdc(tmp_path, *args, "--overwrite", "--seed", "3")
    assert again.returncode == 0, again.stderr
    assert len(list(out.glob("model-*.safetensors"))) == 1 and not list(out.glob(".*.tmp"))


def test_train_overwrite_refuses_foreign_folders(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "foreign"
    out.mkdir()
    for name in ("model.safetensors", "model-00001-of-00002.safetensors", "config.json", "notes.txt"):
        (out / name).write_text("another project's")
    data = tiny_ckpt.parent / "waves.npy"
    res = _pyfdc(tmp_path, "train", "--data", str(data), "--tiny", "--epochs", "1", "--out", str(out), "--overwrite",
                 "--no-progress")
    assert res.returncode == 2 and "does not write" in res.stderr, res.stderr
    assert all((out / n).read_text() == "another project's" for n in ("model.safetensors", "config.json"))
    samples = tmp_path / "samples"
    assert _sample(tmp_path, tiny_ckpt, samples, 0).returncode == 0
    res = _pyfdc(tmp_path, "train", "--data", str(data), "--tiny", "--epochs", "1", "--out", str(samples),
                 "--overwrite", "--no-progress")
    assert res.returncode == 2 and "samples.npy" in res.stderr
