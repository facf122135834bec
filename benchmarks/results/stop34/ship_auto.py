import time, torch
torch.set_num_threads(1)
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.evaluation.auto import AUTO_CANDIDATES, AUTO_SHADOW, REFERENCE, auto_file, choose_sampler
folder = "/work/main/pyfdc/pretrained/ecg_small_freq"
model = load_checkpoint(folder)
t0 = time.perf_counter()
choice = choose_sampler(model, AUTO_SHADOW, AUTO_CANDIDATES, progress=False, say=lambda l: print(l, flush=True),
                        reference=REFERENCE)
choice.save(auto_file(folder, AUTO_SHADOW))
print(f"{time.perf_counter() - t0:.0f} s:", choice.describe(), flush=True)
