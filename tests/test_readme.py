"""Every command in the README runs as written: each ```bash line (except the installs and the test command,
which CI itself runs from the README's ci:test block) and each ```python block, in a fresh folder."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)


def _blocks(kind: str) -> list[str]:
    return [body for k, body in _BLOCK.findall(README.read_text()) if k == kind]


def _commands() -> list[str]:
    """Shell lines of every bash block, installs and the test run left out (CI does those, from the README)."""
    out = []
    for body in _blocks("bash"):
        for line in body.splitlines():
            line = line.split("  #")[0].strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split("&&")]
            parts = [p for p in parts if not p.startswith("pip install") and p != "pytest"]
            if parts:
                out.append(" && ".join(parts))
    return out


def test_readme_is_short_and_has_its_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 150, "the README is a five-minute read: move detail to docs/"
    assert "<!-- ci:test -->" in text and _commands() and _blocks("python")
    for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):  # relative links point at files that exist
        assert (README.parent / link).exists(), f"README links to a missing {link}"


def test_readme_bash_commands_run_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    script = "\n".join(_commands())
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900, env=env)
    assert res.returncode == 0, f"{script}\n---\n{res.stderr[-3000:]}"
    metrics = json.loads((tmp_path / "runs/waves_eval/metrics.json").read_text())  # the own-data quickstart
    assert metrics["num_heldout"] == 12 and metrics["num_samples"] == 16


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_runs_as_written(tmp_path: Path, index: int) -> None:
    res = subprocess.run([sys.executable, "-c", _blocks("python")[index]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
