"""The one Sampler: any cache object that binds to the model plugs in, statistics (memory included) come out
of every path, and the training command's default is the suite's recipe."""
from __future__ import annotations

import argparse
import json
import mmap
from pathlib import Path

import numpy as np
import pytest
import torch

from pyfdc.e2crf import E2CRFConfig
from pyfdc.sampling.sampler import Sampler
from pyfdc.sampling.stats import MemoryProbe
from tinymodels import T, one_thread, tiny_model  # noqa: F401 (autouse fixture)


class _LeakyCache:
    """A cache that runs the plain network but keeps 1 MiB per step alive (a memory leak to be seen)."""

    name = "leaky"

    def __init__(self) -> None:
        self.kept: list[mmap.mmap] = []

    def bind(self, model, *, steps, method, compile, progress):  # noqa: ANN001 - the Sampler's protocol
        self.model = model
        return self

    def batch(self, sample_ids, seed, recorder):  # noqa: ANN001
        cache = self

        class _Policy:
            cache_bytes = 123

            def __call__(self, z, t, i):  # noqa: ANN001
                # 1 MiB of fresh anonymous pages, touched: RSS grows whatever free heap earlier tests left
                # behind (a malloc'd tensor may reuse resident pages once glibc's mmap threshold has risen)
                page = mmap.mmap(-1, 1 << 20)
                page.write(b"\x01" * (1 << 20))
                cache.kept.append(page)
                return cache.model.net(z, t)
        return _Policy()

    def finish_batch(self, policy, recorder) -> None:  # noqa: ANN001
        recorder.dense(1)


def test_any_cache_plugs_in_and_memory_is_measured_on_the_cached_path() -> None:
    model = tiny_model()
    ref = Sampler(model).sample_tokens(1, steps=60, batch_size=1, progress=False)
    s = Sampler(model, cache=_LeakyCache())
    z = s.sample_tokens(1, steps=60, batch_size=1, progress=False)
    torch.testing.assert_close(z, ref, rtol=0, atol=0)  # the same network, so the same samples, bitwise
    assert s.stats.cache == "leaky" and s.stats.cache_bytes == 123
    # RSS sampled every 10 steps from step 10: 50 MiB held over steps 10..60 (allocator slack allowed)
    assert s.stats.peak_rss_growth_bytes > 20 * (1 << 20), s.stats.peak_rss_growth_bytes


def test_uncached_and_cached_runs_report_the_same_statistics() -> None:
    model = tiny_model()
    plain = Sampler(model, "dpm2m")
    plain.sample(3, steps=12, batch_size=2, progress=False)
    st = plain.stats
    assert (st.method, st.cache, st.num_samples, st.steps) == ("dpm2m", "none", 3, 12)
    assert st.recomputed_fraction == [1.0] * 12 and st.refresh_steps == list(range(12)) and st.cache_bytes == 0
    cached = Sampler(model, "dpm2m", cache=E2CRFConfig(0.4, K=1, num_probes=1, R=5))
    cached.sample(3, steps=12, batch_size=2, progress=False)
    sc = cached.stats
    assert sc.cache == "e2crf" and sc.cache_bytes > 0 and sc.mean_recomputed_fraction < 1
    assert json.loads(json.dumps(sc.to_dict())).keys() == json.loads(json.dumps(st.to_dict())).keys()


def test_memory_probe_samples_after_warm_up() -> None:
    probe = MemoryProbe(lambda z, t, i: z)
    for i in range(9):
        probe(torch.zeros(1), torch.zeros(1), i)
    assert probe.rss_warm is None and probe.growth == 0  # nothing sampled before step 10
    probe(torch.zeros(1), torch.zeros(1), 9)
    assert probe.rss_warm is not None and probe.growth >= 0


def test_cache_must_bind_and_bf16_is_uncached_only() -> None:
    with pytest.raises(TypeError, match="cache must be None or a cache config"):
        Sampler(tiny_model(), cache={"budget": 0.5})
    with pytest.raises(ValueError, match="precision='bf16' is for uncached sampling"):
        Sampler(tiny_model(), cache=E2CRFConfig(0.5), precision="bf16")


def _train_args(*flags: str, out: Path) -> argparse.Namespace:
    from pyfdc.cli.args import build_parser

    return build_parser().parse_args(["train", "--data", "x.npy", *flags, "--out", str(out)])


@pytest.mark.parametrize("flags, want", [
    ((), (3000, 15.0, 300, 0.999, 16, "last")),                       # the recipe: 15 min, EMA, 10% warmup, 16
    (("--max-minutes", "2"), (3000, 2.0, 300, 0.999, 16, "last")),    # only a budget: the recipe within it
    (("--epochs", "40"), (40, None, 4, 0.999, 16, "last")),           # only epochs: exactly that, no budget
    (("--epochs", "40", "--ema", "off", "--warmup-epochs", "0", "--batch-size", "64", "--keep", "best"),
     (40, None, 0, None, 64, "best")),
])
def test_train_default_is_the_suites_recipe(tmp_path: Path, flags: tuple[str, ...], want: tuple) -> None:
    from pyfdc.cli import _train_recipe
    from pyfdc.training.config import TrainConfig

    assert _train_recipe(_train_args(*flags, out=tmp_path / "o")) == want
    r = TrainConfig.recipe()  # the same recipe in Python (and in benchmarks/suite.py)
    assert (r.epochs, r.max_minutes, r.warmup_epochs, r.ema_decay, r.batch_size, r.keep) == \
        (3000, 15.0, 300, 0.999, 16, "last")


def test_train_with_only_a_budget_keeps_an_ema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pyfdc import cli

    t = np.linspace(0, 1, 32)
    np.save(tmp_path / "w.npy", np.sin(2 * np.pi * (2 * t + np.random.default_rng(0).random((40, 1)))))
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(tmp_path / "w.npy"), "--tiny", "--max-minutes", "0.03", "--out", str(out),
                     "--no-progress"]) == 0
    state = torch.load(out / "train_state.pt", weights_only=False)
    assert state["config"]["ema_decay"] == 0.999 and state["config"]["max_minutes"] == 0.03
    assert state["config"]["epochs"] == 3000 and state["run"]["planned_epochs"] < 3000  # fitted to the budget
