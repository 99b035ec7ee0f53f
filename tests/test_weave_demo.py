"""The weaving demonstration of docs/weaving.md (issue 18), end to end on a reduced setting:
tools/weave_demo.py fine-tunes the shipped SmolLM2 Q4_1 with `loomrt train --init` (1 step),
weaves base and fine-tune with the route rule and writes the trace."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import loomrt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(loomrt.__file__)))


@pytest.mark.slow
def test_weave_demo_runs_and_routes_on_the_code_fence(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "weave_demo.py"), "--quick", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 1 and os.path.isdir(summary["fine_tune"])
    lines = (out / "trace.jsonl").read_text().splitlines()
    head, rows = json.loads(lines[0]), [json.loads(l) for l in lines[1:]]
    assert head["models"] == ["smollm2-q4_1", "smollm2-code-ft"] and head["mode"] == "mix"
    assert len(rows) == summary["tokens"] > 0
    # the route rule: the code weights are in force exactly while a fenced block is open, following the
    # bytes of the prompt and of every token before this one
    text = head["prompt"]
    for r in rows:
        want = summary["route"]["code" if text.count("```") % 2 else "prose"]
        assert r["weights"] == pytest.approx(want, abs=1e-12), (r["step"], text[-40:])
        assert sum(r["shares"]) == pytest.approx(1.0, abs=1e-9)  # mix: the shares of a token sum to 1
        text += r["text"]
    assert summary["tokens_in_prose"] > 0 and summary["tokens_in_code"] > 0, summary["text"]
    page = (out / "trace.html").read_text()
    assert page.count("<span") >= len(rows) and "smollm2-code-ft" in page
    assert "share_code" in (out / "excerpt.txt").read_text()
