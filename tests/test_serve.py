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
        p = PROMPTS[int(rng.integers(len(PROMPTS)))]
        spec["prompt"] = [{"role": "user", "content": p}] if spec["chat"] else p
        out.append(spec)
    return out


def _kwargs(spec):
    kw = dict(model=spec["model"], max_tokens=spec["max_tokens"], temperature=spec["temperature"], top_p=spec["top_p"],
              seed=spec["seed"], n=spec["n"], stream=spec["stream"])
    if "stop" in spec:
        kw["stop"] = spec["stop"]
    if spec["chat"]:
        kw["messages"] = spec["prompt"]
    else:
        kw["prompt"] = spec["prompt"]
    return kw


def _collect(spec, resp):
    """[(text, loomrt extension)] per choice from a response or a stream."""
    n = spec["n"]
    texts, exts, finish = [""] * n, [None] * n, [None] * n
    if spec["stream"]:
        for chunk in resp:
            for c in chunk.choices:
                piece = c.delta.content if spec["chat"] else c.text
                texts[c.index] += piece or ""
                if c.finish_reason is not None:
                    exts[c.index] = c.model_extra["loomrt"]
                    finish[c.index] = c.finish_reason
    else:
        for c in resp.choices:
            texts[c.index] = c.message.content if spec["chat"] else c.text
            exts[c.index] = c.model_extra["loomrt"]
            finish[c.index] = c.finish_reason
    return [(texts[i], exts[i], finish[i]) for i in range(n)]


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


def test_concurrent_requests_equal_alone_and_generate(server, refs):
    specs = _specs(np.random.default_rng(2024), 40)

    async def all_at_once():
        client = _client(server, openai.AsyncOpenAI)
        return await asyncio.gather(*[_acall(client, s) for s in specs])

    steps_before = server.metric("loomrt_steps_total", model="tiny")
    together = asyncio.run(all_at_once())
    # the requests really shared steps: fewer batched steps than tokens generated
    steps = server.metric("loomrt_steps_total", model="tiny") - steps_before
    made = sum(len(e["token_ids"]) + 1 for got, s in zip(together, specs) if s["model"] == "tiny" for _, e, _ in got)
    assert steps < made, (steps, made)
    client = _client(server)
    for spec, got in zip(specs, together):
        alone = _call(client, spec)
        m = refs[spec["model"]]
        for k, ((text, ext, finish), (text1, ext1, finish1)) in enumerate(zip(got, alone)):
            assert ext["token_ids"] == ext1["token_ids"] and text == text1 and finish == finish1, spec
            assert _strip(ext["receipt"]) == _strip(ext1["receipt"])
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
    ({"model": "tiny", "prompt": "a", "logprobs": 2}, "/v1/completions", 400, "logprobs", "not supported"),
    ({"model": "tiny", "prompt": "a", "presence_penalty": 0.5}, "/v1/completions", 400, "presence_penalty", "not supported"),
    ({"model": "tiny", "prompt": "a", "echo": True}, "/v1/completions", 400, "echo", "not supported"),
    ({"model": "tiny", "prompt": "ab" * 1000}, "/v1/completions", 400, "prompt", "context holds 1024"),
    ({"model": "tiny", "prompt": [5, 9999]}, "/v1/completions", 400, "prompt", "outside the vocabulary"),
    ({"model": "tiny", "messages": "hi"}, "/v1/chat/completions", 400, "messages", "non-empty list"),
    ({"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}, "/v1/chat/completions", 400, "messages", "role"),
    ({"model": "tiny", "messages": [{"role": "user", "content": 3}]}, "/v1/chat/completions", 400, "messages", "content"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}, "/v1/chat/completions",
     400, "top_logprobs", "not supported"),
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
