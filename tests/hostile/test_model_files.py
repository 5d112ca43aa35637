"""The hostile model-file corpus (tests/hostile/model_corpus.py) through the real CLI.

Every case is a file (or path) that must be refused before any library runs code from it:
the documented exit code, exactly one line on stderr naming the problem, no traceback, no
marker written by a payload, nothing written under ``--out``, and peak memory under
:data:`MEMORY_BOUND_MIB` above the process's baseline (the zip bombs expand to GiBs).

The cases run in one subprocess (:mod:`tests.hostile.run_cases`: one torch import for ~65
cases); each gets its own output folder and a per-case alarm, so a loader that hangs on a
FIFO or ``/dev/zero`` is reported, not waited for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.hostile.model_corpus import Case, benign_files, build_corpus

# The zip bombs declare 2 GiB and 256 MiB; refusing them must cost far less than that.
MEMORY_BOUND_MIB = 400
# Cases whose memory is measured: they run first, so the process's peak is theirs.
MEMORY_CASES = ("zip bomb (2 MB -> 2 GiB)", "deflated member lying about its size", "overlapping-members bomb",
                "200000 declared members", "sparse 20 GiB file")
SCAN_FLAGS = ["--only", "performance", "--samples", "8", "--budget", "quick", "--threads", "1",
              "--no-report", "--quiet"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Case], dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("hostile-models")
    cases = build_corpus(root / "corpus")
    cases.sort(key=lambda c: c.name not in MEMORY_CASES)
    runs = [{"name": c.name, "argv": ["scan", *c.args, "--out", str(root / "out" / f"{i:03d}"), *SCAN_FLAGS]}
            for i, c in enumerate(cases)]
    (root / "cases.json").write_text(json.dumps(runs))
    proc = subprocess.run([sys.executable, "-m", "tests.hostile.run_cases", str(root / "cases.json"),
                           str(root / "results.json")], cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return cases, json.loads((root / "results.json").read_text()), root


def test_the_corpus_is_large_and_covers_every_format(corpus: tuple[list[Case], dict[str, Any], Path]) -> None:
    cases, _, _ = corpus
    assert len(cases) >= 60 and len({c.name for c in cases}) == len(cases)
    names = " ".join(c.name for c in cases).lower()
    for kind in ("torchscript", ".pt2", "safetensors", "state_dict", "zoo", "pickle", "zip bomb", "fifo", "legacy"):
        assert kind in names, kind
    assert sum(c.marker is not None for c in cases) >= 20  # cases whose payload would leave a marker


def test_every_hostile_file_is_refused_with_one_line(corpus: tuple[list[Case], dict[str, Any], Path]) -> None:
    cases, results, root = corpus
    problems = []
    for i, case in enumerate(cases):
        got = results["cases"][case.name]
        lines = [line for line in got["stderr"].splitlines() if line.strip()]
        out = root / "out" / f"{i:03d}"
        written = sorted(p.name for p in out.rglob("*") if p.is_file()) if out.exists() else []
        if got["code"] != case.code:
            problems.append(f"{case.name}: exit {got['code']} (wanted {case.code}): {got['stderr'][-800:]}")
        elif len(lines) != 1 or "Traceback" in got["stderr"] + got["stdout"]:
            problems.append(f"{case.name}: stderr is not one line: {got['stderr'][-800:]}")
        elif case.word not in lines[0].lower():
            problems.append(f"{case.name}: message does not say {case.word!r}: {lines[0]}")
        if case.marker is not None and case.marker.exists():
            problems.append(f"{case.name}: CODE FROM THE FILE RAN (marker {case.marker.name} exists)")
        if written:
            problems.append(f"{case.name}: wrote {written} although refused")
    assert not problems, "\n".join(problems)


def test_bombs_and_huge_files_are_refused_in_bounded_memory(corpus: tuple[list[Case], dict[str, Any], Path]) -> None:
    cases, results, _ = corpus
    measured = [c.name for c in cases[: len(MEMORY_CASES)]]
    assert sorted(measured) == sorted(MEMORY_CASES)
    peak = results["cases"][measured[-1]]["peak_mib"]
    assert peak - results["baseline_mib"] < MEMORY_BOUND_MIB, (results["baseline_mib"], peak)


def test_benign_files_of_every_format_load(tmp_path: Path) -> None:
    """The positive controls: one benign file per accepted format loads and predicts."""
    import torch

    from auditkit.loading import load_model

    files = benign_files(tmp_path)
    assert {"zoo", "torchscript", "dynamic-pt2", "static-pt2", "state_dict", "safetensors"} <= set(files)
    for name, (path, kwargs) in files.items():
        model = load_model(path, device="cpu", **kwargs)
        x = torch.rand(3, *model.card.input_shape).numpy()
        assert model.logits(x).shape == (3, len(model.card.class_names)), name
