import sys, time, torch
torch.set_num_threads(1)
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.e2crf.calibrate import calibrate, calibration_file, describe
folder = "/work/main/pyfdc/pretrained/ecg_small_freq"
model = load_checkpoint(folder)
for steps in (1000, 100):
    t0 = time.perf_counter()
    cal = calibrate(model, steps, progress=False)
    cal.save(calibration_file(folder, steps))
    print(steps, f"{time.perf_counter() - t0:.0f} s", describe(cal),
          [(r["candidate"], round(r["shift"], 3), round(r["speedup"], 2), r["passed"]) for r in cal.rows], flush=True)
