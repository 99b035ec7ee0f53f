"""loomrt on Ray (issue 16): batch generation and data-parallel training with the bits of one
process. One local Ray cluster (2 CPUs, no dashboard) is started for the module and shut down
at its end; workers import this checkout's loomrt (loomrt.ray.init puts it on their path).

- 1,000 prompts (a seeded tiny model, short outputs) through the local runner and through Ray
  with 1 and 2 actors give byte-identical output files: same rows, ids, hashes, input order;
- an actor killed mid-job is restarted by Ray, its batch retried, and the output is identical
  (the same run also resumes a job a local run left half done);
- training with 1, 2 and 3 Ray workers gives the SHA-256 of single-process training's weights
  (Trainer.train_step), for untied and tied Llama and GPT-2; checkpoints move both ways;
- bad input: malformed JSON lines (reported with their line number, the job goes on), bad
  keys and values, a model path missing on the workers (error before anything runs)."""
from __future__ import annotations

import hashlib
import json
import os
import signal

import numpy as np
import pytest

import ray  # tests/install-deps.sh installs ray[data]: missing is a failure, not a skip

import loomrt  # noqa: E402
import loomrt.ray as lray  # noqa: E402
import models  # noqa: E402
from loomrt import batchjob, errors  # noqa: E402
from loomrt.train import model_config  # noqa: E402
from loomrt.trainer import Trainer  # noqa: E402

N_ROWS = 1000
BAD_LINES = {17: "{\"prompt\": \"unterminated", 404: "[1, 2, 3]", 777: "{\"prompt\": \"x\", \"tempreature\": 1}"}


