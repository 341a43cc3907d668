"""The README's NasExperiment snippet runs as written (real facenas functions, synthetic data it makes)."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def nas_snippet() -> str:
    """The first ``python`` block of the README's "Python API (NNI `NasExperiment`)" paragraph."""
    text = README.read_text(encoding="utf-8")
    start = text.index("**2. Python API (NNI `NasExperiment`).**")
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, "README.md: the NasExperiment paragraph has no ```python block"
    return match.group(1)


def test_snippet_names_only_what_it_defines_or_imports_and_fits_its_budget():
    """No placeholder functions (the old `my_verification_accuracy`); the evolution's population fits the budget."""
    code = nas_snippet()
    tree = ast.parse(code)
    defined = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    defined |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    defined |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) for a in n.args.args}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    import builtins

    assert used - defined - set(dir(builtins)) == set()
    budget = int(re.search(r"max_trial_number = (\d+)", code).group(1))
    population = int(re.search(r"RegularizedEvolution\(population_size=(\d+)", code).group(1))
    assert population < budget, f"population {population} >= budget {budget}: the evolution would be random search"


@pytest.mark.slow
@pytest.mark.nni
def test_readme_nas_experiment_snippet_runs_as_written(tmp_path):
    """Copied out of README.md and run in a fresh interpreter: 12 trainings, the best sample printed (~2 min)."""
    script = tmp_path / "snippet.py"
    script.write_text(nas_snippet(), encoding="utf-8")
    env = {**os.environ, "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "home").mkdir()
    (tmp_path / "tmp").mkdir()
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("[{")]  # NNI logs to stdout too
    assert printed, proc.stdout[-3000:]
    best = ast.literal_eval(printed[-1])
    assert isinstance(best, list) and "stem/width_ratio" in best[0]
    work = next((tmp_path / "tmp").glob("facenas-nas-*"))
    trained = [d for d in work.iterdir() if d.is_dir() and d.name not in ("data", "nni-experiments")]
    assert len(trained) == 12 and all(any(d.rglob("*.pt")) for d in trained)  # every trial trained a network
