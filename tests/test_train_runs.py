"""Training runs (issue 12): fine-tuning an existing model (HF folder, GGUF dequantized), Ctrl-C,
a diverging run, a real English prose corpus (Debian's fortunes) and bad input.

The model-level numerics (gradients vs torch, determinism) are in tests/test_train.py."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import loomrt
from loomrt.train import batch_offsets, latest_checkpoint, load_safetensors, train
from loomrt.trainer import Trainer

STDLIB = os.path.dirname(os.__file__)
CODE = [os.path.join(STDLIB, "bisect.py")]
MORE_CODE = [os.path.join(STDLIB, "heapq.py")]
FORTUNES = "/usr/share/games/fortunes"  # Debian's fortunes + fortunes-min (tests/install-deps.sh)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(loomrt.__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT)
MICRO = dict(size="micro", layers=1, context=32, batch=2, val_fraction=0.0, eval_every=0, threads=1, warmup=0)
FT = dict(context=32, batch=2, val_fraction=0.0, eval_every=0, threads=1, warmup=0)  # a fine-tune keeps the shape


def cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "loomrt", *args], env=env or ENV, capture_output=True, text=True,
                          **kw)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small model trained from scratch: its checkpoint is the HF folder the fine-tunes start from."""
    out = str(tmp_path_factory.mktemp("base") / "run")
    run = train(CODE, out, steps=40, lr=1e-2, **MICRO)
    return run.checkpoint


# ---- 1. fine-tuning ------------------------------------------------------------------------------

