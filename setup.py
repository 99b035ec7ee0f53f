"""Build glue. The C core is compiled twice from the same sources and flags:

* ``loomrt._loomrt_cffi``: the cffi extension used by the Python package (see
  loomrt/_build_ffi.py; abi3 on CPython, so one wheel per platform serves Python >= 3.9).
* ``loomrt/libloomrt.so`` / ``libloomrt.dylib`` / ``loomrt.dll``: a plain shared library with
  no Python symbols that exports exactly the ``lrt_*`` functions of csrc/include/loomrt.h,
  for ctypes, C# (P/Invoke) and C users: ``loomrt.library_path()`` returns its path.

* ``loomrt/web/``: the WebAssembly build and its JavaScript module and demo (bindings/js/;
  ``loomrt.web_assets()``, ``loomrt web``). The two ``.wasm`` files are taken from bindings/js/
  when `python tools/build_wasm.py` made them there after the last C change; else they are built
  with zig's clang when the ``ziglang`` package is importable at build time; else the wheel has
  no web assets (``loomrt.web_assets()`` then says how to build them). LOOMRT_BUILD_WASM=0 skips
  them, LOOMRT_BUILD_WASM=1 makes a missing toolchain an error.

Why not ship the cffi module as the C library: on Windows a .pyd exports only PyInit_*, and on
Linux/macOS the extension leaves Python's C API symbols undefined, so a program that is not
Python (mono, a game engine) cannot load it. The second build costs one more compile.
"""
from __future__ import annotations

