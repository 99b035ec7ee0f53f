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
    # the conditions the run saw: bandwidth at start and end per thread count, machine load
    c = res["conditions"]
    assert set(c["bandwidth_start_end"]) == {"1", "2"}
    for t, v in c["bandwidth_start_end"].items():
        assert v["start"] > 1e8 and v["end"] > 1e8
        assert len(c["bandwidth_all"][t]) == res["settings"]["repeats"] + 1  # before each repeat + at the end
        assert res["bandwidth_bytes_per_s"][t] == max(c["bandwidth_all"][t][:-1])
    m = c["machine"]
    assert m["seconds"] > 0 and len(m["loadavg_start"]) == 3
    for k in ("busy_share", "steal_share", "other_work_share"):
        assert 0.0 <= m[k] <= 1.0, (k, m)
    assert m["other_work_share"] <= m["busy_share"]
    assert c["cpu_model"]
    head = out.split("format system")[0]
    assert "conditions: CPU " in head and "read bandwidth GB/s at start -> end" in head and "load average" in head
    assert res["loomrt"]["version"] == loomrt.__version__


def test_conditions_see_other_work() -> None:
    """The other-work share is able to rise: a busy child process started between the two
    snapshots is counted as this benchmark's own work (the children's CPU time), a thread
    spinning in another process is not."""
    import subprocess
    import sys
    import time

    from loomrt import bench

    a = bench.machine_snapshot()
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"])
    time.sleep(1.6)  # the spinner is not our child until we wait for it: its time is other work
    b = bench.machine_snapshot()
    spin.wait()
    c = bench.conditions_between(a, b)
    if c["busy_share"] is None:
        pytest.skip("no /proc/stat on this OS")
    ncpu = os.cpu_count() or 1
    assert c["other_work_share"] >= 0.5 / ncpu, c  # ~1 of ncpu CPUs spun for most of the window


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


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("kind", ["membw", "compute"])
def test_hogs_start_work_and_stop(kind: str) -> None:
    """A hog runs while its context is open, is gone after it, and reports the work it did."""
    import time

    from loomrt import bench

    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc on this OS")
    with bench.Hogs(kind, 2, mib=8) as h:
        pids = h.pids()
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        time.sleep(0.3)
    assert not any(_alive(p) for p in pids)
    rec = h.record()
    unit = "bytes_copied_per_s" if kind == "membw" else "loop_turns_per_s"
    assert rec["kind"] == kind and rec["procs"] == 2 and len(rec[unit]) == 2
    assert all(r is not None and r > 0 for r in rec[unit]), rec
    with bench.Hogs("none", 3) as h:
        assert h.pids() == []
    with pytest.raises(ValueError):
        bench.Hogs("disk", 1)


def test_bench_contention_records_and_stops_its_load(tiny_gguf: str, tmp_path, monkeypatch, capsys) -> None:
    """--contention measures under no load, a bandwidth hog and a compute hog: each result says its
    condition and the hogs beside it, the table has a load column, and no hog outlives the run."""
    from loomrt import bench

    started: list = []
    real = bench.Hogs

    class Spy(real):  # type: ignore[misc,valid-type]
        def __enter__(self):
            out = super().__enter__()
            started.append((self.kind, self.pids()))
            return out

    monkeypatch.setattr(bench, "Hogs", Spy)
    out_json = str(tmp_path / "bench.json")
    rc = cli.main(["bench", tiny_gguf, "--quick", "--systems", "loomrt", "--threads", "1", "--contention",
                   "--json", out_json])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert [k for k, _ in started] == ["none", "membw", "compute"]
    ncpu = os.cpu_count() or 1
    for kind, pids in started:
        assert len(pids) == (0 if kind == "none" else max(1, ncpu - 1))
        assert not any(_alive(p) for p in pids)
    with open(out_json, encoding="utf-8") as f:
        res = json.load(f)
    assert res["contention"]["conditions"] == ["none", "membw", "compute"]
    by = {r["condition"]: r for r in res["results"]}
    assert set(by) == {"none", "membw", "compute"}
    assert "load" not in by["none"]["runs"][0]
    assert by["membw"]["runs"][0]["load"]["kind"] == "membw"
    assert by["membw"]["runs"][0]["load"]["bytes_copied_per_s"][0] > 0
    assert by["compute"]["runs"][0]["load"]["loop_turns_per_s"][0] > 0
    rows = [line.split() for line in out.splitlines() if line.startswith("f32 ") and "loomrt" in line]
    assert [r[3] for r in rows] == ["none", "membw", "compute"]
    assert all(float(r[4]) > 0 for r in rows)
    assert "load: none = no load started by this run" in out


