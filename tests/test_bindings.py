"""The text C API through every binding, run for real: the C example (compiled with cc), the
pure-ctypes binding and the C# binding (compiled with Mono's mcs, run with mono) must give the
same token ids, output hash (FNV-1a 64 of the text bytes) and finish reason as the Python
package (loomrt.load(...).generate / .chat), on a tiny seeded model whose random byte-level
output splits UTF-8 characters across tokens, and on the real SmolLM2 GGUF. Also: every
function of loomrt.h is declared in the cffi definitions, the ctypes binding and the C#
binding with the header's parameter count (no drift); the C chat templates equal the Jinja
rendering of the real templates; memory-opened models equal path-opened ones; one model
serves several threads."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from typing import Dict, List, Tuple

import numpy as np
import pytest

import loomrt
import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
HEADER = os.path.join(CSRC, "include", "loomrt.h")
BINDINGS = os.path.join(ROOT, "bindings")
CS_DIR = os.path.join(BINDINGS, "csharp")
CTYPES_PY = os.path.join(BINDINGS, "python", "loomrt_ctypes.py")

FINISH = {"stop": 1, "length": 2, "context": 3}


# ---- header parsing ---------------------------------------------------------------------------


def header_functions() -> Dict[str, int]:
    """name -> number of parameters of every LRT_API function in loomrt.h."""
    text = re.sub(r"/\*.*?\*/", "", open(HEADER, encoding="utf-8").read(), flags=re.S)
    out: Dict[str, int] = {}
    for m in re.finditer(r"LRT_API\s+[^;(]*?\b(lrt_\w+)\s*\(([^;]*?)\)\s*;", text, re.S):
        params = m.group(2).strip()
        out[m.group(1)] = 0 if params in ("", "void") else params.count(",") + 1
    return out


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def parse_summary(stderr: str) -> Tuple[List[int], str, int]:
    ids = re.search(r"^ids:(.*)$", stderr, re.M)
    h = re.search(r"^fnv1a64: ([0-9a-f]{16})$", stderr, re.M)
    fin = re.search(r"^finish: (\d+)$", stderr, re.M)
    assert ids and h and fin, stderr
    return [int(x) for x in ids.group(1).split()], h.group(1), int(fin.group(1))


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def libdir(tmp_path_factory) -> str:
    build = str(tmp_path_factory.mktemp("bindings-lib"))
    r = subprocess.run(["make", "-C", CSRC, f"BUILD={build}"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert os.path.isfile(os.path.join(build, "libloomrt.so"))
    return build


@pytest.fixture(scope="module")
def c_example(libdir, tmp_path_factory) -> str:
    exe = str(tmp_path_factory.mktemp("c-example") / "example")
    r = subprocess.run(["cc", "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(CSRC, "include"),
                        os.path.join(BINDINGS, "c", "example.c"), "-L", libdir, "-lloomrt",
                        f"-Wl,-rpath,{libdir}", "-o", exe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return exe


@pytest.fixture(scope="module")
def cs_example(libdir, tmp_path_factory) -> str:
    """Program.cs + Loomrt.cs compiled by Mono's mcs; libloomrt.so next to the .exe."""
    for tool in ("mcs", "mono"):
        assert shutil.which(tool), f"{tool} is missing: tests/install-deps.sh installs mono-mcs and mono-runtime"
    out = tmp_path_factory.mktemp("cs-example")
    exe = str(out / "example.exe")
    r = subprocess.run(["mcs", "-nologo", "-warnaserror+", f"-out:{exe}", os.path.join(CS_DIR, "Loomrt.cs"),
                        os.path.join(CS_DIR, "Program.cs")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    shutil.copy(os.path.join(libdir, "libloomrt.so"), str(out / "libloomrt.so"))
    return exe


@pytest.fixture(scope="module")
def lc(libdir):
    """The single-file ctypes binding, imported from its path, on the freshly built library."""
    spec = importlib.util.spec_from_file_location("loomrt_ctypes", CTYPES_PY)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    mod.LIB = mod.Library(os.path.join(libdir, "libloomrt.so"))
    assert mod.LIB.missing == []
    return mod


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> str:
    """Seeded llama with a complete byte-level BPE vocabulary (264 tokens): random weights
    emit random bytes, so characters get split across tokens and broken UTF-8 appears."""
    cfg = dict(models.SEEDED_CONFIG, vocab_size=models.VOCAB, eos_token_id=models.EOS_ID)
    tokens, merges = models.byte_level_vocab()
    path = str(tmp_path_factory.mktemp("tiny-bytes") / "tiny.gguf")
    return models.write_llama_gguf(path, models.seeded_llama_tensors(cfg, 77), cfg, tokens, merges,
                                   meta_edit=_gpt2_pre)


def _gpt2_pre(kv) -> None:
    """GPT-2's pre-tokenizer (the writer's default is llama.cpp's "default")."""
    import gguf

    kv["tokenizer.ggml.pre"] = gguf.GGUFValue(value="gpt-2", type=gguf.GGUFValueType.STRING)


@pytest.fixture(scope="module")
def real_gguf() -> str:
    return loomrt.default_model_path()


_PY_MODELS: Dict[str, loomrt.Model] = {}


def python_reference(path: str, prompt: str, max_tokens: int, chat: bool, **sampling):
    if path not in _PY_MODELS:
        _PY_MODELS[path] = loomrt.load(path, threads=1)
    m = _PY_MODELS[path]
    g = m.chat(prompt, max_tokens, **sampling) if chat else m.generate(prompt, max_tokens, **sampling)
    return list(g.token_ids), fnv1a64(g.text.encode("utf-8")), FINISH[g.finish_reason]


# (model, prompt, max_tokens, chat, sampling)
CASES = [
    ("tiny", "Grüße, world 🌍!", 40, False, dict(temperature=1.0, seed=1)),
    ("tiny", "Ünïcödé ✓ text", 40, False, dict(temperature=1.5, seed=2, top_k=50)),
    ("tiny", "greedy", 30, False, {}),
    ("tiny", "Hello there", 30, True, dict(temperature=0.9, seed=3, top_p=0.9)),
    ("real", "The capital of France is", 24, False, {}),
    ("real", "What is 2+2?", 24, True, {}),
    ("real", "Write a haiku about looms.", 20, True, dict(temperature=0.8, seed=5, top_p=0.95, top_k=40)),
]
CASE_IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


def cli_args(path: str, prompt: str, max_tokens: int, chat: bool, sampling: dict) -> List[str]:
    args = [path, prompt, "--max-tokens", str(max_tokens)]
    for k, v in sampling.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    return args + (["--chat"] if chat else [])


def model_path(name: str, tiny_gguf: str, real_gguf: str) -> str:
    return tiny_gguf if name == "tiny" else real_gguf


# ---- the three bindings against the Python package ---------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_c_example_matches_python(case, c_example, tiny_gguf, real_gguf) -> None:
    name, prompt, n, chat, sampling = case
    path = model_path(name, tiny_gguf, real_gguf)
    want = python_reference(path, prompt, n, chat, **sampling)
    # pull API from a path; callback API from memory (the tiny model only, to keep it quick)
    modes = [[], ["--callback", "--memory"]] if name == "tiny" else [["--memory"] if chat else []]
    for extra in modes:
        r = subprocess.run([c_example, *cli_args(path, prompt, n, chat, sampling), *extra], capture_output=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
        got = parse_summary(r.stderr.decode())
        assert got == want, (extra, got, want)
        assert fnv1a64(r.stdout) == want[1]  # the streamed pieces are the text


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_ctypes_binding_matches_python(case, lc, tiny_gguf, real_gguf) -> None:
    name, prompt, n, chat, sampling = case
    path = model_path(name, tiny_gguf, real_gguf)
    want = python_reference(path, prompt, n, chat, **sampling)
    model = lc.Model(lc.LIB, path)
    params = {("repeat_penalty" if k == "repetition_penalty" else k): v for k, v in sampling.items()}
    text: bytes = prompt.encode()
    flags = lc.PROMPT_ADD_SPECIAL | lc.PROMPT_PARSE_SPECIAL
    if chat:
        text = model.apply_chat([{"role": "user", "content": prompt}])
        assert text.decode() == _PY_MODELS[path].apply_chat_template(prompt)
        flags = lc.PROMPT_PARSE_SPECIAL
    with lc.Session(model, threads=2) as s:
        s.configure(**params)
        pieces = list(s.stream(text, n, flags))  # pull API
        ids = [t for t, _ in pieces if t >= 0]
        got = (ids, fnv1a64(b"".join(p for _, p in pieces)), s.info(lc.SESSION_FINISH_REASON))
        assert got == want
        assert s.info(lc.SESSION_GENERATED_TOKENS) == len(ids)
        # every piece is complete UTF-8 (nothing split), and the whole equals detokenize(ids)
        for _, p in pieces:
            p.decode("utf-8")
        assert b"".join(p for _, p in pieces) == model.detokenize(ids)
        # push API: same tokens
        s.configure(max_tokens=-1)
        ids2, text2 = s.generate(text, n, flags=flags)
        assert (ids2, fnv1a64(text2), s.info(lc.SESSION_FINISH_REASON)) == want
    model.close()


def test_ctypes_script_matches_c_example(lc, libdir, c_example, tiny_gguf) -> None:
    args = cli_args(tiny_gguf, "Grüße, world 🌍!", 40, False, dict(temperature=1.0, seed=1))
    env = dict(os.environ, LOOMRT_LIBRARY=os.path.join(libdir, "libloomrt.so"))
    r = subprocess.run([sys.executable, CTYPES_PY, *args, "--memory"], capture_output=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
    c = subprocess.run([c_example, *args], capture_output=True, timeout=120)
    assert parse_summary(r.stderr.decode()) == parse_summary(c.stderr.decode())
    assert r.stdout == c.stdout


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_csharp_binding_matches_python(case, cs_example, tiny_gguf, real_gguf) -> None:
    name, prompt, n, chat, sampling = case
    path = model_path(name, tiny_gguf, real_gguf)
    want = python_reference(path, prompt, n, chat, **sampling)
    modes = [[], ["--callback", "--memory"]] if name == "tiny" else [["--callback"] if chat else []]
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(cs_example))
    for extra in modes:
        r = subprocess.run(["mono", cs_example, *cli_args(path, prompt, n, chat, sampling), *extra],
                           capture_output=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
        got = parse_summary(r.stderr.decode())
        assert got == want, (extra, got, want)
        assert fnv1a64(r.stdout) == want[1]


# ---- no drift between the header and the bindings ------------------------------------------------


def test_every_header_function_is_in_every_binding() -> None:
    funcs = header_functions()
    assert len(funcs) >= 40 and "lrt_session_step" in funcs and "lrt_tokenize" in funcs
    problems: List[str] = []

    # cffi: the cdef derived from the header, and the compiled module
    sys.path.insert(0, os.path.join(ROOT, "loomrt"))
    try:
        import _build_ffi  # noqa: the build script, importable as a module
        from cffi import FFI

        cdef = _build_ffi.cdef_from_header(open(HEADER, encoding="utf-8").read())
        ffi = FFI()
        ffi.cdef(cdef)  # the derived cdef parses
        try:  # cffi's parsed declarations ("function <name>")
            declared = {k.split(" ", 1)[1] for k in ffi._parser._declarations if k.startswith("function ")}
        except AttributeError:  # another cffi version: the cdef text itself
            declared = set(re.findall(r"\b(lrt_\w+)\s*\(", cdef))
    finally:
        sys.path.pop(0)
    from loomrt._loomrt_cffi import lib as cffi_lib

    for name in funcs:
        if name not in declared:
            problems.append(f"cffi cdef: {name} missing")
        if not hasattr(cffi_lib, name):
            problems.append(f"cffi module: {name} missing (rebuild with pip install -e .)")

    # ctypes: SIGNATURES, with the header's parameter count
    spec = importlib.util.spec_from_file_location("loomrt_ctypes_drift", CTYPES_PY)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    for name, n in funcs.items():
        if name not in mod.SIGNATURES:
            problems.append(f"ctypes binding: {name} missing")
        elif len(mod.SIGNATURES[name][1]) != n:
            problems.append(f"ctypes binding: {name} has {len(mod.SIGNATURES[name][1])} parameters, the header {n}")
    for name in mod.SIGNATURES:
        if name not in funcs:
            problems.append(f"ctypes binding: {name} is not in loomrt.h")

    # C#: the DllImport declarations of Native
    cs = open(os.path.join(CS_DIR, "Loomrt.cs"), encoding="utf-8").read()
    cs_decls = {m.group(1): m.group(2) for m in re.finditer(r"static extern [\w\[\]]+ (lrt_\w+)\(([^)]*)\);", cs)}
    for name, n in funcs.items():
        if name not in cs_decls:
            problems.append(f"C# binding: {name} missing")
        else:
            params = cs_decls[name].strip()
            got = 0 if not params else params.count(",") + 1
            if got != n:
                problems.append(f"C# binding: {name} has {got} parameters, the header {n}")
    for name in cs_decls:
        if name not in funcs:
            problems.append(f"C# binding: {name} is not in loomrt.h")
    assert not problems, "bindings drifted from loomrt.h:\n" + "\n".join(problems)


# ---- chat templates: C rendering == Jinja rendering of the real templates --------------------------

CHATML_PLAIN = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CHATML_DEFAULT_SYSTEM = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                         "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                         "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                         "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                         "{% endif %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
          "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
          "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
          "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
          "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
          "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
          "{% endfor %}")
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
          "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
          "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
# not renderable in C: Mistral's [INST] without <<SYS>>, and a ChatML variant adding bos/eos
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] "
           "== 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}")
CHATML_BOS = ("{% if messages[0]['role'] == 'user' or messages[0]['role'] == 'system' %}{{ bos_token }}{% endif %}"
              "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
              "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
              "{% elif messages[-1]['role'] == 'assistant' %}{{ eos_token }}{% endif %}")

FAMILIES = [("chatml", CHATML_PLAIN, 1), ("chatml-default-system", CHATML_DEFAULT_SYSTEM, 1), ("llama3", LLAMA3, 2),
            ("llama2", LLAMA2, 3), ("zephyr", ZEPHYR, 4)]

CONVERSATIONS = [
    [{"role": "user", "content": "Hello, how are you?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  Hi there \n"}],
    [{"role": "user", "content": "Grüße 🌍"}, {"role": "assistant", "content": "\u3000Hallo!\u2003"},
     {"role": "user", "content": "\tAgain?\r\n"}],
    [{"role": "system", "content": "\nsys\n"}, {"role": "user", "content": " \n "}],
    [{"role": "system", "content": ""}, {"role": "user", "content": ""}, {"role": "assistant", "content": "ok"},
     {"role": "user", "content": "x\u00a0"}],
]


def _gguf_with_template(tmp_path, template: str) -> str:
    import gguf

    cfg = dict(models.MICRO_CONFIG)

    def edit(kv):
        kv["tokenizer.chat_template"] = gguf.GGUFValue(value=template, type=gguf.GGUFValueType.STRING)
        _gpt2_pre(kv)

    n_merge = 4
    tokens, merges = models.byte_level_vocab(cfg["vocab_size"] - n_merge,
                                              [("#", "$"), ("%", "&"), ("#$", "%&"), ("(", ")")])
    path = str(tmp_path / "chat.gguf")
    return models.write_llama_gguf(path, models.seeded_llama_tensors(cfg, 5), cfg, tokens, merges, meta_edit=edit)


@pytest.mark.parametrize("family,template,fmt", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_chat_templates_equal_jinja(family, template, fmt, lc, tmp_path) -> None:
    path = _gguf_with_template(tmp_path, template)
    py = loomrt.load(path, threads=1)
    model = lc.Model(lc.LIB, path)
    assert model.chat_format() == fmt
    assert model.string("chat_template") == template
    for conv in CONVERSATIONS:
        for gen in (True, False):
            try:
                want = py.tokenizer.apply_chat_template(conv, add_generation_prompt=gen)
            except loomrt.InvalidArgumentError:  # the template rejects it (Llama 2: roles must alternate)
                with pytest.raises(lc.LoomrtError) as e:
                    model.apply_chat(conv, add_generation_prompt=gen)
                assert e.value.status == -1
                continue
            got = model.apply_chat(conv, add_generation_prompt=gen).decode("utf-8")
            assert got == want, (conv, gen)
            # the explicit format gives the same text as the detected one
            assert model.apply_chat(conv, fmt, gen).decode("utf-8") == want
    model.close()


def test_unknown_templates_are_reported(lc, tmp_path) -> None:
    for i, template in enumerate([MISTRAL, CHATML_BOS, "{{ messages[0]['content'] }}"]):
        d = tmp_path / str(i)
        d.mkdir()
        model = lc.Model(lc.LIB, _gguf_with_template(d, template))
        with pytest.raises(lc.LoomrtError) as e:
            model.chat_format()
        assert e.value.status == -5 and "explicit" in str(e.value)
        with pytest.raises(lc.LoomrtError):
            model.apply_chat([{"role": "user", "content": "hi"}])
        # an explicit family still renders
        assert model.apply_chat([{"role": "user", "content": "hi"}], lc.CHAT_CHATML) == \
            b"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        model.close()


def test_chat_without_model_and_small_buffers(lc) -> None:
    import ctypes

    lib = lc.LIB
    roles = (ctypes.c_char_p * 2)(b"system", b"user")
    contents = (ctypes.c_char_p * 2)(b"S", b"U")
    rl = (ctypes.c_size_t * 2)(6, 4)
    cl = (ctypes.c_size_t * 2)(1, 1)
    need = ctypes.c_size_t()
    want = b"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user" \
           b"<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    assert lib.lrt_chat_apply(None, lc.CHAT_LLAMA3, 2, roles, rl, contents, cl, 1, None, 0, ctypes.byref(need)) == -10
    assert need.value == len(want)
    buf = ctypes.create_string_buffer(len(want) - 1)
    assert lib.lrt_chat_apply(None, lc.CHAT_LLAMA3, 2, roles, rl, contents, cl, 1, buf, len(want) - 1,
                              ctypes.byref(need)) == -10
    buf = ctypes.create_string_buffer(len(want))
    assert lib.lrt_chat_apply(None, lc.CHAT_LLAMA3, 2, roles, rl, contents, cl, 1, buf, len(want),
                              ctypes.byref(need)) == 0
    assert buf.raw == want
    assert lib.lrt_chat_apply(None, lc.CHAT_MODEL, 2, roles, rl, contents, cl, 1, buf, len(want),
                              ctypes.byref(need)) == -1
    assert lib.lrt_chat_apply(None, 99, 2, roles, rl, contents, cl, 1, buf, len(want), ctypes.byref(need)) == -1


# ---- models from memory, pull API state, threads ------------------------------------------------


def test_memory_open_equals_path_open(lc, seeded_folder, tiny_gguf) -> None:
    import ctypes

    lib = lc.LIB
    ids = [1, 5, 9, 200, 17, 3]

    def logits(model) -> np.ndarray:
        with lc.Session(model, threads=1) as s:
            arr = (ctypes.c_int32 * len(ids))(*ids)
            lib.check(lib.lrt_session_eval(s._h, arr, len(ids), 1))
            p = ctypes.POINTER(ctypes.c_float)()
            rows, vocab = ctypes.c_int64(), ctypes.c_int64()
            lib.check(lib.lrt_session_logits(s._h, ctypes.byref(p), ctypes.byref(rows), ctypes.byref(vocab)))
            return np.ctypeslib.as_array(p, shape=(rows.value, vocab.value)).copy()

    files = {f: open(os.path.join(seeded_folder, f), "rb").read() for f in os.listdir(seeded_folder)}
    ref = logits(lc.Model(lib, seeded_folder))
    assert np.array_equal(logits(lc.Model(lib, files=files)), ref)
    # borrowed buffers (no copy): the caller keeps them alive until the model is closed
    blob = open(tiny_gguf, "rb").read()
    keep = ctypes.create_string_buffer(blob, len(blob))
    name = b"weights.gguf"
    h = ctypes.c_void_p()
    lib.check(lib.lrt_model_open_memory(1, (ctypes.c_char_p * 1)(name), (ctypes.c_size_t * 1)(len(name)),
                                        (ctypes.c_void_p * 1)(ctypes.cast(keep, ctypes.c_void_p)),
                                        (ctypes.c_size_t * 1)(len(blob)), 0, ctypes.byref(h)))
    borrowed = lc.Model.__new__(lc.Model)
    borrowed.lib, borrowed._h = lib, h
    assert np.array_equal(logits(borrowed), logits(lc.Model(lib, tiny_gguf)))
    assert borrowed.tokenize("Grüße") == lc.Model(lib, tiny_gguf).tokenize("Grüße")
    borrowed.close()
    # errors: missing config, two GGUFs, bad flags
    with pytest.raises(lc.LoomrtError) as e:
        lc.Model(lib, files={"model.safetensors": files["model.safetensors"]})
    assert e.value.status == -2 and "config.json" in str(e.value)
    with pytest.raises(lc.LoomrtError):
        lc.Model(lib, files={"a.gguf": blob, "b.gguf": blob})
    with pytest.raises(lc.LoomrtError):
        lc.Model(lib, files={"x.gguf": blob[: len(blob) // 2]})


def test_pull_api_states(lc, tiny_gguf, seeded_folder) -> None:
    model = lc.Model(lc.LIB, tiny_gguf)
    s = lc.Session(model, threads=1)
    with pytest.raises(lc.LoomrtError) as e:
        s.step()
    assert e.value.status == -8  # no prompt yet
    s.configure(temperature=1.0, seed=4, max_tokens=5)
    s.prompt("abc")
    n_prompt = s.info(lc.SESSION_PROMPT_TOKENS)
    got = []
    while True:
        t, _ = s.step()
        if t < 0:
            break
        got.append(t)
    assert len(got) <= 5 and s.info(lc.SESSION_FINISH_REASON) in (lc.FINISH_EOS, lc.FINISH_LENGTH)
    assert s.step() == (-1, b"")  # stays finished
    # continuing with KEEP: the last given token is evaluated first, then the new prompt
    pos = lc.LIB.lrt_session_position(s._h)
    more = model.tokenize(" more", add_special=False)
    s.prompt(" more", lc.PROMPT_PARSE_SPECIAL | lc.PROMPT_KEEP)
    carried = 1 if s.info(lc.SESSION_FINISH_REASON) == lc.FINISH_NONE and len(got) == 5 else 0
    assert lc.LIB.lrt_session_position(s._h) in (pos + len(more), pos + len(more) + 1)
    assert n_prompt == len(model.tokenize("abc")) and carried in (0, 1)
    # the session changed under the generation: step refuses
    lc.LIB.check(lc.LIB.lrt_session_reset(s._h))
    with pytest.raises(lc.LoomrtError) as e:
        s.step()
    assert e.value.status == -8
    # a prompt that does not fit the context
    small = lc.Session(model, context=4, threads=1)
    with pytest.raises(lc.LoomrtError) as e:
        small.prompt("a long prompt that needs many tokens")
    assert e.value.status == -7
    # a model without tokenizer: text prompts fail, token prompts work
    bare = lc.Model(lc.LIB, seeded_folder)
    with lc.Session(bare, threads=1) as b:
        with pytest.raises(lc.LoomrtError) as e:
            b.prompt("hi")
        assert e.value.status == -2
        b.configure(max_tokens=3)
        b.prompt_tokens([1, 2, 3])
        toks = [b.step() for _ in range(4)]
        assert [t for t, _ in toks[:3]] == list(_PY_MODEL_IDS(seeded_folder, [1, 2, 3], 3))
        assert toks[3] == (-1, b"") and all(p == b"" for _, p in toks)
    # the callback stops the generation
    with lc.Session(model, threads=1) as c:
        c.configure(temperature=1.0, seed=9)
        seen: List[int] = []
        ids, _ = c.generate("xyz", 50, lambda t, p: (seen.append(t), len(seen) >= 3)[1])
        assert len(ids) == 3 and c.info(lc.SESSION_FINISH_REASON) == lc.FINISH_CALLBACK


def _PY_MODEL_IDS(path: str, ids: List[int], n: int) -> List[int]:
    return list(loomrt.load(path, threads=1).stream_tokens(ids, n))


def test_one_model_many_threads(lc, tiny_gguf) -> None:
    model = lc.Model(lc.LIB, tiny_gguf)
    jobs = [("Grüße 🌍", s) for s in range(6)]

    def run(prompt: str, seed: int):
        with lc.Session(model, threads=1) as s:
            s.configure(temperature=1.0, seed=seed)
            return s.generate(prompt, 24)

    alone = [run(p, s) for p, s in jobs]
    results: Dict[int, object] = {}

    def worker(i: int) -> None:
        results[i] = run(*jobs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(jobs))] == alone
    model.close()


# ---- a HuggingFace folder with tokenizer.json and tokenizer_config.json -------------------------


@pytest.fixture(scope="module")
def hf_text_folder(tmp_path_factory) -> str:
    """Seeded llama folder + a byte-level BPE tokenizer.json made with HF tokenizers (two added
    special tokens) + tokenizer_config.json naming <|im_end|> the eos and holding a ChatML
    template with a default system message. The <|im_end|> row of the LM head is scaled so
    that some sampled generations end on it."""
    import json

    from safetensors.numpy import save_file
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers import models as tm

    folder = str(tmp_path_factory.mktemp("hf-text") / "chat-llama")
    cfg = dict(models.SEEDED_CONFIG, vocab_size=models.VOCAB + 2)
    cfg.pop("bos_token_id")
    tensors = models.seeded_llama_tensors(cfg, 11)
    tensors["lm_head.weight"][models.VOCAB + 1] *= 2.5
    models.write_folder(folder, cfg)
    save_file(tensors, os.path.join(folder, "model.safetensors"))
    tokens, merges = models.byte_level_vocab()
    tok = Tokenizer(tm.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|im_start|>", special=True), AddedToken("<|im_end|>", special=True)])
    tok.save(os.path.join(folder, "tokenizer.json"))
    template = CHATML_DEFAULT_SYSTEM.replace("You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                                             "Be nice.")
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"eos_token": "<|im_end|>", "chat_template": template}, f)
    return folder


def test_hf_folder_with_tokenizer(lc, hf_text_folder, c_example, cs_example) -> None:
    py = loomrt.load(hf_text_folder, threads=1)
    assert py.eos_token_ids == [models.VOCAB + 1]
    files = {f: open(os.path.join(hf_text_folder, f), "rb").read() for f in os.listdir(hf_text_folder)}
    reasons = set()
    for model in (lc.Model(lc.LIB, hf_text_folder), lc.Model(lc.LIB, files=files)):
        assert model.chat_format() == lc.CHAT_CHATML
        text = model.apply_chat([{"role": "user", "content": "Hi ü"}])
        assert text.decode() == py.apply_chat_template("Hi ü") and b"Be nice." in text
        for seed in range(8):
            want = python_reference(hf_text_folder, "Hi ü", 40, True, temperature=1.0, seed=seed)
            with lc.Session(model, threads=1) as s:
                s.configure(temperature=1.0, seed=seed)
                pieces = list(s.stream(text, 40, lc.PROMPT_PARSE_SPECIAL))
                got = ([t for t, _ in pieces if t >= 0], fnv1a64(b"".join(p for _, p in pieces)),
                       s.info(lc.SESSION_FINISH_REASON))
            assert got == want, seed
            reasons.add(got[2])
        model.close()
    assert reasons == {lc.FINISH_EOS, lc.FINISH_LENGTH}  # the eos of tokenizer_config.json ends generations
    # the C and C# examples on the folder (chat, sampled)
    args = cli_args(hf_text_folder, "Hi ü", 40, True, dict(temperature=1.0, seed=2))
    want = python_reference(hf_text_folder, "Hi ü", 40, True, temperature=1.0, seed=2)
    r = subprocess.run([c_example, *args], capture_output=True, timeout=120)
    assert parse_summary(r.stderr.decode()) == want
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(cs_example))
    r = subprocess.run(["mono", cs_example, *args], capture_output=True, timeout=120, env=env)
    assert parse_summary(r.stderr.decode()) == want


def test_ctypes_finds_the_packaged_library(lc, monkeypatch) -> None:
    """Without a path or LOOMRT_LIBRARY the binding finds the library installed with the
    loomrt package (loomrt.library_path()), without importing loomrt's cffi module."""
    monkeypatch.delenv("LOOMRT_LIBRARY", raising=False)
    assert lc._library_candidates(None)[0] == loomrt.library_path()
    lib = lc.Library()
    assert lib.version() == loomrt.__version__ and lib.missing == []
    monkeypatch.setenv("LOOMRT_LIBRARY", "/nonexistent/libloomrt.so")
    with pytest.raises(OSError):
        lc.Library()
