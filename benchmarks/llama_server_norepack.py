"""llama-cpp-python's OpenAI server (``python -m llama_cpp.server``) with llama.cpp's weight
repacking (extra buffer types) turned off, for benchmarks/serve_speed.py.

llama-cpp-python 0.3.36 segfaults on Q8_0 / Q4_1 files on an AMX-capable Xeon inside its
repacked CPU kernels (docs/serving.md); its server has no setting for ``use_extra_bufts``, so
this launcher sets it in the model parameters every ``Llama`` of the server starts from, then
runs the server's own ``main()`` with the arguments given:

    python benchmarks/llama_server_norepack.py --model M.gguf --port 8001 ...
"""
from __future__ import annotations

import sys


def main() -> None:
    import llama_cpp.llama_cpp as C  # the module llama_cpp.Llama takes its default parameters from

    orig = C.llama_model_default_params

    def params():  # type: ignore[no-untyped-def]
        p = orig()
        p.use_extra_bufts = False
        return p

    C.llama_model_default_params = params
    from llama_cpp.server.__main__ import main as server_main

    sys.argv = ["llama_cpp.server"] + sys.argv[1:]
    server_main()


if __name__ == "__main__":
    main()
