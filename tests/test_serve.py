"""`loomrt serve` driven by the official `openai` client (and raw HTTP for malformed input):
every answer under concurrent load equals the same request sent alone and Model.generate /
`loomrt generate` with the same settings (token ids, text and receipt); bad requests get the
right status and an OpenAI-shaped error; a client that goes away frees its sequence; SIGTERM
drains the requests in flight."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

import loomrt  # noqa: E402
import models  # noqa: E402
from loomrt.server import ServeConfig, create_app  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = dict(models.SEEDED_CONFIG, max_position_embeddings=1024)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class _Server:
    """uvicorn running the app in a thread of this process."""

    def __init__(self, served, cfg: ServeConfig):
        import uvicorn

        self.port = _free_port()
        cfg.port = self.port
        self.app = create_app(served, cfg)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        t0 = time.time()
        while not self.server.started:
            assert time.time() - t0 < 30, "server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def metric(self, name: str, **labels) -> float:
        text = httpx.get(self.url + "/metrics", headers=getattr(self, "auth", {})).text
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith(name + "{" + want + "}") or (not labels and line.startswith(name + " ")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return (models.write_seeded_gguf(str(root / "tiny.gguf"), CONFIG, seed=1),
            models.write_seeded_gguf(str(root / "other.gguf"), CONFIG, seed=2))


SLOW = dict(CONFIG, max_position_embeddings=4096, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=4)


@pytest.fixture(scope="module")
def slow_path(tmp_path_factory):
    """A larger seeded model (a few ms per token; greedy from "x" meets no eos in 3000 tokens):
    long generations for the disconnect, queue and drain tests."""
    return models.write_seeded_gguf(str(tmp_path_factory.mktemp("serve-slow") / "slow.gguf"), SLOW, seed=1)


@pytest.fixture(scope="module")
def server(tiny_paths, slow_path):
    served = {"tiny": loomrt.load(tiny_paths[0], threads=1), "other": loomrt.load(tiny_paths[1], threads=1),
              "slow": loomrt.load(slow_path, threads=1)}
    srv = _Server(served, ServeConfig(max_sessions=8, max_tokens_limit=4000, max_request_bytes=64 * 1024,
                                      prefill_chunk=48))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def refs(tiny_paths):
    """Separate Model objects for the reference generations."""
    return {"tiny": loomrt.load(tiny_paths[0], threads=2), "other": loomrt.load(tiny_paths[1], threads=2)}


def _client(srv, cls=None, key: str = "none"):
    cls = cls or openai.OpenAI
    return cls(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=120)


def _strip(receipt):
    r = dict(receipt)
    r.pop("made_on")  # the machine and thread count of whoever made it
    return r


# ---- batch invariance -----------------------------------------------------------------------------

PROMPTS = ["Hello there", "Once upon a time", "#$%&()", "a", "The quick brown fox jumps over the lazy dog. " * 3,
           "x y z"]


def _specs(rng: np.random.Generator, count: int):
    out = []
    for i in range(count):
        spec = {"model": "tiny" if i % 5 else "other", "chat": bool(rng.random() < 0.4),
                "stream": bool(rng.random() < 0.5), "max_tokens": int(rng.integers(1, 40)),
                "temperature": float(rng.choice([0.0, 0.5, 0.9, 1.3])), "top_p": float(rng.choice([1.0, 0.9, 0.5])),
                "seed": int(rng.integers(0, 1 << 40)), "n": int(rng.choice([1, 1, 1, 2]))}
        if rng.random() < 0.3:
            spec["stop"] = [chr(int(rng.integers(35, 100)))]
        if rng.random() < 0.3:
            spec["logprobs"] = int(rng.choice([0, 1, 4]))
        p = PROMPTS[int(rng.integers(len(PROMPTS)))]
        spec["prompt"] = [{"role": "user", "content": p}] if spec["chat"] else p
        out.append(spec)
    return out


def _kwargs(spec):
    kw = dict(model=spec["model"], max_tokens=spec["max_tokens"], temperature=spec["temperature"], top_p=spec["top_p"],
              seed=spec["seed"], n=spec["n"], stream=spec["stream"])
    if "stop" in spec:
        kw["stop"] = spec["stop"]
    if "logprobs" in spec:
        if spec["chat"]:
            kw["logprobs"], kw["top_logprobs"] = True, spec["logprobs"]
        else:
            kw["logprobs"] = spec["logprobs"]
    if spec["chat"]:
        kw["messages"] = spec["prompt"]
    else:
        kw["prompt"] = spec["prompt"]
    return kw


def _logprob_rows(chat, lp):
    """A choice's (or chunk's) logprobs object as rows (token, logprob, top alternatives, ...)."""
    if lp is None:
        return None
    if chat:
        return [(e.token, e.logprob, tuple(e.bytes), tuple((t.token, t.logprob, tuple(t.bytes)) for t in e.top_logprobs))
                for e in lp.content]
    return [(t, v, tuple(sorted(top.items())), o) for t, v, top, o in
            zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, lp.text_offset)]


def _collect(spec, resp):
    """[(text, loomrt extension, finish reason, logprob rows)] per choice from a response or a
    stream (a stream's logprobs are the concatenation of its chunks')."""
    n = spec["n"]
    texts, exts, finish, lps = [""] * n, [None] * n, [None] * n, [None] * n
    if spec["stream"]:
        for chunk in resp:
            for c in chunk.choices:
                piece = c.delta.content if spec["chat"] else c.text
                texts[c.index] += piece or ""
                rows = _logprob_rows(spec["chat"], c.logprobs)
                if rows is not None:
                    lps[c.index] = (lps[c.index] or []) + rows
                if c.finish_reason is not None:
                    exts[c.index] = c.model_extra["loomrt"]
                    finish[c.index] = c.finish_reason
    else:
        for c in resp.choices:
            texts[c.index] = c.message.content if spec["chat"] else c.text
            exts[c.index] = c.model_extra["loomrt"]
            finish[c.index] = c.finish_reason
            lps[c.index] = _logprob_rows(spec["chat"], c.logprobs)
    return [(texts[i], exts[i], finish[i], lps[i]) for i in range(n)]


async def _acall(client, spec):
    kw = _kwargs(spec)
    if spec["chat"]:
        resp = await client.chat.completions.create(**kw)
    else:
        resp = await client.completions.create(**kw)
    if spec["stream"]:
        chunks = [c async for c in resp]
        return _collect(spec, chunks)
    return _collect(spec, resp)


def _call(client, spec):
    kw = _kwargs(spec)
    resp = client.chat.completions.create(**kw) if spec["chat"] else client.completions.create(**kw)
    return _collect(spec, resp)


def _cli_generate(path, spec, k, prompt_ids, out_path):
    """`loomrt generate` (the CLI, in this process) with the spec's settings; its receipt.
    Chat prompts go in as the rendered prompt's ids (the CLI's generate takes raw text)."""
    from loomrt import cli

    args = ["generate", path]
    args += [",".join(map(str, prompt_ids)), "--ids"] if spec["chat"] else [spec["prompt"]]
    args += ["-n", str(spec["max_tokens"]), "--temperature", repr(spec["temperature"]), "--top-p",
             repr(spec["top_p"]), "--seed", str(spec["seed"] + k), "--receipt", str(out_path), "-q", "-t", "1"]
    for st in spec.get("stop", []):
        args.append("--stop=" + st)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(args) == 0
    return json.loads(out_path.read_text())


def test_concurrent_requests_equal_alone_and_generate(server, refs, tiny_paths, tmp_path):
    """Issue 13's invariance check at its size: 64 concurrent requests (completions and chat,
    streaming and not, temperatures, top_p, seeds, stop strings, n = 2, log-probabilities);
    every choice equals the same request sent alone to the idle server, Model.generate and
    `loomrt generate` (token ids and receipt)."""
    specs = _specs(np.random.default_rng(2024), 64)
    assert sum("logprobs" in s for s in specs) >= 10 and sum(s["stream"] for s in specs) >= 20

    async def all_at_once():
        client = _client(server, openai.AsyncOpenAI)
        return await asyncio.gather(*[_acall(client, s) for s in specs])

    steps_before = server.metric("loomrt_steps_total", model="tiny")
    together = asyncio.run(all_at_once())
    # the requests really shared steps: fewer batched steps than tokens generated
    steps = server.metric("loomrt_steps_total", model="tiny") - steps_before
    made = sum(len(e["token_ids"]) + 1 for got, s in zip(together, specs) if s["model"] == "tiny" for _, e, _, _ in got)
    assert steps < made, (steps, made)
    client = _client(server)
    paths = {"tiny": tiny_paths[0], "other": tiny_paths[1]}
    for si, (spec, got) in enumerate(zip(specs, together)):
        alone = _call(client, spec)
        m = refs[spec["model"]]
        for k, ((text, ext, finish, lps), (text1, ext1, finish1, lps1)) in enumerate(zip(got, alone)):
            assert ext["token_ids"] == ext1["token_ids"] and text == text1 and finish == finish1, spec
            assert _strip(ext["receipt"]) == _strip(ext1["receipt"])
            assert lps == lps1, spec  # log-probabilities: the same bits under load as alone
            if "logprobs" in spec:
                assert len(lps) == len(ext["token_ids"])
            else:
                assert lps is None
            cli = _cli_generate(paths[spec["model"]], spec, k, ext["receipt"]["prompt_token_ids"],
                                tmp_path / f"cli-{si}-{k}.json")
            assert cli["output_token_ids"] == ext["receipt"]["output_token_ids"], spec
            if not spec["chat"]:
                assert _strip(cli) == _strip(ext["receipt"])
            g = m.generate(spec["prompt"], spec["max_tokens"], stop=spec.get("stop"), chat=spec["chat"], receipt=True,
                           temperature=spec["temperature"], top_p=spec["top_p"], seed=spec["seed"] + k)
            assert g.token_ids == ext["token_ids"], spec
            assert g.text == text
            assert _strip(g.receipt) == _strip(ext["receipt"])
            assert finish == {"context": "length"}.get(g.finish_reason, g.finish_reason)


def test_receipt_verifies_and_matches_cli(server, refs, tiny_paths, tmp_path):
    client = _client(server)
    r = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=12, temperature=0.8, seed=9)
    receipt = r.choices[0].model_extra["loomrt"]["receipt"]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(receipt))
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", "loomrt", "verify", str(path), "--model", tiny_paths[0], "-t", "1"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # `loomrt generate` with the same settings writes the same receipt
    cli = tmp_path / "cli.json"
    out = subprocess.run([sys.executable, "-m", "loomrt", "generate", tiny_paths[0], "Once upon a time", "-n", "12",
                          "--temperature", "0.8", "--seed", "9", "--receipt", str(cli), "-q", "-t", "1"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert _strip(json.loads(cli.read_text())) == _strip(receipt)
    # an edited receipt fails
    receipt["output_token_ids"][0] ^= 1
    assert not loomrt.verify_receipt(receipt, refs["tiny"]).ok


# ---- log-probabilities ----------------------------------------------------------------------------


def _ref_logprobs(model, prompt_ids, token_ids):
    """Session.log_softmax at each generated position of a fresh session (one token at a time)."""
    s = model.session()
    s.eval(prompt_ids)
    rows = []
    for t in token_ids:
        rows.append(s.log_softmax())
        s.eval([t])
    return rows


def _top(lp, k):
    order = sorted(range(len(lp)), key=lambda i: (-lp[i], i))
    return order[:k]


def test_logprobs_exact_in_openai_shapes(server, refs):
    """logprobs / top_logprobs for completions and chat, streaming and not: each value is the
    float32 log softmax of the exact logits, bit for bit (Session.log_softmax of a fresh
    session), within 1e-6 of torch's float64 log_softmax, and the alternatives are the k most
    likely tokens in order; streaming chunks concatenate to the non-streaming answer."""
    import torch

    client = _client(server)
    m = refs["tiny"]
    tok = m.tokenizer
    for chat in (False, True):
        for stream in (False, True):
            spec = {"model": "tiny", "chat": chat, "stream": stream, "max_tokens": 12, "temperature": 0.9, "top_p": 1.0,
                    "seed": 5, "n": 2, "logprobs": 5,
                    "prompt": [{"role": "user", "content": "Once upon"}] if chat else "Once upon"}
            got = _call(client, spec)
            for k, (text, ext, finish, rows) in enumerate(got):
                ids = ext["token_ids"]
                assert len(rows) == len(ids) >= 1
                ref = _ref_logprobs(m, ext["receipt"]["prompt_token_ids"], ids)
                # logits of the same positions, for torch's float64 log_softmax
                logits = m.logits(ext["receipt"]["prompt_token_ids"] + ids)[len(ext["receipt"]["prompt_token_ids"]) - 1:-1]
                want64 = torch.log_softmax(torch.from_numpy(logits).double(), dim=-1).numpy()
                for i, (t, row, lp) in enumerate(zip(ids, rows, ref)):
                    value = row[1]
                    assert np.float32(value) == lp[t] and float(lp[t]) == value  # the same bits
                    assert abs(value - want64[i, t]) <= 1e-6 * max(1.0, abs(want64[i, t]))
                    top = _top(lp, 5)
                    assert abs(np.exp(lp.astype(np.float64)).sum() - 1) < 1e-5
                    if chat:
                        assert row[0] == tok.token_bytes(t).decode("utf-8", "replace") or row[0].startswith("bytes:")
                        assert list(row[2]) == list(tok.token_bytes(t))
                        assert [bytes(b) for _, _, b in row[3]] == [tok.token_bytes(a) for a in top]
                        assert [v for _, v, _ in row[3]] == [float(lp[a]) for a in top]
                    else:
                        alts = dict(row[2])
                        for a in top:
                            assert alts[server_token_str(tok, a)] == float(lp[a])
                        assert alts[row[0]] == value  # the sampled token is always listed
                        assert len(alts) in (5, 6)
                if not chat:
                    offsets = [r[3] for r in rows]  # where each token's text starts in the completion
                    assert offsets[0] == 0 and offsets == sorted(offsets) and offsets[-1] <= len(tok.decode(ids))
                    full = tok.decode(ids)
                    for i, o in enumerate(offsets):  # where the split falls between whole characters
                        head = tok.decode(ids[:i])
                        if "\ufffd" not in head and head + tok.decode(ids[i:]) == full:
                            assert o == len(head)
    # top_logprobs = 0 in chat: the token's own log-probability, no alternatives; off: None
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3,
                                       logprobs=True, top_logprobs=0, temperature=0)
    assert all(e.top_logprobs == [] for e in r.choices[0].logprobs.content) and r.choices[0].logprobs.content
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert r.choices[0].logprobs is None


def server_token_str(tok, t):
    from loomrt.server import _token_str

    return _token_str(tok.token_bytes(t))


def test_session_log_softmax_is_fixed_order(refs):
    """Session.log_softmax (lrt_session_log_softmax): the same bits at 1 and 3 threads and from
    a batched step; exp of it sums to 1; equals the float64 reference within 1e-6."""
    m = refs["tiny"]
    ids = m.encode("The quick brown fox")
    out = []
    for threads in (1, 3):
        s = m.session(threads=threads)
        s.eval(ids)
        out.append(s.log_softmax())
    b = loomrt.Batch(m, threads=2)
    s1, s2 = m.session(), m.session()
    b.eval([(s2, m.encode("other text here")), (s1, ids)])
    out.append(s1.log_softmax())
    assert out[0].tobytes() == out[1].tobytes() == out[2].tobytes()
    logits = m.logits(ids)[-1].astype(np.float64)
    ref = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
    assert np.max(np.abs(out[0] - ref)) < 1e-6
    with pytest.raises(loomrt.errors.StateError):
        m.session().log_softmax()


def test_models_health_metrics(server):
    client = _client(server)
    names = sorted(m.id for m in client.models.list().data)
    assert names == ["other", "slow", "tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    h = httpx.get(server.url + "/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    text = httpx.get(server.url + "/metrics").text
    for name in ("loomrt_queue_depth", "loomrt_batch_size", "loomrt_tokens_per_second", "loomrt_kv_reserved_bytes",
                 "loomrt_generated_tokens_total", "loomrt_time_to_first_token_seconds"):
        assert f"# TYPE {name} " in text
    assert server.metric("loomrt_generated_tokens_total", model="tiny") > 0


# ---- malformed input ------------------------------------------------------------------------------


def _post(srv, path, body, raw=False, headers=None):
    data = body if raw else json.dumps(body).encode()
    return httpx.post(srv.url + path, content=data, headers={"content-type": "application/json", **(headers or {})},
                      timeout=60)


BAD = [
    (b"{not json", "/v1/completions", 400, None, "not valid JSON"),
    (b'{"model": "tiny", "prompt": "a", "temperature": NaN}', "/v1/completions", 400, None, "not valid JSON"),
    (b"[1, 2]", "/v1/completions", 400, None, "JSON object"),
    ({"prompt": "a"}, "/v1/completions", 400, "model", "'model' is required"),
    ({"model": "nope", "prompt": "a"}, "/v1/completions", 404, "model", "does not exist"),
    ({"model": "tiny", "prompt": 5}, "/v1/completions", 400, "prompt", "'prompt' must be"),
    ({"model": "tiny", "prompt": ""}, "/v1/completions", 400, "prompt", "empty"),
    ({"model": "tiny", "prompt": "a", "max_tokens": "ten"}, "/v1/completions", 400, "max_tokens", "integer"),
    ({"model": "tiny", "prompt": "a", "max_tokens": 10 ** 9}, "/v1/completions", 400, "max_tokens", "--max-tokens-limit"),
    ({"model": "tiny", "prompt": "a", "max_tokens": 0}, "/v1/completions", 400, "max_tokens", "[1,"),
    ({"model": "tiny", "prompt": "a", "temperature": -0.5}, "/v1/completions", 400, "temperature", "[0, 2]"),
    ({"model": "tiny", "prompt": "a", "temperature": "hot"}, "/v1/completions", 400, "temperature", "number"),
    ({"model": "tiny", "prompt": "a", "top_p": 0}, "/v1/completions", 400, "top_p", "(0, 1]"),
    ({"model": "tiny", "prompt": "a", "seed": 1.5}, "/v1/completions", 400, "seed", "integer"),
    ({"model": "tiny", "prompt": "a", "stop": [1]}, "/v1/completions", 400, "stop", "strings"),
    ({"model": "tiny", "prompt": "a", "n": 100}, "/v1/completions", 400, "n", "[1, 16]"),
    ({"model": "tiny", "prompt": "a", "stream": "yes"}, "/v1/completions", 400, "stream", "boolean"),
    ({"model": "tiny", "prompt": "a", "frobnicate": 1}, "/v1/completions", 400, "frobnicate", "unknown field"),
    ({"model": "tiny", "prompt": "a", "logprobs": 21}, "/v1/completions", 400, "logprobs", "[0, 20]"),
    ({"model": "tiny", "prompt": "a", "logprobs": "5"}, "/v1/completions", 400, "logprobs", "integer"),
    ({"model": "tiny", "prompt": "a", "n": "two"}, "/v1/completions", 400, "n", "integer"),
    ({"model": "tiny", "prompt": "a", "max_tokens": -3}, "/v1/completions", 400, "max_tokens", "[1,"),
    ({"model": "tiny", "prompt": "a", "top_p": 1.5}, "/v1/completions", 400, "top_p", "(0, 1]"),
    ({"model": "tiny", "prompt": "a", "temperature": 1e308 * 10}, "/v1/completions", 400, None, "not valid JSON"),
    ({"model": "tiny", "prompt": "a", "max_tokens": 5.0}, "/v1/completions", 400, "max_tokens", "integer"),
    ({"model": "tiny", "prompt": ["a", 5]}, "/v1/completions", 400, "prompt", "'prompt' must be"),
    (b'{"model": "tiny", "prompt": "a"', "/v1/completions", 400, None, "not valid JSON"),
    (b"\xff\xfe{}", "/v1/completions", 400, None, "not valid JSON"),
    (b"", "/v1/completions", 400, None, "not valid JSON"),
    (b'"just a string"', "/v1/chat/completions", 400, None, "JSON object"),
    ({"model": "tiny", "prompt": "a", "presence_penalty": 0.5}, "/v1/completions", 400, "presence_penalty", "not supported"),
    ({"model": "tiny", "prompt": "a", "echo": True}, "/v1/completions", 400, "echo", "not supported"),
    ({"model": "tiny", "prompt": "ab" * 1000}, "/v1/completions", 400, "prompt", "context holds 1024"),
    ({"model": "tiny", "prompt": [5, 9999]}, "/v1/completions", 400, "prompt", "outside the vocabulary"),
    ({"model": "tiny", "messages": "hi"}, "/v1/chat/completions", 400, "messages", "non-empty list"),
    ({"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}, "/v1/chat/completions", 400, "messages", "role"),
    ({"model": "tiny", "messages": [{"role": "user", "content": 3}]}, "/v1/chat/completions", 400, "messages", "content"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}, "/v1/chat/completions",
     400, "top_logprobs", "needs 'logprobs': true"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "logprobs": 3}, "/v1/chat/completions",
     400, "logprobs", "must be a boolean"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 50},
     "/v1/chat/completions", 400, "top_logprobs", "[0, 20]"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x" * 3000}]}, "/v1/chat/completions", 400,
     "messages", "context holds 1024"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 10 ** 6},
     "/v1/chat/completions", 400, "max_completion_tokens", "--max-tokens-limit"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": -0.1}, "/v1/chat/completions",
     400, "temperature", "[0, 2]"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "colour": "red"}, "/v1/chat/completions",
     400, "colour", "unknown field"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
     "/v1/chat/completions", 400, "tools", "not supported"),
    ({"model": "tiny", "prompt": "a", "stream_options": {"include_usage": True}}, "/v1/completions", 400,
     "stream_options", "stream = true"),
]


@pytest.mark.parametrize("body,path,status,param,text", BAD, ids=[str(i) for i in range(len(BAD))])
def test_malformed_requests(server, body, path, status, param, text):
    r = _post(server, path, body, raw=isinstance(body, bytes))
    assert r.status_code == status, r.text
    e = r.json()["error"]
    assert text in e["message"], e
    assert e["param"] == param and e["type"]
    # and the server keeps serving
    ok = _post(server, "/v1/completions", {"model": "tiny", "prompt": "ok", "max_tokens": 1})
    assert ok.status_code == 200 and ok.json()["choices"][0]["loomrt"]["token_ids"] is not None


def test_transport_level_errors_and_still_serving(server):
    big = {"model": "tiny", "prompt": "a" * (70 * 1024)}
    r = _post(server, "/v1/completions", big)
    assert r.status_code == 413 and "--max-request-bytes" in r.json()["error"]["message"]
    r = httpx.get(server.url + "/v1/nowhere")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(server.url + "/v1/completions")
    assert r.status_code == 405 and "error" in r.json()
    # the official client surfaces these as typed errors
    client = _client(server)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt="a", temperature=-1)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="missing", prompt="a")
    r = client.completions.create(model="tiny", prompt="still here", max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason in ("length", "stop")


def test_disconnect_mid_stream_frees_the_sequence(server):
    before = server.metric("loomrt_sequences_finished_total", model="slow", reason="cancelled")
    made0 = server.metric("loomrt_generated_tokens_total", model="slow")
    body = {"model": "slow", "prompt": "x", "max_tokens": 3000, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                break  # the first token arrived: hang up
    t0 = time.time()
    while server.metric("loomrt_sequences_finished_total", model="slow", reason="cancelled") <= before:
        assert time.time() - t0 < 20, "the disconnected sequence was not freed"
        time.sleep(0.05)
    assert time.time() - t0 < 5
    assert server.metric("loomrt_active_sequences", model="slow") == 0
    assert server.metric("loomrt_kv_reserved_bytes", model="slow") == 0
    assert server.metric("loomrt_generated_tokens_total", model="slow") - made0 < 3000


# ---- limits: queue, API key -----------------------------------------------------------------------


def test_queue_full_and_api_key(slow_path):
    srv = _Server({"tiny": loomrt.load(slow_path, threads=1)},
                  ServeConfig(max_sessions=1, max_queue=1, api_key="sekrit", max_tokens_limit=3000))
    srv.auth = {"authorization": "Bearer sekrit"}
    try:
        r = httpx.get(srv.url + "/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            _client(srv, key="wrong").models.list()
        assert httpx.get(srv.url + "/health").status_code == 200  # health needs no key
        body = {"model": "tiny", "prompt": "x", "max_tokens": 3000, "temperature": 0, "stream": True}
        with httpx.stream("POST", srv.url + "/v1/completions", json=body, headers=srv.auth, timeout=60) as r1:
            lines1 = r1.iter_lines()  # (kept: dropping the iterator closes the response)
            next(lines1)  # the only slot is busy
            with httpx.stream("POST", srv.url + "/v1/completions", json=body, headers=srv.auth, timeout=60) as r2:
                assert r2.status_code == 200  # queued
                r3 = _post(srv, "/v1/completions", body, headers=srv.auth)
                assert r3.status_code == 429 and int(r3.headers["retry-after"]) >= 1
                assert r3.json()["error"]["type"] == "rate_limit_error"
                assert srv.metric("loomrt_queue_depth", model="tiny") == 1
        t0 = time.time()
        while srv.metric("loomrt_active_sequences", model="tiny") or srv.metric("loomrt_queue_depth", model="tiny"):
            assert time.time() - t0 < 20
            time.sleep(0.05)
        ok = _client(srv, key="sekrit").completions.create(model="tiny", prompt="hi", max_tokens=2)
        assert ok.usage.completion_tokens <= 2
    finally:
        srv.stop()


# ---- SIGTERM drains -------------------------------------------------------------------------------


def test_sigterm_drains_in_flight_requests(slow_path):
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "loomrt", "serve", f"tiny={slow_path}", "--port", str(port),
                             "-t", "1", "--log-level", "warning"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        t0 = time.time()
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() - t0 < 60
            time.sleep(0.1)
        body = {"model": "tiny", "prompt": "x", "max_tokens": 200, "temperature": 0, "stream": True}
        lines = []
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
            it = r.iter_lines()
            lines.append(next(it))
            proc.send_signal(signal.SIGTERM)
            lines += list(it)
        events = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
        assert lines[-1] == "data: [DONE]" or "data: [DONE]" in lines
        assert events[-1]["choices"][0]["finish_reason"] == "length"
        assert len(events[-1]["choices"][0]["loomrt"]["token_ids"]) == 200
        # uvicorn re-raises the signal once drained: the exit status of a SIGTERM-ed process
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Traceback" not in proc.stderr.read()
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_slow_client_does_not_hold_others_up(server):
    """A streaming client that reads one event a second does not slow the batch: another
    request finishes meanwhile, and the slow one still gets every token in order."""
    body = {"model": "slow", "prompt": "x", "max_tokens": 40, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        first = next(lines)
        assert first.startswith("data: {")
        t0 = time.time()
        quick = _client(server).completions.create(model="tiny", prompt="hello", max_tokens=20, temperature=0)
        assert quick.choices[0].finish_reason in ("length", "stop")
        assert time.time() - t0 < 10
        time.sleep(1.0)
        rest = list(lines)
    events = [json.loads(x[6:]) for x in [first] + rest if x.startswith("data: {")]
    ext = events[-1]["choices"][0]["loomrt"]
    assert len(ext["token_ids"]) == 40 and [x for x in rest if x][-1] == "data: [DONE]"
    text = "".join(e["choices"][0]["text"] for e in events)
    assert text == loomrt.load(server.app.state.workers["slow"].model.path, threads=1).generate(
        "x", 40, temperature=0).text
