"""The batch table: validation rows (runs/abl/D.val.md) beside held-out rows (scores.json)."""
import json, re
from pathlib import Path
ORDER = ["ecg", "italypower", "gunpoint", "acsf1", "osuleaf", "basicmotions", "japanesevowels", "sines"]
print("| dataset | batch | epochs | validation: roughness gen / val | validation: C2ST vs fit hgb / linear | "
      "held-out: C2ST (± sd) | held-out: floor | held-out: roughness gen / data |")
print("|---|---|---|---|---|---|---|---|")
for d in ORDER:
    rows = {}
    for line in Path(f"runs/abl/{d}.val.md").read_text().splitlines():
        c = [x.strip() for x in line.strip("|").split("|")]
        if len(c) == 6 and c[0] == d:
            rows[c[1][1:]] = c
    for b in ("64", "16"):
        c = rows[b]
        gen, val, _ = c[2].split(" / ")
        f = json.loads(Path(f"runs/abl/{d}_b{b}/{d}/scores.json").read_text())["freq"]
        g, fl = f["generated"]["c2st"], f["floor_train"]["c2st"]
        hr, gr = f["shape_heldout"]["roughness"], f["generated"]["shape"]["roughness"]
        cls = g["headline_classifier"]
        bold = "**" if b == "16" else ""
        print(f"| {d} | {b} | {c[5]} | {gen} / {val} ({100 * (float(gen) / float(val) - 1):+.0f}%) | {bold}{c[4]}{bold} | "
              f"{g['headline']:.3f} ± {g[cls]['sd']:.3f} | {fl['headline']:.3f} | {gr:.4f} / {hr:.4f} ({100 * (gr / hr - 1):+.0f}%) |")