def test_bench_no_mmap_is_recorded(tiny_gguf: str, tmp_path, capsys) -> None:
    out_json = str(tmp_path / "bench.json")
    rc = cli.main(["bench", tiny_gguf, "--quick", "--systems", "loomrt", "--threads", "1", "--no-mmap", "--json", out_json])
    out, err = capsys.readouterr()
    assert rc == 0, err
    with open(out_json, encoding="utf-8") as f:
        res = json.load(f)
    assert res["loomrt_mmap"] is False and res["results"][0]["median"]["decode_tok_s"] > 0
    assert "loomrt read its weights into memory (--no-mmap" in out
    m = res["results"][0]["median"]  # CPU time over the decode: tokens per CPU second, and CPUs busy per wall second
    assert m["decode_tok_per_cpu_s"] > 0 and m["decode_cpu_s_per_wall_s"] > 0


def test_bench_pool_stats_table_and_file(tiny_gguf: str, tmp_path, capsys) -> None:
    """--pool-stats-file: the bench (not the library) reads the pool counters through the API over
    each loomrt decode, reports them under the table and appends one JSON line per measurement."""
    out_json, out_pool = str(tmp_path / "bench.json"), tmp_path / "pool.jsonl"
    rc = cli.main(["bench", tiny_gguf, "--quick", "--systems", "loomrt", "--threads", "1", "2",
                   "--pool-stats-file", str(out_pool), "--json", out_json])
    out, err = capsys.readouterr()
    assert rc == 0, err
    with open(out_json, encoding="utf-8") as f:
        res = json.load(f)
    assert res["pool_stats"] is True
    lines = [json.loads(x) for x in out_pool.read_text().splitlines()]
    assert sorted(d["threads"] for d in lines) == [1, 2]
    for d in lines:
        assert d["system"] == "loomrt" and d["format"] == "f32" and d["on"] is True
        assert d["tokens"] == res["settings"]["decode_tokens"] - 1
        assert d["jobs"] >= d["tokens"] * 5  # several dispatches per token, counted over the decode only
        assert d["caller_tasks"] + sum(w["tasks"] for w in d["workers"]) >= d["jobs"]
        assert len(d["workers"]) == d["threads"] - 1
    two = [line for line in out.splitlines() if line.strip().startswith("f32   2T")]
    assert len(two) == 1 and "jobs/token, workers joined" in two[0], out
    assert "loomrt thread pool over the decode" in out


def test_bench_alternate_threads_reports_scaling(tiny_gguf: str, tmp_path, capsys) -> None:
    """--alternate-threads: the thread counts take turns within each repeat (the progress lines
    alternate 1, 2, 1, 2), and the table ends with each system's speed at 2 threads / 1 thread."""
    out_json = str(tmp_path / "bench.json")
    rc = cli.main(["bench", tiny_gguf, "--quick", "--systems", "loomrt", "--threads", "1", "2", "--repeats", "2",
                   "--alternate-threads", "--json", out_json])
    out, err = capsys.readouterr()
    assert rc == 0, err
    order = [int(line.split("threads=")[1].split()[0]) for line in err.splitlines()
             if "[bench] threads=" in line and " decode " in line]
    assert order == [1, 2, 1, 2], err
    with open(out_json, encoding="utf-8") as f:
        res = json.load(f)
    assert res["alternate_threads"] is True
    med = {r["threads"]: r["median"]["decode_tok_s"] for r in res["results"]}
    line = [x for x in out.splitlines() if x.strip().startswith("f32") and "loomrt 2T" in x]
    assert len(line) == 1 and f"loomrt 2T {med[2] / med[1]:.2f}" in line[0], out
    assert "thread counts alternated within each repeat" in out
