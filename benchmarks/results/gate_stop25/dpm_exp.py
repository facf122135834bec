import torch
torch.set_num_threads(1)
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.e2crf.calibrate import calibrate
model = load_checkpoint("/work/main/pyfdc/pretrained/ecg_small_freq")
for steps in (25, 50):
    cands = [{"budget": b, "tail": t} for t in (0.05, 0.2) for b in (0.2, 0.35, 0.5, 0.7)]
    cal = calibrate(model, steps, "dpm2m", candidates=cands, all_candidates=True, progress=False)
    for r in cal.rows:
        print(steps, r["candidate"], f"shift {r['shift']:.3f} ({max(r['shifts'], key=r['shifts'].get)}), speedup {r['speedup']:.2f}", flush=True)
