"""Build glue: the C core is compiled by cffi (see loomrt/_build_ffi.py)."""
from setuptools import setup

setup(cffi_modules=["loomrt/_build_ffi.py:ffibuilder"])
