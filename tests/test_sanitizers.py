"""Memory safety: the C tests and a subset of the Python tests under AddressSanitizer +
UndefinedBehaviorSanitizer, and libFuzzer harnesses (csrc/fuzz/) for every parser of untrusted
files, each run for a bounded time from small valid seed files made here. Any sanitizer report,
in the test process or in a child it starts, fails the test.

The sanitized builds live in temporary folders: the normal install is never touched.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
from typing import Dict, List

import numpy as np
import pytest

import models

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
SAN = "-fsanitize=address,undefined -fno-sanitize-recover=all"
# Seconds each fuzzer runs (all of them at once). CI budget: the fuzzers take this long in wall time.
FUZZ_SECONDS = int(os.environ.get("LOOMRT_FUZZ_SECONDS", "20"))
HARNESSES = ["json", "safetensors", "gguf", "config", "tokenizer", "model"]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is installed by tests/install-deps.sh"
    return path


def _reports(log_prefix: str) -> str:
    """Text of every sanitizer report written by any process under ASAN/UBSAN log_path."""
    out = []
    for path in sorted(glob.glob(log_prefix + "*")):
        with open(path, encoding="utf-8", errors="replace") as f:
            out.append(f"--- {path}\n" + f.read()[:6000])
    return "\n".join(out)


# ---- (a) the C tests -------------------------------------------------------------------------------


def test_c_tests_under_asan_ubsan(tmp_path) -> None:
    _need("make")
    _need("gcc")
    log = str(tmp_path / "san")
    env = dict(os.environ, CC="gcc", ASAN_OPTIONS=f"detect_leaks=1:log_path={log}",
               UBSAN_OPTIONS=f"print_stacktrace=1:halt_on_error=1:log_path={log}")
    cflags = f"-std=c11 -O1 -g -Wall -Wextra -ffp-contract=off -fno-omit-frame-pointer {SAN}"
    r = subprocess.run(["make", "-C", os.path.join(CSRC, "tests"), f"BUILD={tmp_path / 'build'}", "CC=gcc",
                        f"CFLAGS={cflags}", f"LDLIBS={SAN} -lpthread -lm", "run"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:] + _reports(log)
    assert "0 failures" in r.stdout and "all kernel checks passed" in r.stdout, r.stdout[-3000:]
    assert _reports(log) == ""


# ---- (b) the Python tests on a sanitized extension ---------------------------------------------------


@pytest.fixture(scope="module")
def asan_tree(tmp_path_factory) -> str:
    """A copy of the package whose cffi extension is built with ASan + UBSan (gcc)."""
    _need("gcc")
    tree = str(tmp_path_factory.mktemp("asan-tree"))
    ignore = shutil.ignore_patterns("build", "*.so", "*.o", "*.a", "*.dylib", "__pycache__", "fuzz")
    shutil.copytree(os.path.join(ROOT, "csrc"), os.path.join(tree, "csrc"), ignore=ignore)
    shutil.copytree(os.path.join(ROOT, "loomrt"), os.path.join(tree, "loomrt"), ignore=ignore)
    env = dict(os.environ, CC="gcc", CFLAGS=f"-O1 -g -fno-omit-frame-pointer {SAN}", LDFLAGS=SAN)
    r = subprocess.run([sys.executable, os.path.join("loomrt", "_build_ffi.py")], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert glob.glob(os.path.join(tree, "loomrt", "_loomrt_cffi*.so"))
    return tree


def _asan_env(tree: str, log: str) -> Dict[str, str]:
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    assert os.path.isabs(libasan) and os.path.exists(libasan), libasan
    return dict(os.environ, LD_PRELOAD=libasan, PYTHONPATH=tree, PYTHONDONTWRITEBYTECODE="1",
                # CPython's own allocations are never freed at exit: leaks are not checked here
                ASAN_OPTIONS=f"detect_leaks=0:log_path={log}",
                UBSAN_OPTIONS=f"print_stacktrace=1:halt_on_error=1:log_path={log}")


def test_asan_tree_is_the_one_imported(asan_tree, tmp_path) -> None:
    log = str(tmp_path / "san")
    r = subprocess.run([sys.executable, "-c", "import loomrt, sys; print(loomrt.__file__); print(loomrt._lib.lib)"],
                       cwd=asan_tree, env=_asan_env(asan_tree, log), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr + _reports(log)
    assert r.stdout.splitlines()[0] == os.path.join(asan_tree, "loomrt", "__init__.py")


def test_session_freed_after_model_by_cyclic_gc(asan_tree, seeded_folder, tmp_path) -> None:
    """Regression: a session and its model in one reference cycle are finalized in any order;
    lrt_session_free used to read the (already closed) model: heap-use-after-free."""
    script = textwrap.dedent(f"""
        import gc
        import loomrt
        for order in range(2):
            m = loomrt.load({seeded_folder!r}, threads=2)
            s = m.session()
            s.eval([1, 2, 3])
            box = [m, s]
            box.append(box)          # one cycle holding both
            gc.disable()
            del m, s, box
            gc.enable()
            gc.collect()
        print("ok")
    """)
    log = str(tmp_path / "san")
    r = subprocess.run([sys.executable, "-c", script], cwd=asan_tree, env=_asan_env(asan_tree, log),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr + _reports(log)
    assert _reports(log) == ""


def test_python_tests_under_asan_ubsan(asan_tree, tmp_path) -> None:
    """Parsers (bad-input and random-corruption tests, which also run child processes), the
    forward pass / sampler (the golden-hash determinism tests), the non-finite diagnosis, the
    friendly API from many threads and exact speculation (KV roll-back, draft sync, logits rows;
    the tiny-model tests) on the sanitized extension."""
    log = str(tmp_path / "san")
    tests = [os.path.join(ROOT, "tests", name)
             for name in ("test_bad_input.py", "test_determinism.py", "test_numeric.py", "test_threads.py",
                          "test_speculative.py")]
    # Not these: the first kills a child with SIGSEGV on purpose, which ASan reports as an
    # error; the C race program builds its own sanitized binaries (test_threads.py); SmolLM2 and
    # the CLI's children are slow under ASan.
    deselect = ("not test_corruption_harness_reports_crashes and not test_c_session_race and not real_model "
                "and not cli")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", deselect,
                        "--basetemp", str(tmp_path / "pt"), *tests],
                       cwd=asan_tree, env=_asan_env(asan_tree, log), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:] + _reports(log)
    assert " passed" in r.stdout and "failed" not in r.stdout
    assert _reports(log) == ""


# ---- (c) libFuzzer ----------------------------------------------------------------------------------


def _tokenizer_seeds() -> List[str]:
    from tokenizers import AddedToken, Tokenizer, decoders, models as tm, normalizers, pre_tokenizers, processors, \
        trainers

    texts = ["Hello world, the quick brown fox jumps over the lazy dog.", "def f(x):\n    return x * 2  # twice\n",
             "Größe, café, naïve; 中文字符; emoji \U0001F600 and 1234567 digits.", "  spaces\tand\r\nCRLF  "] * 3
    out = []
    # byte-level BPE (GPT-2 / SmolLM2 style) with ChatML specials and a template
    bl = Tokenizer(tm.BPE())
    bl.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bl.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bl.decoder = decoders.ByteLevel()
    bl.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")])
    bl.post_processor = processors.ByteLevel(trim_offsets=False)
    out.append(bl.to_str())
    # SentencePiece-style BPE with byte fallback (Llama 2 / TinyLlama style)
    sp = Tokenizer(tm.BPE())
    sp.normalizer = normalizers.Replace(" ", "\u2581")
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    sp.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=200, limit_alphabet=80, show_progress=False))
    data = json.loads(sp.to_str())
    vocab: Dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for piece, _ in sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    spm = Tokenizer(tm.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    spm.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    spm.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    spm.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    spm.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    out.append(spm.to_str())
    return out


def _spm_gguf(path: str) -> str:
    """A metadata-only GGUF with a SentencePiece-style (llama) tokenizer."""
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    w.add_name("fuzz-seed")
    w.add_context_length(32)
    w.add_embedding_length(16)
    w.add_block_count(1)
    w.add_feed_forward_length(32)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", "\u2581t", "he", "\u2581the"]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 259 + [-1.0, -2.0, -3.0, -4.0])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * 4)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _write_seeds(root: str) -> Dict[str, str]:
    dirs = {h: os.path.join(root, "seeds-" + h) for h in HARNESSES}
    for d in dirs.values():
        os.makedirs(d)

    def put(h: str, name: str, data: bytes) -> None:
        with open(os.path.join(dirs[h], name), "wb") as f:
            f.write(data)

    configs = {"seeded": models.SEEDED_CONFIG, "micro": models.MICRO_CONFIG,
               "qwen2": dict(models.MICRO_CONFIG, model_type="qwen2", architectures=["Qwen2ForCausalLM"]),
               "mistral": dict(models.MICRO_CONFIG, model_type="mistral", architectures=["MistralForCausalLM"],
                               sliding_window=16),
               "llama3": dict(models.MICRO_CONFIG, rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                                 "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                                 "original_max_position_embeddings": 16}),
               "gpt2": {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 48, "n_embd": 16,
                        "n_layer": 1, "n_head": 2, "n_positions": 32, "n_inner": None,
                        "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "bos_token_id": 0,
                        "eos_token_id": 0, "tie_word_embeddings": True}}
    gen = json.dumps({"bos_token_id": 1, "eos_token_id": [2, 3], "do_sample": True}).encode()
    for name, cfg in configs.items():
        text = json.dumps(cfg, indent=1).encode()
        put("config", name, text)
        put("config", name + "-gen", text + b"\0" + gen)
        put("json", "config-" + name, text)
    put("json", "misc", '{"a":[1,-2.5e-3,1E+2,0,true,false,null,"\\u00e9\\ud83d\\ude00\\n\\"\\/"],"b":{"c":{},"d":[]}}'
        .encode())
    for i, tok in enumerate(_tokenizer_seeds()):
        put("tokenizer", f"tokenizer-{i}.json", tok.encode())
        put("json", f"tokenizer-{i}.json", tok.encode())
    st = models.safetensors_bytes({"a": np.arange(4, dtype=np.float32).reshape(2, 2),
                                   "b": np.ones(3, dtype=np.float16), "c": np.array([1, 2], dtype=np.int64)},
                                  metadata={"format": "pt"})
    put("safetensors", "small.safetensors", st)
    put("json", "safetensors-header", st[8:8 + int.from_bytes(st[:8], "little")])
    with open(models.write_seeded_gguf(os.path.join(root, "micro.gguf")), "rb") as f:
        put("gguf", "micro.gguf", f.read())
    with open(_spm_gguf(os.path.join(root, "spm.gguf")), "rb") as f:
        put("gguf", "spm.gguf", f.read())
    # whole models from memory (fuzz_model.c): a GGUF, and folder files (config, tokenizer, weights)
    with open(os.path.join(root, "micro.gguf"), "rb") as f:
        put("model", "micro-gguf", b"\x01" + f.read())
    from safetensors.numpy import save as st_save

    cfg = json.dumps(models.MICRO_CONFIG).encode()
    weights = st_save(models.seeded_llama_tensors(models.MICRO_CONFIG, 1234))
    tok = _tokenizer_seeds()[0].encode()
    for name, t in (("folder", b""), ("folder-tokenizer", tok)):
        put("model", name, b"\x00" + len(cfg).to_bytes(4, "little") + cfg + len(t).to_bytes(4, "little") + t + weights)
    return dirs


@pytest.fixture(scope="module")
def fuzzers(tmp_path_factory) -> str:
    _need("clang")
    _need("make")
    build = str(tmp_path_factory.mktemp("fuzz-build"))
    r = subprocess.run(["make", "-C", os.path.join(CSRC, "fuzz"), "-j2", f"BUILD={build}"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return build


def test_fuzz_harnesses_find_nothing(fuzzers, tmp_path) -> None:
    seeds = _write_seeds(str(tmp_path))
    procs = {}
    for h in HARNESSES:
        corpus = tmp_path / ("corpus-" + h)
        corpus.mkdir()
        log = open(tmp_path / (h + ".log"), "w")
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        procs[h] = (subprocess.Popen([os.path.join(fuzzers, "fuzz_" + h), f"-max_total_time={FUZZ_SECONDS}",
                                      # ru_maxrss is inherited through fork+exec from this (large)
                                      # process, so no RSS limit; one allocation may not exceed 2 GB
                                      "-timeout=20", "-rss_limit_mb=0", "-malloc_limit_mb=2048",
                                      "-print_final_stats=1",
                                      f"-artifact_prefix={tmp_path}/crash-{h}-", str(corpus), seeds[h]],
                                     stdout=log, stderr=subprocess.STDOUT, env=env), log)
    failures = []
    for h, (p, log) in procs.items():
        rc = p.wait(timeout=FUZZ_SECONDS + 300)
        log.close()
        text = open(tmp_path / (h + ".log"), encoding="utf-8", errors="replace").read()
        runs = [line for line in text.splitlines() if line.startswith("stat::number_of_executed_units")]
        if rc != 0 or "ERROR:" in text or "runtime error" in text or not runs:
            failures.append(f"fuzz_{h}: rc={rc}\n{text[-5000:]}")
        else:
            print(f"fuzz_{h}: {runs[0].split()[-1]} inputs in {FUZZ_SECONDS} s, no finding")
        # the seeds were accepted as inputs (a seed that crashes would have been reported above)
        assert "INITED" in text, text[-2000:]
    assert not failures, "\n\n".join(failures)


def test_fuzz_regressions_stay_fixed(fuzzers, tmp_path) -> None:
    """Inputs that once made a harness fail (csrc/fuzz/regressions/<harness>-<what>) run clean."""
    paths = sorted(glob.glob(os.path.join(CSRC, "fuzz", "regressions", "*")))
    assert paths
    for path in paths:
        harness = os.path.basename(path).split("-")[0]
        assert harness in HARNESSES, path
        r = subprocess.run([os.path.join(fuzzers, "fuzz_" + harness), "-rss_limit_mb=0", "-malloc_limit_mb=2048",
                            f"-artifact_prefix={tmp_path}/", path],
                           capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"))
        out = r.stdout + r.stderr
        assert r.returncode == 0 and "runtime error" not in out and "ERROR:" not in out, out[-4000:]
