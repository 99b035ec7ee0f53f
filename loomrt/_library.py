"""Where the plain C library shipped with the package lives (see setup.py)."""
from __future__ import annotations

import os
import sys

_NAMES = {"win32": "loomrt.dll", "darwin": "libloomrt.dylib"}


def library_name() -> str:
    """File name of the C library on this platform: libloomrt.so, libloomrt.dylib or loomrt.dll."""
    return _NAMES.get(sys.platform, "libloomrt.so")


def library_path() -> str:
    """Absolute path of the C library inside the installed package.

    It is built by setup.py from the same sources and flags as the Python extension, has no
    Python symbols and exports exactly the functions of ``loomrt.h``: load it with ctypes,
    P/Invoke (C#) or dlopen. Raises FileNotFoundError when the package was installed without
    it (an extension built by hand, not through setup.py).
    """
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), library_name())
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{library_name()} is not in {os.path.dirname(path)}: reinstall loomrt with "
            "`pip install .` (or `pip install -e .`) so setup.py builds the C library")
    return path
