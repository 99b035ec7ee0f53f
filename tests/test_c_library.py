"""The C core without Python: the standalone build (make -C csrc), its C tests, and the
public API through ctypes on the shared library."""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import loomrt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", CSRC, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def libloomrt(tmp_path_factory) -> ctypes.CDLL:
    if shutil.which("make") is None:
        pytest.fail("make is required to build the standalone C library")
    build = str(tmp_path_factory.mktemp("cbuild"))
    r = _make(f"BUILD={build}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stderr.lower(), r.stderr
    return ctypes.CDLL(os.path.join(build, "libloomrt.so"))


def test_c_unit_tests_pass(tmp_path) -> None:
    r = subprocess.run(["make", "-C", os.path.join(CSRC, "tests"), f"BUILD={tmp_path}"], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "all kernel checks passed" in r.stdout
    assert "a perturbed lane order is detected" in r.stdout


def test_exported_symbols_are_exactly_the_header(libloomrt, tmp_path) -> None:
    header = open(os.path.join(CSRC, "include", "loomrt.h"), encoding="utf-8").read()
    declared = set(re.findall(r"LRT_API\s+[^;(]*?\b(lrt_\w+)\s*\(", header))
    out = subprocess.run(["nm", "-D", "--defined-only", libloomrt._name], capture_output=True, text=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if " T " in line}
    assert declared and exported == declared


def test_ctypes_logits_equal_python(libloomrt, seeded_folder) -> None:
    lib = libloomrt
    lib.lrt_last_error.restype = ctypes.c_char_p
    model = ctypes.c_void_p()
    path = seeded_folder.encode()
    assert lib.lrt_model_open(path, ctypes.c_size_t(len(path)), 0, ctypes.byref(model)) == 0, lib.lrt_last_error()
    sess = ctypes.c_void_p()
    assert lib.lrt_session_new(model, ctypes.c_int64(0), 3, ctypes.byref(sess)) == 0
    ids = [1, 5, 9, 200, 17, 3, 3, 42]
    arr = (ctypes.c_int32 * len(ids))(*ids)
    assert lib.lrt_session_eval(sess, arr, ctypes.c_int64(len(ids)), 1) == 0
    ptr = ctypes.POINTER(ctypes.c_float)()
    rows, vocab = ctypes.c_int64(), ctypes.c_int64()
    assert lib.lrt_session_logits(sess, ctypes.byref(ptr), ctypes.byref(rows), ctypes.byref(vocab)) == 0
    got = np.ctypeslib.as_array(ptr, shape=(rows.value, vocab.value)).copy()
    # errors: status code plus message, no crash
    bad = b"/nonexistent/model"
    other = ctypes.c_void_p()
    assert lib.lrt_model_open(bad, ctypes.c_size_t(len(bad)), 0, ctypes.byref(other)) == -2
    assert b"not found" in lib.lrt_last_error()
    assert lib.lrt_session_eval(sess, arr, ctypes.c_int64(0), 0) == -1
    lib.lrt_session_free(sess)
    lib.lrt_model_close(model)
    ref = loomrt.load(seeded_folder, threads=1).logits(ids)
    assert np.array_equal(got, ref)


def test_c_batch_equals_single_sessions(libloomrt, seeded_folder) -> None:
    """lrt_batch_* from C (the standalone library through ctypes): three sessions at
    different positions advanced together get the logits each gets alone."""
    lib = libloomrt
    lib.lrt_last_error.restype = ctypes.c_char_p
    lib.lrt_batch_count.restype = ctypes.c_int64
    model = ctypes.c_void_p()
    path = seeded_folder.encode()
    assert lib.lrt_model_open(path, ctypes.c_size_t(len(path)), 0, ctypes.byref(model)) == 0
    batch = ctypes.c_void_p()
    assert lib.lrt_batch_new(model, 2, ctypes.byref(batch)) == 0, lib.lrt_last_error()
    seqs = [[1, 5, 9, 200, 17], [3, 3], [42, 7, 7, 8, 9, 10, 11]]
    sess = []
    for _ in seqs:
        s = ctypes.c_void_p()
        assert lib.lrt_session_new(model, ctypes.c_int64(0), 1, ctypes.byref(s)) == 0
        sess.append(s)
    ref = loomrt.load(seeded_folder, threads=1)
    got = [[] for _ in seqs]
    # step 1: whole prompts except the last token; step 2: the last tokens, in another order
    for step, order in ((0, [0, 1, 2]), (1, [2, 0, 1])):
        for i in order:
            part = seqs[i][:-1] if step == 0 else seqs[i][-1:]
            arr = (ctypes.c_int32 * len(part))(*part)
            assert lib.lrt_batch_add(batch, sess[i], arr, ctypes.c_int64(len(part))) == 0
        assert lib.lrt_batch_count(batch) == 3
        assert lib.lrt_batch_eval(batch) == 0, lib.lrt_last_error()
        assert lib.lrt_batch_count(batch) == 0
        for i, s in enumerate(sess):
            ptr = ctypes.POINTER(ctypes.c_float)()
            rows, vocab = ctypes.c_int64(), ctypes.c_int64()
            assert lib.lrt_session_logits(s, ctypes.byref(ptr), ctypes.byref(rows), ctypes.byref(vocab)) == 0
            assert rows.value == 1
            got[i].append(np.ctypeslib.as_array(ptr, shape=(vocab.value,)).copy())
    arr = (ctypes.c_int32 * 1)(1)
    assert lib.lrt_batch_add(batch, sess[0], arr, ctypes.c_int64(1)) == 0
    assert lib.lrt_batch_add(batch, sess[0], arr, ctypes.c_int64(1)) == -1  # once per eval
    assert b"already in the batch" in lib.lrt_last_error()
    assert lib.lrt_batch_clear(batch) == 0 and lib.lrt_batch_count(batch) == 0
    for s in sess:
        lib.lrt_session_free(s)
    lib.lrt_batch_free(batch)
    lib.lrt_model_close(model)
    for i, ids in enumerate(seqs):
        full = ref.logits(ids)
        assert np.array_equal(got[i][0], full[len(ids) - 2]) and np.array_equal(got[i][1], full[len(ids) - 1])
