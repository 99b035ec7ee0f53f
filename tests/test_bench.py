"""`loomrt bench` (loomrt.bench): a quick run on a tiny seeded GGUF, loomrt only."""
from __future__ import annotations

import json
import os

import pytest

import loomrt
from loomrt import cli

import models


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> str:
    """The seeded 2-layer llama (context 128) as an F32 GGUF."""
    return models.write_seeded_gguf(str(tmp_path_factory.mktemp("bench") / "tiny.gguf"), models.SEEDED_CONFIG)


def test_bench_quick_loomrt_only(tiny_gguf: str, tmp_path, capsys) -> None:
    out_json = str(tmp_path / "bench.json")
    rc = cli.main(["bench", tiny_gguf, "--quick", "--systems", "loomrt", "--threads", "1", "2", "--json", out_json])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "decode tok/s" in out and "peak RSS MiB" in out and "roofline" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("f32 ") and "loomrt" in line]
    assert [int(r[2]) for r in rows] == [1, 2]
    for r in rows:  # decode, prefill, ttft ms, load s, RSS MiB: positive numbers
        assert all(float(x) > 0 for x in r[3:8]), r
    assert "[bench]" in err and "[bench]" not in out  # progress on stderr only
    with open(out_json, encoding="utf-8") as f:
        res = json.load(f)
    assert res["formats"] == ["f32"] and res["systems"] == ["loomrt"]
    assert res["settings"]["prompt_tokens"] + res["settings"]["decode_tokens"] <= 128
    assert len(res["results"]) == 2
    for r in res["results"]:
        assert r["errors"] == [] and r["path"] == tiny_gguf
        m = r["median"]
        for k in ("decode_tok_s", "prefill_tok_s", "ttft_s", "load_s", "peak_rss_bytes", "roofline_fraction"):
            assert m[k] > 0, (k, m)
        assert m["peak_rss_bytes"] < 2**34
        assert r["bytes_per_token"] > 0
    assert all(b > 1e8 for b in res["bandwidth_bytes_per_s"].values())
    assert res["loomrt"]["version"] == loomrt.__version__


def test_bench_errors_are_clean(tmp_path, capsys) -> None:
    assert cli.main(["bench", str(tmp_path / "missing.gguf"), "--quick"]) == 1
    _, err = capsys.readouterr()
    assert err.startswith("loomrt: error:") and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--formats", "q5_9"])
    assert e.value.code == 2


def test_bench_says_when_a_peer_is_missing(tiny_gguf: str, monkeypatch, capsys) -> None:
    from loomrt import bench

    monkeypatch.setattr(bench, "missing_modules", lambda s: ["llama_cpp"] if s == "llama.cpp" else [])
    rc = cli.main(["bench", tiny_gguf, "--quick", "--systems", "llama.cpp", "--threads", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "skipping llama.cpp: llama_cpp not installed (pip install llama-cpp-python)" in err
    assert not [line for line in out.splitlines() if line.split()[1:2] == ["llama.cpp"]]  # no llama.cpp row
    assert any(line.startswith("f32") and "loomrt" in line for line in out.splitlines())  # loomrt always runs
