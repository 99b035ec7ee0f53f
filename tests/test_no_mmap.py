"""Reading the weights into memory instead of mapping them (issue 11 item 5).

A model's weights are memory-mapped by default: pages are read from the file when first
touched. When the file is truncated or replaced in place while a process uses it (``cp
new.gguf model.gguf`` under a running server), touching a page past the new end kills the
process with SIGBUS (llama.cpp has the same weakness). ``load(..., mmap=False)`` /
``--no-mmap`` / ``LRT_OPEN_NO_MMAP`` read the files into memory at open: the same bits, and
the process no longer depends on the file after the load.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import loomrt
import models
from loomrt import _lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDS = [1, 5, 9, 200, 17, 3, 64, 128, 255, 0, 42, 7]


def test_flag_value():
    assert _lib.lib.LRT_OPEN_NO_MMAP == 32


@pytest.mark.parametrize("kind", ["gguf", "folder", "sharded"])
def test_same_bits_without_mmap(kind, seeded_folder, tmp_path):
    if kind == "gguf":
        from safetensors.numpy import load_file

        path = models.write_llama_gguf(str(tmp_path / "m.gguf"), load_file(os.path.join(seeded_folder, "model.safetensors")),
                                       models.SEEDED_CONFIG)
    elif kind == "folder":
        path = seeded_folder
    else:
        from safetensors.numpy import load_file, save_file
        import json

        path = str(tmp_path / "sharded")
        os.makedirs(path)
        t = load_file(os.path.join(seeded_folder, "model.safetensors"))
        names = sorted(t)
        wm = {}
        for i, part in enumerate((names[::2], names[1::2])):
            fname = f"model-0000{i + 1}-of-00002.safetensors"
            save_file({n: t[n] for n in part}, os.path.join(path, fname))
            wm.update({n: fname for n in part})
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            json.dump({"weight_map": wm}, f)
        shutil.copy(os.path.join(seeded_folder, "config.json"), path)
    mapped = loomrt.load(path, threads=2)
    read = loomrt.load(path, threads=2, mmap=False)
    assert read.mmap is False and mapped.mmap is True
    assert np.array_equal(mapped.logits(IDS), read.logits(IDS))
    assert mapped.generate(IDS, 8, temperature=0.9, seed=3).token_ids == read.generate(IDS, 8, temperature=0.9, seed=3).token_ids
    # the weights now live in loomrt's memory: at least the file's size more than when mapped
    size = os.path.getsize(path) if kind == "gguf" else sum(
        os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(".safetensors"))
    assert read.info["resident_bytes"] >= mapped.info["resident_bytes"] + size


def test_quantize_at_load_without_mmap(seeded_folder):
    a = loomrt.load(seeded_folder, threads=1, quantize="q8_0")
    b = loomrt.load(seeded_folder, threads=1, quantize="q8_0", mmap=False)
    assert np.array_equal(a.logits(IDS), b.logits(IDS))


def test_mmap_argument_is_checked(seeded_folder):
    with pytest.raises(loomrt.InvalidArgumentError, match="mmap"):
        loomrt.load(seeded_folder, mmap="no")


def test_c_open_flag(seeded_folder):
    """lrt_model_open accepts the flag; lrt_model_open_memory accepts it too (a no-op: the
    buffers are the caller's)."""
    ffi, lib = _lib.ffi, _lib.lib
    out = ffi.new("lrt_model **")
    p = seeded_folder.encode()
    _lib.check(lib.lrt_model_open(p, len(p), lib.LRT_OPEN_NO_MMAP, out))
    lib.lrt_model_close(out[0])
    assert lib.lrt_model_open(p, len(p), 1 << 30, out) == lib.LRT_ERR_INVALID_ARGUMENT  # unknown bit


CHILD = r"""
import hashlib, sys
sys.path.insert(0, sys.argv[3])
import loomrt
m = loomrt.load(sys.argv[1], threads=1, mmap=sys.argv[2] == "mmap")
ids = list(range(1, 40))
a = hashlib.sha256(m.logits(ids).tobytes()).hexdigest()
print("ready", flush=True)
sys.stdin.readline()          # the parent replaces the file now
b = hashlib.sha256(m.logits(ids).tobytes()).hexdigest()
print("same" if a == b else "different", flush=True)
"""


def _run_while_replacing(path: str, mode: str, replace) -> subprocess.CompletedProcess:
    p = subprocess.Popen([sys.executable, "-c", CHILD, path, mode, ROOT], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    replace(path)
    out, err = p.communicate("go\n", timeout=120)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(4096)  # header kept, weights gone


def _overwrite(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "wb") as f:  # what `cp other.gguf model.gguf` does: truncate, then write
        f.write(os.urandom(size))


@pytest.mark.skipif(sys.platform == "win32", reason="Windows refuses to truncate or rewrite a mapped file")
@pytest.mark.parametrize("replace", [_truncate, _overwrite], ids=["truncate", "overwrite"])
def test_file_replaced_under_a_running_process(seeded_folder, tmp_path, replace):
    from safetensors.numpy import load_file

    src = models.write_llama_gguf(str(tmp_path / "src.gguf"), load_file(os.path.join(seeded_folder, "model.safetensors")),
                                  models.SEEDED_CONFIG)
    path = str(tmp_path / "model.gguf")
    shutil.copy(src, path)
    r = _run_while_replacing(path, "read", replace)
    assert r.returncode == 0 and r.stdout.split()[-1] == "same", (r.returncode, r.stdout, r.stderr[-2000:])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the SIGBUS of a truncated mapping is Linux behaviour here")
def test_mapped_file_truncated_kills_the_process(seeded_folder, tmp_path):
    """The weakness documented in README.md: a mapped model whose file is truncated under the
    process dies by SIGBUS at the next touch of a lost page (the reason for mmap=False)."""
    from safetensors.numpy import load_file

    path = models.write_llama_gguf(str(tmp_path / "model.gguf"), load_file(os.path.join(seeded_folder, "model.safetensors")),
                                   models.SEEDED_CONFIG)
    r = _run_while_replacing(path, "mmap", _truncate)
    assert r.returncode == -signal.SIGBUS, (r.returncode, r.stdout, r.stderr[-2000:])


def test_cli_no_mmap(micro_gguf, capsys):
    from loomrt import cli

    outs = []
    for extra in ([], ["--no-mmap"]):
        assert cli.main(["generate", micro_gguf, "#$%&()", "-n", "6", "--temperature", "1", "-q"] + extra) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]