def test_finetune_from_an_hf_folder_starts_from_its_weights(base, tmp_path):
    src = load_safetensors(os.path.join(base, "model.safetensors"))
    # lr 0: every update is zero, so the checkpoint holds the base's weights exactly, and each step's
    # loss is the base model's loss on that step's batch
    ft0 = train(MORE_CODE, str(tmp_path / "ft0"), init_from=base, steps=2, lr=0.0, **FT)
    got = load_safetensors(os.path.join(ft0.checkpoint, "model.safetensors"))
    assert sorted(got) == sorted(src)
    for name in src:
        assert np.array_equal(got[name].view(np.uint32), src[name].view(np.uint32)), name
    # the model's own tokenizer, implied by --init-from
    assert open(os.path.join(ft0.checkpoint, "tokenizer.json"), "rb").read() == \
        open(os.path.join(base, "tokenizer.json"), "rb").read()
    tok = np.memmap(tmp_path / "ft0" / "data" / "train.bin", dtype=np.uint16, mode="r")
    rows = np.stack([tok[s:s + 33] for s in batch_offsets(0, 1, 2, len(tok), 32)]).astype(np.int32)
    assert ft0.losses[0] == pytest.approx(Trainer.from_pretrained(base, threads=1).eval_loss(rows), rel=1e-6)
    assert ft0.losses[0] < 5.0  # the base learned bytes of code (a fresh model starts near ln 257 = 5.55)

    # a real fine-tune moves the weights and lowers the loss on its data; stopped and resumed (after the
    # base folder is gone: the resume needs only the run folder) it gives the bits of a run that never stopped
    opts = dict(FT, steps=8, lr=1e-3)
    full = train(MORE_CODE, str(tmp_path / "full"), init_from=base, **opts)
    tok = np.memmap(tmp_path / "full" / "data" / "train.bin", dtype=np.uint16, mode="r")
    held = np.stack([tok[s:s + 33] for s in range(0, len(tok) - 33, len(tok) // 16)][:16]).astype(np.int32)
    assert full.trainer.eval_loss(held) < Trainer.from_pretrained(base, threads=1).eval_loss(held)
    moved = load_safetensors(os.path.join(full.checkpoint, "model.safetensors"))
    assert not np.array_equal(moved["model.embed_tokens.weight"], src["model.embed_tokens.weight"])
    copy = str(tmp_path / "base-copy")
    shutil.copytree(base, copy)
    part = train(MORE_CODE, str(tmp_path / "part"), init_from=copy, callback=lambda r: r["step"] == 3, **opts)
    assert part.interrupted and part.step == 3
    shutil.rmtree(copy)
    rest = train([], str(tmp_path / "part"), resume=True)
    assert rest.step == 8 and rest.losses == full.losses
    assert rest.trainer.weights_bytes() == full.trainer.weights_bytes()
    model = loomrt.load(rest.checkpoint, threads=1)
    assert len(model.generate("def ", max_tokens=4, seed=1).token_ids) > 0


def test_finetune_refuses_a_new_shape_or_tokenizer(base, tmp_path):
    with pytest.raises(loomrt.InvalidArgumentError, match="drop --dim"):
        train(CODE, str(tmp_path / "a"), init_from=base, dim=64, steps=1)
    with pytest.raises(loomrt.InvalidArgumentError, match="own tokenizer; drop --tokenizer bpe:500"):
        train(CODE, str(tmp_path / "b"), init_from=base, tokenizer="bpe:500", steps=1)
    with pytest.raises(loomrt.NotFoundError, match="--init-from"):
        train(CODE, str(tmp_path / "c"), init_from=str(tmp_path / "nowhere"), steps=1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # refused before anything is written


def test_gguf_tokenizer_converts_to_an_equal_tokenizer_json():
    from tokenizers import Tokenizer as HFTokenizer

    from loomrt import gguf_hf

    path = loomrt.default_model_path()
    text = gguf_hf.tokenizer_json_from_gguf(path)
    hf = HFTokenizer.from_str(text)
    ours = loomrt.Tokenizer.from_gguf(path)
    with open(os.path.join(STDLIB, "textwrap.py"), encoding="utf-8") as f:
        sample = f.read()[:6000] + "\n<|im_start|>user\nWhat's 12+30?<|im_end|>\n« Ünïcödé » 東京 🙂 \t\t x"
    ids = hf.encode(sample, add_special_tokens=False).ids
    assert ids == list(ours.encode(sample, add_special_tokens=False)) and len(ids) > 1000
    assert hf.decode(ids, skip_special_tokens=False) == sample
    meta = gguf_hf.read_metadata(path)
    with pytest.raises(loomrt.UnsupportedError, match="pre-tokenizer 'tekken'"):
        gguf_hf.tokenizer_json(dict(meta, **{"tokenizer.ggml.pre": "tekken"}))
    with pytest.raises(loomrt.UnsupportedError, match="architecture 'llama'"):
        gguf_hf.hf_config(dict(meta, **{"general.architecture": "mamba"}), tied=True)


@pytest.mark.slow
def test_cli_finetunes_the_shipped_smollm2_gguf(tmp_path):
    """`loomrt train DATA -o RUN --init SmolLM2-Q4_1.gguf`: starts from the dequantized weights, writes an
    HF checkpoint that loomrt and transformers load with the same logits and the same tokenizer ids."""
    gguf_path = loomrt.default_model_path()
    data = tmp_path / "notes.md"
    data.write_text("The weaver sat at the loom and told the apprentice that every thread matters. "
                    "A pattern is only as strong as its weakest knot, and patience is the first tool.\n" * 3)
    run = tmp_path / "run"
    out = cli("train", str(data), "-o", str(run), "--init", gguf_path, "--steps", "2", "--batch", "1",
              "--context", "24", "--lr", "0", "--warmup", "0", "--val-fraction", "0", "--eval-every", "0",
              "--threads", "2")
    assert out.returncode == 0, out.stderr
    ck = latest_checkpoint(str(run))
    cfg = json.load(open(os.path.join(ck, "config.json")))
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]) == (576, 30, 49152)
    # the weights are the GGUF's, dequantized (lr 0 keeps them): the embedding equals gguf-py's dequantization
    import gguf
    reader = gguf.GGUFReader(gguf_path)
    t = next(t for t in reader.tensors if t.name == "token_embd.weight")
    ref = gguf.quants.dequantize(t.data, t.tensor_type).reshape(49152, 576)
    got = load_safetensors(os.path.join(ck, "model.safetensors"))["model.embed_tokens.weight"]
    np.testing.assert_array_equal(got, ref.astype(np.float32))
    # the first loss is a pretrained model's on English (a random one would be near ln 49152 = 10.8)
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] < 5.0, first
    # tokenizer: transformers' fast tokenizer on the checkpoint = loomrt on the checkpoint = the GGUF's
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    prompt = "def weave(threads):\n    return sorted(threads)  # 42 knots"
    at = transformers.AutoTokenizer.from_pretrained(ck)
    model = loomrt.load(ck, threads=2)
    ids = list(model.tokenizer.encode(prompt, add_special_tokens=False))
    assert at(prompt, add_special_tokens=False)["input_ids"] == ids
    assert ids == list(loomrt.Tokenizer.from_gguf(gguf_path).encode(prompt, add_special_tokens=False))
    assert at.eos_token == "<|im_end|>" and model.tokenizer.chat_template  # the base's chat template kept
    hf = transformers.AutoModelForCausalLM.from_pretrained(ck)
    with torch.no_grad():
        want = hf(torch.tensor([ids])).logits[0, -1].numpy()
    ours = model.logits(ids)[-1]
    np.testing.assert_allclose(ours, want, atol=1e-4 * np.abs(want).max())


# ---- 2. Ctrl-C -----------------------------------------------------------------------------------

def _weights_of(run_dir):
    return (open(os.path.join(latest_checkpoint(run_dir), "model.safetensors"), "rb").read(),
            [json.loads(l)["loss"] for l in open(os.path.join(run_dir, "metrics.jsonl"))])


def test_ctrl_c_writes_a_checkpoint_and_resume_gives_the_same_bits(tmp_path):
    common = ["--size", "micro", "--layers", "1", "--context", "32", "--batch", "2", "--val-fraction", "0",
              "--eval-every", "0", "--threads", "1", "--warmup", "0", "--schedule", "constant", "-q"]
    run = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-m", "loomrt", "train", *CODE, "-o", run, "--steps", "100000",
                             *common], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(run, "metrics.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.isfile(metrics) and sum(1 for _ in open(metrics)) >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: checkpoint" in err and "--resume" in err
    ck = latest_checkpoint(run)
    stopped = json.load(open(os.path.join(ck, "trainer_state.json")))["step"]
    assert stopped >= 5 and os.path.basename(ck) == f"step_{stopped:07d}"
    assert not [n for n in os.listdir(os.path.dirname(ck)) if n.endswith(".tmp")]
    total = stopped + 3
    out = cli("train", "-o", run, "--resume", "--steps", str(total), "x")  # DATA is the run's own on resume
    assert out.returncode == 0, out.stderr
    ref = str(tmp_path / "ref")
    out = cli("train", *CODE, "-o", ref, "--steps", str(total), *common)
    assert out.returncode == 0, out.stderr
    got, want = _weights_of(run), _weights_of(ref)
    assert got[1] == want[1] and len(got[1]) == total
    assert hashlib.sha256(got[0]).hexdigest() == hashlib.sha256(want[0]).hexdigest()


# ---- 3. a non-finite loss ------------------------------------------------------------------------

def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    run = str(tmp_path / "run")
    env = dict(ENV, LOOMRT_TRAIN_DEBUG_NAN_STEP="5")  # the documented debug hook
    out = cli("train", *CODE, "-o", run, "--size", "micro", "--layers", "1", "--context", "32", "--batch", "2",
              "--steps", "8", "--save-every", "2", "--val-fraction", "0", "--eval-every", "0", "--threads", "1",
              "-q", env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "the loss became nan at step 5: training diverged" in out.stderr
    good = os.path.join(run, "checkpoints", "step_0000004")
    assert f"last good checkpoint is {good}" in out.stderr and "--lr" in out.stderr
    assert latest_checkpoint(run) == good and sorted(os.listdir(os.path.join(run, "checkpoints"))) == \
        ["step_0000002", "step_0000004"]
    assert all(np.isfinite(w).all() for w in load_safetensors(os.path.join(good, "model.safetensors")).values())
    assert len(loomrt.load(good, threads=1).generate("def ", max_tokens=3, seed=0).token_ids) > 0

    # a learning rate far too high diverges by itself: stopped with the same message, nothing non-finite saved
    with pytest.raises(loomrt.NumericError, match=r"became (nan|inf).* at step \d+: training diverged"):
        train(CODE, str(tmp_path / "hot"), steps=50, lr=9e5, clip=0, save_every=1, **MICRO)
    hot = latest_checkpoint(str(tmp_path / "hot"))
    assert all(np.isfinite(w).all() for w in load_safetensors(os.path.join(hot, "model.safetensors")).values())


# ---- 4. real English prose: Debian's fortunes -------------------------------------------------------

def test_fortunes_prose_learns_below_the_unigram_baseline(tmp_path):
    assert os.path.isdir(FORTUNES), "Debian's fortunes data is missing: run tests/install-deps.sh (apt fortunes)"
    run = train([FORTUNES], str(tmp_path / "run"), size="micro", context=64, tokenizer="bpe:1000", steps=400,
                batch=8, lr=6e-3, warmup=20, eval_every=200, threads=2, val_fraction=0.1, seed=1,
                sample_every=400, sample_prompt="The ")
    st = run.stats["stats"]
    # each fortune file once: the .u8 links to the same files are not read again; the .dat indexes are binary
    names = [n for n in os.listdir(FORTUNES) if not n.endswith((".dat", ".u8"))]
    assert st["documents"] == len(names) >= 30 and st["binary_skipped"] >= 30
    assert st["val_documents"] >= 2 and run.stats["val_tokens"] > 10000
    # "clearly below": at least 15% under the unigram cross-entropy of the validation fortunes
    assert run.best_val < 0.85 * run.unigram_val, (run.best_val, run.unigram_val)
    sample = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["sample"]
    assert sample.count(" ") >= 5  # words, not noise


# ---- 5. bad input -----------------------------------------------------------------------------------

def test_bad_input_from_the_cli_says_what_and_where(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = cli("train", str(empty), "-o", str(tmp_path / "r0"), "--steps", "1")
    assert out.returncode == 1 and "no training text" in out.stderr and "0 files read" in out.stderr
    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" * 50)
    (binary / "y.o").write_bytes(bytes(range(256)))
    out = cli("train", str(binary), "-o", str(tmp_path / "r1"), "--steps", "1")
    assert out.returncode == 1 and "2 binary skipped" in out.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "all.jsonl").write_text('{"text": 3}\n{oops\n')
    out = cli("train", str(bad), "-o", str(tmp_path / "r2"), "--steps", "1")
    assert out.returncode == 1 and "2 bad .jsonl lines (e.g. all.jsonl:1" in out.stderr
    (bad / "good.jsonl").write_text("\n".join(json.dumps({"body": f"note {i}: the loom hums"}) for i in range(30)))
    out = cli("train", str(bad), "-o", str(tmp_path / "r3"), "--text-field", "body", "--size", "micro", "--layers",
              "1", "--context", "16", "--steps", "2", "--batch", "2", "--val-fraction", "0", "--eval-every", "0")
    assert out.returncode == 0, out.stderr
    assert "2 bad .jsonl lines" in out.stderr and "skipped all.jsonl:2" in out.stderr


def test_a_run_folder_is_never_replaced_unless_asked(tmp_path):
    run = str(tmp_path / "run")
    first = train(CODE, run, steps=2, **MICRO)
    before = {n: os.path.getmtime(os.path.join(run, n)) for n in os.listdir(run)}
    with pytest.raises(loomrt.InvalidArgumentError, match="already holds another run; pass --resume"):
        train(MORE_CODE, run, steps=2, **MICRO)
    assert {n: os.path.getmtime(os.path.join(run, n)) for n in os.listdir(run)} == before  # nothing lost
    again = train(MORE_CODE, run, steps=3, overwrite=True, **MICRO)
    assert again.step == 3 and json.load(open(os.path.join(run, "run.json")))["data"] == [os.path.abspath(MORE_CODE[0])]
    assert not os.path.isdir(first.checkpoint)  # the old run's checkpoints went with --overwrite

    # a checkpoint from another configuration is refused by name, not loaded into the wrong shapes
    other = str(tmp_path / "other")
    o = train(CODE, other, steps=2, **dict(MICRO, layers=2))
    shutil.rmtree(os.path.join(run, "checkpoints"))
    shutil.copytree(os.path.join(other, "checkpoints"), os.path.join(run, "checkpoints"))
    with open(os.path.join(run, "latest"), "w") as f:
        f.write(os.path.basename(o.checkpoint))
    with pytest.raises(loomrt.InvalidArgumentError, match="another configuration \\(num_hidden_layers 2, this run 1\\)"):
        train([], run, resume=True, steps=5)
