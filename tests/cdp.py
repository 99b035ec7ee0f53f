"""Headless Chromium driven through the DevTools protocol (CDP) over a pipe, with the standard
library only: Chromium's --remote-debugging-pipe reads JSON commands, each ended by a NUL byte,
from its file descriptor 3 and writes replies and events to its descriptor 4 (no websocket, no
driver). Used by tests/test_web.py to drive the demo page in real time (clicks, polling the page
while a Web Worker generates, screenshots), which --dump-dom's virtual time cannot do."""
from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional


class CdpError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium; pages are opened with :meth:`open` (a CDP session id each)."""

    def __init__(self, chrome: str, profile: str, width: int = 1000, height: int = 800):
        to_chrome_r, self._w = os.pipe()   # our commands: Chromium reads them as fd 3
        self._r, from_chrome_w = os.pipe()  # its replies and events: fd 4
        args = ["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--no-default-browser-check",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", f"--window-size={width},{height}",
                "--hide-scrollbars", "about:blank"]
        # a small Python puts the pipe ends on descriptors 3 and 4, then becomes Chromium (dash's
        # redirections take single-digit descriptors only); Chromium's chatter goes to a file
        # beside the profile: a pipe nobody reads could fill up and block it
        self._stderr_path = profile.rstrip("/") + ".stderr.txt"
        trampoline = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); os.execv(sys.argv[3], sys.argv[3:])"
        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", trampoline, str(to_chrome_r), str(from_chrome_w), chrome] + args,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         pass_fds=(to_chrome_r, from_chrome_w))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.width, self.height = width, height
        self._buf = b""
        self._next = 1
        self.events: List[Dict[str, Any]] = []

    # ---- the protocol --------------------------------------------------------------------------

    def _read_message(self, deadline: float) -> Dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("Chromium did not answer in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise CdpError("Chromium closed the pipe: " + self.stderr_tail())
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: Optional[Dict[str, Any]] = None, session: Optional[str] = None,
             timeout: float = 60) -> Dict[str, Any]:
        """Send a command and return its result; events that arrive meanwhile go to self.events."""
        mid = self._next
        self._next += 1
        msg: Dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == mid:
                if "error" in m:
                    raise CdpError(f"{method}: {m['error']}")
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def open(self, url: str) -> str:
        """A new page (tab) at url; returns its session id (Runtime, Page and Log events on)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Page", "Log"):
            self.call(f"{domain}.enable", session=session)
        # the page's viewport is the window size asked for (headless windows lose some to chrome)
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                         "deviceScaleFactor": 1, "mobile": False}, session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        return session

    def eval(self, session: str, expression: str, timeout: float = 60) -> Any:
        """The value of a JavaScript expression in the page (promises awaited; JSON-able values)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                      session=session, timeout=timeout)
        if "exceptionDetails" in r:
            raise CdpError(f"{expression[:80]}: {r['exceptionDetails'].get('exception', {}).get('description') or r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 240, poll: float = 0.1) -> Any:
        """Poll expression until it is truthy; return that value."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.eval(session, expression)
            if v:
                return v
            if time.monotonic() > deadline:
                raise CdpError(f"timed out after {timeout} s waiting for {expression}")
            time.sleep(poll)

    def screenshot(self, session: str, path: str) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def console_errors(self, session: Optional[str] = None) -> List[str]:
        """Errors the pages reported: console.error, uncaught exceptions, error log entries."""
        out = []
        for e in self.events:
            if session is not None and e.get("sessionId") != session:
                continue
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
        return out

    def stderr_tail(self) -> str:
        try:
            with open(self._stderr_path, "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (CdpError, OSError):
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