import os
import shutil
import sys
import sysconfig

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _ffi_build_module():
    """loomrt/_build_ffi.py (the one list of C sources and the numerics compile flags)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_loomrt_build_ffi", os.path.join(HERE, "loomrt", "_build_ffi.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def shared_library_name(platform: str = sys.platform) -> str:
    """File name of the plain C library: what dlopen/DllImport("loomrt") look for."""
    if platform == "win32":
        return "loomrt.dll"
    if platform == "darwin":
        return "libloomrt.dylib"
    return "libloomrt.so"


class BuildExtWithLibrary(build_ext):
    """build_ext that also links the plain shared library into the package folder."""

    def run(self) -> None:
        super().run()
        self.build_shared_library()

    def _library_output(self) -> str:
        return os.path.join(self.build_lib, "loomrt", shared_library_name())

    def get_outputs(self) -> list:
        return super().get_outputs() + [self._library_output()]

    def build_shared_library(self) -> None:
        ffi = _ffi_build_module()
        compiler = self.compiler
        msvc = compiler.compiler_type == "msvc"
        sources = [os.path.relpath(os.path.join(ffi.CSRC, s), HERE) for s in ffi.SOURCES]
        args = list(ffi.compile_args())
        if not msvc:
            args.append("-fvisibility=hidden")  # export exactly the LRT_API functions
        objects = compiler.compile(
            sources,
            output_dir=os.path.join(self.build_temp, "libloomrt"),
            macros=[("LOOMRT_BUILD_SHARED", "1")],
            include_dirs=[os.path.relpath(os.path.join(ffi.CSRC, "include"), HERE)],
            extra_postargs=args,
            debug=self.debug,
        )
        out = self._library_output()
        os.makedirs(os.path.dirname(out), exist_ok=True)
        link_args: list = []
        saved = getattr(compiler, "linker_so", None)
        if sys.platform == "darwin":
            # Python's LDSHARED makes a -bundle with -undefined dynamic_lookup (a module for
            # the interpreter); a library for other programs is a -dynamiclib.
            compiler.linker_so = ["-dynamiclib" if a == "-bundle" else a for a in saved]
            link_args = ["-install_name", "@rpath/" + shared_library_name()]
        elif not msvc:
            link_args = ["-Wl,--no-undefined"] if sys.platform.startswith("linux") else []
        try:
            compiler.link_shared_object(
                objects, out,
                libraries=[] if msvc else ["pthread", "m"],
                # MSVC: an empty list puts the import library in build_temp, not in the wheel.
                export_symbols=[] if msvc else None,
                extra_postargs=link_args,
                build_temp=os.path.join(self.build_temp, "libloomrt"),
                debug=self.debug,
            )
        finally:
            if saved is not None:
                compiler.linker_so = saved
        if self.inplace or getattr(self, "editable_mode", False):
            # pip install -e . / setup.py build_ext --inplace: next to the sources as well.
            # Copy, then rename over the old file: a process that has the old library mapped
            # keeps its inode instead of crashing on a file truncated under it.
            dest = os.path.join(HERE, "loomrt", shared_library_name())
            tmp = dest + ".tmp-%d" % os.getpid()
            shutil.copyfile(out, tmp)
            os.replace(tmp, dest)


# bindings/js files shipped in the package as loomrt/web/ (loomrt/web.py ASSETS must be among them)
WEB_FILES = ["loomrt.mjs", "loomrt.d.ts", "loomrt-worker.mjs", "loomrt-worker.d.ts", "worker.mjs",
             "loomrt-thread.mjs", "package.json", "demo/index.html"]
WASM_FILES = ["loomrt.wasm", "loomrt-threads.wasm"]


def _newest_c_source() -> float:
    newest = 0.0
    for d, _, names in os.walk(os.path.join(HERE, "csrc")):
        for n in names:
            if n.endswith((".c", ".h")):
                newest = max(newest, os.path.getmtime(os.path.join(d, n)))
    return newest


class BuildPyWithWeb(build_py):
    """build_py that also puts the web assets (bindings/js + the .wasm files) in loomrt/web/."""

    def run(self) -> None:
        super().run()
        self.copy_web_assets()

    def _wasm_folder(self) -> "str | None":
        js = os.path.join(HERE, "bindings", "js")
        mode = os.environ.get("LOOMRT_BUILD_WASM", "auto")
        if mode == "0":
            return None
        prebuilt = [os.path.join(js, w) for w in WASM_FILES]
        if all(os.path.isfile(p) for p in prebuilt) and min(map(os.path.getmtime, prebuilt)) >= _newest_c_source():
            return js
        try:
            import ziglang  # noqa: F401  (zig's clang from PyPI)
        except ImportError:
            if mode == "1":
                raise RuntimeError("LOOMRT_BUILD_WASM=1 but ziglang is not installed (pip install ziglang), and "
                                   "bindings/js has no up-to-date loomrt.wasm (python tools/build_wasm.py)")
            self.announce("loomrt: no web assets in this build (no up-to-date bindings/js/*.wasm, no ziglang)", level=3)
            return None
        import importlib.util

        spec = importlib.util.spec_from_file_location("_loomrt_build_wasm", os.path.join(HERE, "tools", "build_wasm.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out = os.path.join(HERE, "build", "wasm")
        mod.build_all(out)
        return out

    def copy_web_assets(self) -> None:
        js = os.path.join(HERE, "bindings", "js")
        if not os.path.isdir(js):
            return
        wasm_dir = self._wasm_folder()
        if wasm_dir is None:
            return
        dest = os.path.join(self.build_lib, "loomrt", "web")
        for rel in WEB_FILES:
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copyfile(os.path.join(js, rel), os.path.join(dest, rel))
        for w in WASM_FILES:
            shutil.copyfile(os.path.join(wasm_dir, w), os.path.join(dest, w))


def _bdist_wheel_options() -> dict:
    """Tag the wheel abi3 (cp39) where cffi builds the extension against the limited API:
    CPython release builds, not the free-threaded ones."""
    if sys.implementation.name != "cpython" or hasattr(sys, "gettotalrefcount"):
        return {}
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return {}
    return {"bdist_wheel": {"py_limited_api": "cp39"}}


setup(
    cffi_modules=["loomrt/_build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithLibrary, "build_py": BuildPyWithWeb},
    options=_bdist_wheel_options(),
)
