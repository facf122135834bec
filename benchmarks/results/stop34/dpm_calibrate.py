# Every default calibration candidate for one solver and step counts: python benchmarks/results/stop34/dpm_calibrate.py runs/suite16/gunpoint/freq dpm2m 50 100  (also: em 500 250)
import sys, torch
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.e2crf.calibrate import calibrate
torch.set_num_threads(1)
model = load_checkpoint(sys.argv[1])
for steps in map(int, sys.argv[3:]):
    cal = calibrate(model, steps, sys.argv[2], all_candidates=True, progress=False)
    print(steps, "chosen", None if cal.config is None else (cal.config.budget, cal.config.tail))
    for r in cal.rows: print("  ", r["candidate"], f"shift {r['shift']:.3f} ({max(r['shifts'], key=r['shifts'].get)}) speedup {r['speedup']:.2f} passed {r['passed']}")
