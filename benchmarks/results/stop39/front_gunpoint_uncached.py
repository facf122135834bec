import numpy as np, torch, warnings, json
torch.set_num_threads(1)
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.sampling.sampler import Sampler
from pyfdc.evaluation.quality import c2st_report
model = load_checkpoint("runs/s39/gunpoint/freq")
ref = np.load("runs/s39/hr/gunpoint/em1000_seed0.npy")
out = {}
for method, steps in (("em", 250),):
    with torch.inference_mode():
        x = Sampler(model, method).sample(256, steps=steps, batch_size=64, seed=2, progress=False).numpy()
    np.save(f"runs/s39/hr/gunpoint/{method}{steps}_seed2.npy", x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = [float(c2st_report(x, ref, seed=s)["headline"]) for s in (0, 1, 2)]
    out[f"{method}:{steps}"] = c
    print(method, steps, round(sum(c) / 3, 3), c, flush=True)
d = json.load(open("benchmarks/results/stop39/front_gunpoint_uncached.json")); d.update(out); json.dump(d, open("benchmarks/results/stop39/front_gunpoint_uncached.json", "w"), indent=1)
