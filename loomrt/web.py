"""The WebAssembly build's files (bindings/js/: loomrt.mjs, loomrt.wasm, the worker and the
demo page) and a small local server for them (`loomrt web`; docs/web.md)."""
from __future__ import annotations

import functools
import http.server
import os
import sys
import urllib.parse
from typing import Any, Optional

from . import errors

# what a folder of web assets must hold
ASSETS = ("loomrt.mjs", "loomrt.wasm", "loomrt-threads.wasm", "loomrt-thread.mjs", "loomrt-worker.mjs", "worker.mjs",
          "demo/index.html")


def _missing(folder: str) -> list:
    return [a for a in ASSETS if not os.path.isfile(os.path.join(folder, a))]


def web_assets(folder: Optional[str] = None) -> str:
    """The folder holding loomrt.mjs, loomrt.wasm (and loomrt-threads.wasm), the workers and
    demo/: ``folder`` when given, else the environment variable LOOMRT_WEB_ASSETS, else
    ``loomrt/web/`` inside the package (the wheel ships it: setup.py),
    else ``bindings/js/`` of the source checkout the package runs from. Raises NotFoundError
    saying how to build loomrt.wasm when none is complete."""
    here = os.path.dirname(os.path.abspath(__file__))
    if folder is None:
        folder = os.environ.get("LOOMRT_WEB_ASSETS") or None
    candidates = [folder] if folder is not None else [os.path.join(here, "web"),
                                                     os.path.join(os.path.dirname(here), "bindings", "js")]
    for c in candidates:
        if not _missing(c):
            return os.path.abspath(c)
    last = candidates[-1]
    raise errors.NotFoundError(
        f"no complete set of web assets in {' or '.join(candidates)} (missing in {last}: {', '.join(_missing(last))}); "
        "build loomrt.wasm with `python tools/build_wasm.py` in a source checkout (pip install ziglang), or pass "
        "the folder holding loomrt.mjs, loomrt.wasm and demo/")


def _demo_query(model: Optional[str]) -> str:
    """The demo's query for a served model: /model.gguf, named as the file is (receipts list the name)."""
    if not model:
        return ""
    return "?model=../model.gguf&name=" + urllib.parse.quote(os.path.basename(model))


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
                      ".gguf": "application/octet-stream"}
    model: Optional[str] = None

    def end_headers(self) -> None:
        # cross-origin isolation (COOP + COEP): what a multi-threaded build (SharedArrayBuffer)
        # needs; harmless for the single-threaded one
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def translate_path(self, path: str) -> str:
        if self.model is not None and path.split("?", 1)[0] == "/model.gguf":
            return self.model
        return super().translate_path(path)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path in ("/", "/index.html"):
            self.send_response(302)
            self.send_header("Location", "/demo/" + _demo_query(self.model))
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


def make_server(port: int = 8000, host: str = "127.0.0.1", assets: Optional[str] = None,
                model: Optional[str] = None) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the web assets (``model``: a .gguf file also served as /model.gguf)."""
    folder = web_assets(assets)
    if model is not None and not os.path.isfile(model):
        raise errors.NotFoundError(f"{model}: no such file (give a .gguf file to serve with the demo)")
    handler = type("Handler", (_Handler,), {"model": os.path.abspath(model) if model else None})
    return http.server.ThreadingHTTPServer((host, port), functools.partial(handler, directory=folder))


def serve(port: int = 8000, host: str = "127.0.0.1", assets: Optional[str] = None, model: Optional[str] = None) -> None:
    """Serve the demo until interrupted; prints its address."""
    server = make_server(port, host, assets, model)
    url = f"http://{host}:{server.server_address[1]}/demo/" + _demo_query(model)
    print(f"loomrt web: serving {url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        sys.stdout.flush()
