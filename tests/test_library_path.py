"""The plain C library shipped inside the package (loomrt.library_path()): no Python in it,
every function of loomrt.h exported, same bits as the Python extension. Runs against whatever
is installed: the editable install in .ci/run, the wheel under cibuildwheel."""
from __future__ import annotations

import ctypes
import os
import re
import sys

import numpy as np

import loomrt


def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(loomrt.library_path())
    lib.lrt_version_string.restype = ctypes.c_char_p
    lib.lrt_last_error.restype = ctypes.c_char_p
    return lib


def test_library_path_names_the_platform_library() -> None:
    path = loomrt.library_path()
    assert os.path.isabs(path) and os.path.isfile(path)
    assert os.path.dirname(path) == os.path.dirname(os.path.abspath(loomrt.__file__))
    expected = {"win32": "loomrt.dll", "darwin": "libloomrt.dylib"}.get(sys.platform, "libloomrt.so")
    assert os.path.basename(path) == expected
    # not the Python extension itself
    assert "_loomrt_cffi" not in os.path.basename(path)


def test_ctypes_calls_version_functions() -> None:
    lib = _lib()
    assert lib.lrt_version_string().decode() == loomrt.__version__
    assert lib.lrt_abi_version() == loomrt.ABI_VERSION
    assert lib.lrt_numerics_version() == loomrt.NUMERICS_VERSION


def test_every_header_function_is_exported() -> None:
    # The header ships in the sdist, not in the wheel: check against the cffi declarations,
    # which are derived from it (loomrt/_build_ffi.py), when the source tree is absent.
    here = os.path.dirname(os.path.abspath(__file__))
    header = os.path.join(here, "..", "csrc", "include", "loomrt.h")
    if os.path.isfile(header):
        text = open(header, encoding="utf-8").read()
        names = set(re.findall(r"LRT_API\s+[^;(]*?\b(lrt_\w+)\s*\(", text))
    else:
        from loomrt._loomrt_cffi import lib as cffi_lib
        names = {n for n in dir(cffi_lib) if n.startswith("lrt_")}
    assert len(names) > 20
    lib = _lib()
    missing = [n for n in sorted(names) if not hasattr(lib, n)]
    assert not missing, missing


def test_ctypes_logits_bit_identical_to_python(seeded_folder) -> None:
    lib = _lib()
    model = ctypes.c_void_p()
    path = os.fsencode(seeded_folder)
    assert lib.lrt_model_open(path, ctypes.c_size_t(len(path)), 0, ctypes.byref(model)) == 0, lib.lrt_last_error()
    sess = ctypes.c_void_p()
    assert lib.lrt_session_new(model, ctypes.c_int64(0), 2, ctypes.byref(sess)) == 0, lib.lrt_last_error()
    ids = [1, 7, 42, 99, 3, 250, 17]
    arr = (ctypes.c_int32 * len(ids))(*ids)
    assert lib.lrt_session_eval(sess, arr, ctypes.c_int64(len(ids)), 1) == 0, lib.lrt_last_error()
    ptr = ctypes.POINTER(ctypes.c_float)()
    rows, vocab = ctypes.c_int64(), ctypes.c_int64()
    assert lib.lrt_session_logits(sess, ctypes.byref(ptr), ctypes.byref(rows), ctypes.byref(vocab)) == 0
    got = np.ctypeslib.as_array(ptr, shape=(rows.value, vocab.value)).copy()
    lib.lrt_session_free(sess)
    lib.lrt_model_close(model)
    ref = loomrt.load(seeded_folder, threads=1).logits(ids)
    assert got.shape == ref.shape and np.array_equal(got.view(np.uint32), ref.view(np.uint32))
