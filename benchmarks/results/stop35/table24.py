"""Issue 24: the recipe at 8 and 24 minutes per dataset, held-out scores from each run's scores.json and the
validation rows from long.sh's tables (run from the repository root after benchmarks/results/stop35/long.sh)."""
import json
from pathlib import Path

NAMES = ["ecg", "italypower", "gunpoint", "acsf1", "osuleaf", "basicmotions", "japanesevowels", "sines"]


def val_rows(name):
    p = Path(f"runs/long24/{name}.val.md")
    if not p.is_file():
        return {}
    rows = {}
    for line in p.read_text().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[1]] = cells
    return rows


print("| dataset | budget | epochs | validation: C2ST vs fit hgb / linear | held-out: C2ST (± sd) | floor | floor + 0.08 met | "
      "roughness gen / held-out |")
print("|---|---|---|---|---|---|---|---|")
for name in NAMES:
    val = val_rows(name)
    for label, run, key in (("8 min", f"runs/abl/{name}_b16/{name}", "b16_8min"),
                            ("24 min", f"runs/long24/{name}/{name}", "b16_24min")):
        p = Path(run) / "scores.json"
        if not p.is_file():
            continue
        f = json.loads(p.read_text())["freq"]
        g, fl = f["generated"]["c2st"], f["floor_train"]["c2st"]
        head = "hgb" if g["hgb"]["mean"] >= g["linear"]["mean"] else "linear"
        r, rh = f["generated"]["shape"]["roughness"], f["shape_heldout"]["roughness"]
        v = val.get(key)
        vtxt = v[4] if v else "–"
        ep = v[5] if v else "–"
        ok = "yes" if g["headline"] <= fl["headline"] + 0.08 else f"no (+{g['headline'] - fl['headline']:.3f})"
        print(f"| {name} | {label} | {ep} | {vtxt} | {g['headline']:.3f} ± {g[head]['sd']:.3f} | {fl['headline']:.3f} | {ok} | "
              f"{r:.4f} / {rh:.4f} ({r / rh - 1:+.0%}) |")