@pytest.fixture(scope="module")
def cluster():
    lray.init("local", num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A seeded GGUF (with tokenizer) and 1,000 input rows: text prompts and token ids, greedy
    and sampled with per-row seeds, stop strings, a few receipts, three bad lines, a row whose
    prompt does not fit the context, a chat row."""
    d = tmp_path_factory.mktemp("rayjob")
    model = models.write_seeded_gguf(str(d / "micro.gguf"))
    rng = np.random.default_rng(16)
    lines = []
    for i in range(1, N_ROWS + 1):
        if i in BAD_LINES:
            lines.append(BAD_LINES[i])
            continue
        row = {"id": f"q{i}", "max_tokens": int(rng.integers(1, 6))}
        if i % 5 == 0:
            row["prompt_ids"] = [int(t) for t in rng.integers(3, 48, int(rng.integers(1, 8)))]
        else:
            row["prompt"] = f"row {i}: " + "".join(chr(int(c)) for c in rng.integers(35, 41, 6))
        if i % 3:
            row.update(temperature=float(rng.choice([0.7, 1.0, 1.3])), top_k=int(rng.integers(0, 8)),
                       seed=int(rng.integers(0, 1 << 40)))
        if i % 50 == 1:
            row["stop"] = ["$"]
        if i % 100 == 2:
            row["receipt"] = True
        if i == 600:
            row = {"id": "too-long", "prompt_ids": [3] * 5000}
        if i == 601:
            row = {"id": "chat", "messages": [{"role": "user", "content": "hi"}]}
        lines.append(json.dumps(row))
    lines.insert(300, "")  # blank lines are skipped, line numbers still count them
    inp = d / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = batchjob.JobSettings(model=model, max_tokens=4, threads=1)
    local = d / "local.jsonl"
    rep = batchjob.run_job(str(inp), str(local), settings)
    return {"dir": d, "model": model, "input": str(inp), "settings": settings, "local": local.read_bytes(),
            "report": rep}


def _rows(data: bytes):
    return [json.loads(x) for x in data.decode().splitlines()]


def test_local_job_rows_are_checked_in_order_and_equal_model_generate(job):
    rep, rows = job["report"], _rows(job["local"])
    assert rep.rows == N_ROWS and rep.written == N_ROWS and rep.skipped == 0
    assert [r["line"] for r in rows] == sorted(r["line"] for r in rows)  # input order
    assert len({r["line"] for r in rows}) == N_ROWS
    failed = {r["line"]: r for r in rows if r["status"] == "failed"}
    # the blank line shifted every later line number by one
    bad = {(n if n <= 300 else n + 1) for n in BAD_LINES}
    assert set(failed) == bad | {601}, sorted(failed)
    assert "malformed JSON" in failed[17]["error"]["message"] and failed[17]["error"]["message"].startswith("line 17")
    assert "must be a JSON object" in failed[405]["error"]["message"]
    assert "tempreature" in failed[778]["error"]["message"]
    assert failed[601]["id"] == "too-long" and failed[601]["error"]["type"] == "ContextFullError"
    # every ok row is what Model.generate gives for that row alone
    m = loomrt.load(job["model"], threads=1)
    src = {n: json.loads(t) for n, t in batchjob.read_lines(job["input"]) if n not in failed}
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == N_ROWS - 4
    for r in ok[::37] + [r for r in ok if r["id"] == "chat"]:
        spec = src[r["line"]]
        prompt = spec.get("prompt", spec.get("prompt_ids", spec.get("messages")))
        kw = {k: spec[k] for k in ("temperature", "top_k", "seed", "stop") if k in spec}
        g = m.generate(prompt, spec.get("max_tokens", 4), chat="messages" in spec, **kw)
        assert (r["id"], r["token_ids"], r["text"], r["finish_reason"]) == (spec["id"], g.token_ids, g.text,
                                                                            g.finish_reason)
        assert r["output_sha256"] == batchjob.output_sha256(g.token_ids, g.text, g.finish_reason)
    receipts = [r for r in ok if "receipt" in r]
    assert len(receipts) == 10
    assert loomrt.verify_receipt(receipts[3]["receipt"], m).ok
    assert len({r["output_sha256"] for r in ok}) > N_ROWS // 2  # the rows really differ


@pytest.mark.parametrize("actors", [1, 2])
def test_ray_rows_equal_local_rows(cluster, job, tmp_path, actors):
    out = tmp_path / "ray.jsonl"
    rep = batchjob.run_job(job["input"], str(out), job["settings"], lray.ray_executor(actors=actors, batch_size=25))
    assert rep.written == N_ROWS and rep.failed == 4
    assert out.read_bytes() == job["local"]


def test_killed_actor_is_retried_and_a_half_done_job_resumes(cluster, job, tmp_path):
    out = tmp_path / "resumed.jsonl"

    def interrupted(settings, rows):  # a local run stopped after 300 rows (Ctrl-C, a lost machine)
        for i, r in enumerate(batchjob.local_executor(settings, rows)):
            if i == 300:
                raise KeyboardInterrupt
            yield r

    with pytest.raises(KeyboardInterrupt):
        batchjob.run_job(job["input"], str(out), job["settings"], interrupted)
    half = out.read_bytes()
    assert 0 < len(half) < len(job["local"]) and job["local"].startswith(half)
    with open(out, "ab") as f:  # a row cut in the middle by the interruption
        f.write(b'{"id":"q302","line":302,"sta')
    marker = tmp_path / "killed-once"
    ex = lray.ray_executor(actors=2, batch_size=20, _fault=(str(marker), 650))
    rep = batchjob.run_job(job["input"], str(out), job["settings"], ex)
    assert marker.exists()  # an actor process really died at line 650
    assert rep.skipped == half.count(b"\n") and rep.written == N_ROWS - rep.skipped
    assert out.read_bytes() == job["local"]
    # nothing left to do: a third run writes nothing
    rep = batchjob.run_job(job["input"], str(out), job["settings"])
    assert rep.written == 0 and out.read_bytes() == job["local"]


def test_cli_batch_on_ray_and_locally(cluster, job, tmp_path, capsys):
    from loomrt.cli import main

    out = tmp_path / "cli.jsonl"
    rc = main(["batch", job["input"], "-o", str(out), "-m", job["model"], "-n", "4", "--ray", "local", "--actors",
               "2", "--batch-size", "50"])
    err = capsys.readouterr().err
    assert rc == 1  # rows failed (and were written as failed)
    assert out.read_bytes() == job["local"]
    assert "line 17: malformed JSON" in err and "1000/1000 rows" in err and "4 failed" in err
    # the local CLI resumes the finished job: nothing to do
    rc = main(["batch", job["input"], "-o", str(out), "-m", job["model"], "-n", "4", "-t", "1"])
    err = capsys.readouterr().err
    assert "1000 already done, 0 written" in err
    # another job into the same output is refused, the file untouched
    rc = main(["batch", job["input"], "-o", str(out), "-m", job["model"], "-n", "5", "-q"])
    assert rc == 1 and "another job" in capsys.readouterr().err
    assert out.read_bytes() == job["local"]


def test_bad_input(cluster, job, tmp_path):
    s = job["settings"]
    # a model missing on the workers: a clear error before anything runs, no output written
    with pytest.raises(errors.NotFoundError, match="not usable on 1 of 1 Ray node.*does not exist.*nothing was run"):
        lray.check_model_on_nodes(str(tmp_path / "nowhere.gguf"))
    out = tmp_path / "o.jsonl"
    with pytest.raises(errors.NotFoundError, match="model not found"):
        batchjob.run_job(job["input"], str(out), batchjob.JobSettings(model=str(tmp_path / "nowhere.gguf")),
                         lray.ray_executor())
    assert not out.exists()
    with pytest.raises(errors.LoomrtIOError, match="cannot read the input"):
        batchjob.run_job(str(tmp_path / "missing.jsonl"), str(out), s)
    with pytest.raises(errors.InvalidArgumentError, match="actors"):
        lray.ray_executor(actors=0)
    cases = {
        "{\"prompt\": \"#$\", \"prompt_ids\": [1]}": "exactly one of",
        "{\"max_tokens\": 3}": "exactly one of",
        "{\"prompt_ids\": [1, \"2\"]}": "prompt_ids must be",
        "{\"prompt\": 5}": "prompt must be a string",
        "{\"prompt\": \"#$\", \"temperature\": \"hot\"}": "temperature must be a number",
        "{\"prompt\": \"#$\", \"stop\": \"x\"}": "stop must be a list",
        "{\"prompt\": \"#$\", \"max_tokens\": -1}": "max_tokens must be",
        "{\"prompt\": \"#$\", \"id\": [1]}": "id must be",
        "{\"messages\": [{\"role\": \"user\"}]}": "messages must be",
        "{\"prompt\": \"#$\", \"weave\": {\"models\": []}}": "weave must be",
        "{\"prompt\": \"#$\", \"temperature\": -1}": "temperature must be >= 0",  # the sampler refuses it
        "{\"prompt\": \"#$\", \"top_p\": 7}": "top_p must be in (0, 1]",
        "{\"prompt\": \"#$\", \"top_k\": 2.5}": "top_k must be an integer",
        "{\"prompt\": \"#$\", \"seed\": -5}": "seed must be in",
    }
    inp = tmp_path / "bad.jsonl"
    inp.write_bytes(("\n".join(cases) + "\n").encode() + b"\xff\xfe\n{\"prompt\": \"#$\"}\n")
    for ex in (batchjob.local_executor, lray.ray_executor(actors=1)):
        o = tmp_path / f"bad-{id(ex)}.jsonl"
        rep = batchjob.run_job(str(inp), str(o), s, ex)
        rows = _rows(o.read_bytes())
        assert rep.failed == len(cases) + 1 and [r["status"] for r in rows][-1] == "ok"
        for (text, want), r in zip(cases.items(), rows):
            assert r["status"] == "failed" and want in r["error"]["message"], (text, r)
        assert "not UTF-8" in rows[len(cases)]["error"]["message"]


def test_weave_rows(tmp_path, job):
    other = models.write_seeded_gguf(str(tmp_path / "other.gguf"), seed=99)
    inp = tmp_path / "w.jsonl"
    inp.write_text(json.dumps({"prompt": "row #$", "max_tokens": 5, "temperature": 0.9, "seed": 3,
                               "weave": {"models": [other], "weights": [0.5, 0.5], "mode": "mix"}}) + "\n")
    out = tmp_path / "w.out.jsonl"
    batchjob.run_job(str(inp), str(out), job["settings"])
    (row,) = _rows(out.read_bytes())
    a, b = loomrt.load(job["model"], threads=1), loomrt.load(other, threads=1)
    g = loomrt.weave([a, b], weights=[0.5, 0.5], mode="mix").generate("row #$", 5, temperature=0.9, seed=3)
    assert row["status"] == "ok" and row["token_ids"] == g.token_ids and row["text"] == g.text


# ---- data-parallel training ----------------------------------------------------------------------

CONFIGS = {
    "llama": model_config("llama", vocab=67, dim=40, layers=2, heads=4, kv_heads=2, context=32, ffn=52, tied=False),
    "llama-tied": model_config("llama", vocab=61, dim=24, layers=2, heads=2, kv_heads=1, context=32, ffn=36,
                               tied=True),
    "gpt2": model_config("gpt2", vocab=59, dim=36, layers=2, heads=3, context=32, ffn=44),
}
SETTINGS = dict(lr=1e-2, warmup=0, clip=1.0, weight_decay=0.1)


def _batches(vocab, steps=3, b=6, t=16, seed=5):
    """Global batches whose rows repeat tokens (the embedding rows sum inside a sequence)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        half = rng.integers(0, vocab, size=(b, t // 2 + 1), dtype=np.int32)
        out.append(np.concatenate([half[:, :t // 2], half], axis=1))
    return out


def _single(config, batches, accum=2):
    tr = Trainer(config, seed=3, threads=1)
    tr.set(**SETTINGS)
    for b in batches:
        tr.train_step(b, accum=accum)
    return tr


def _sha(tr) -> str:
    return hashlib.sha256(tr.weights_bytes()).hexdigest()


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_data_parallel_training_equals_one_process(cluster, arch):
    cfg = CONFIGS[arch]
    batches = _batches(cfg["vocab_size"])
    ref = _single(cfg, batches)
    assert _sha(_single(cfg, batches, accum=3)) == _sha(ref)  # any accumulation: the same bits
    want = [_sha(ref), ref.loss]
    for workers in ((1, 2, 3) if arch == "llama-tied" else (2,)):
        dp = lray.DataParallelTrainer(cfg, seed=3, workers=workers, num_cpus_per_worker=0.5, **SETTINGS)
        try:
            assert len(set(dp.worker_pids())) == workers and os.getpid() not in dp.worker_pids()
            for b in batches:
                dp.step(b)
            assert [_sha(dp.lead), dp.lead.loss] == want, (arch, workers)
        finally:
            dp.close()
    # group = 2 (half the traffic): the bits of any other run with group 2, here in-process
    loc = lray.DataParallelTrainer(cfg, seed=3, workers=0, group=2, **SETTINGS)
    dp = lray.DataParallelTrainer(cfg, seed=3, workers=2, group=2, num_cpus_per_worker=0.5, **SETTINGS)
    try:
        for b in batches:
            loc.step(b)
            dp.step(b)
        assert _sha(dp.lead) == _sha(loc.lead)
    finally:
        dp.close()


def test_the_fold_order_matters():
    """The control that makes the equality above mean something: adding the same per-sequence
    parts in another order gives other bits."""
    cfg = CONFIGS["llama"]
    (b,) = _batches(cfg["vocab_size"], steps=1)
    w = lray._GradWorker({"config": cfg, "path": None, "seed": 3, "threads": 1})
    parts = w.grads(w.t.flat_weights(), b, 1)
    sums = []
    for order in (list(range(len(parts))), list(range(len(parts)))[::-1]):
        lead = Trainer(cfg, seed=3, threads=1)
        for i in order:
            g, loss, n, rows = parts[i]
            lead.grad_add(g, loss, n)
            lead.lookup_add(b[i:i + 1], rows)
        sums.append(b"".join(lead.read(name, "grad").tobytes() for name in lead.names))
    ref = Trainer(cfg, seed=3, threads=1)
    ref.accumulate(b)
    assert sums[0] == b"".join(ref.read(name, "grad").tobytes() for name in ref.names) and sums[1] != sums[0]


def test_checkpoints_move_between_cluster_and_laptop(cluster, tmp_path):
    cfg = CONFIGS["llama-tied"]
    batches = _batches(cfg["vocab_size"], steps=4, seed=9)
    want = _sha(_single(cfg, batches))
    # cluster (2 workers, one killed between steps: Ray restarts it) -> laptop
    dp = lray.DataParallelTrainer(cfg, seed=3, workers=2, num_cpus_per_worker=0.5, **SETTINGS)
    try:
        dp.step(batches[0])
        os.kill(dp.worker_pids()[1], signal.SIGKILL)
        dp.step(batches[1])
        dp.save(str(tmp_path / "from-cluster"))
    finally:
        dp.close()
    laptop = Trainer(cfg, seed=77, threads=2)
    laptop.set(**SETTINGS)
    lray.load_checkpoint(laptop, str(tmp_path / "from-cluster"), cfg)
    for b in batches[2:]:
        laptop.train_step(b)
    assert _sha(laptop) == want
    # laptop -> cluster (3 workers)
    lap = _single(cfg, batches[:2])
    lray.save_checkpoint(lap, str(tmp_path / "from-laptop"), cfg)
    dp = lray.DataParallelTrainer(cfg, seed=11, workers=3, num_cpus_per_worker=0.5, **SETTINGS)
    try:
        dp.load(str(tmp_path / "from-laptop"))
        assert dp.lead.step == 2
        for b in batches[2:]:
            dp.step(b)
        assert _sha(dp.lead) == want
    finally:
        dp.close()
    with pytest.raises(errors.InvalidArgumentError, match="not a multiple of group"):
        lray.DataParallelTrainer(cfg, workers=0, group=4).step(batches[0])
    with pytest.raises(errors.InvalidArgumentError, match="another configuration"):
        Trainer(CONFIGS["llama"]).grad_add(np.zeros(5, np.float32), 1.0, 1)
