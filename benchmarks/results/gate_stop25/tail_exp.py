"""Does an uncached tail (the last share of steps recomputing every token) let low budgets pass the gate?"""
import sys, json, numpy as np, torch
torch.set_num_threads(1)
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.e2crf import E2CRFConfig
import pyfdc.e2crf.policy as pol
from pyfdc.e2crf.shadow import statistic_shift
from pyfdc.e2crf.calibrate import CALIBRATION_SEED
from pyfdc.sampling.sampler import Sampler
import time
STEPS = 1000
TAIL = {"start": STEPS}
orig = pol.E2CRFPolicy.__call__
def patched(self, z, t, i):
    if i >= TAIL["start"]:
        self.steps_seen = 0  # forces the periodic branch
    return orig(self, z, t, i)
pol.E2CRFPolicy.__call__ = patched
model = load_checkpoint(sys.argv[1])
n = 32
with torch.inference_mode():
    t0 = time.perf_counter()
    ref = Sampler(model, "em").sample(n, steps=STEPS, batch_size=64, seed=CALIBRATION_SEED, progress=False).numpy()
    tr = time.perf_counter() - t0
    for f in (0.13, 0.2):
        for tail in (0.01, 0.02, 0.05):
            TAIL["start"] = int(round(STEPS * (1 - tail)))
            t0 = time.perf_counter()
            x = Sampler(model, "em", cache=E2CRFConfig(f)).sample(n, steps=STEPS, batch_size=64, seed=CALIBRATION_SEED, progress=False).numpy()
            dt = time.perf_counter() - t0
            sh = statistic_shift(x, ref)
            print(f"f {f} tail {tail}: shift {max(sh.values()):.3f} ({max(sh, key=sh.get)}), speedup {tr/dt:.2f}", flush=True)
