"""Headless Chromium driven over the DevTools protocol on loopback: enough to read the NNI portal.

The portal is a React app, so its tables exist only after its scripts ran; Chromium (Debian's
``chromium`` package, no browser download) renders it and a tiny DevTools-protocol client (the
``websockets`` package) navigates, clicks and reads the page text. Used by the slow portal test.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium(timeout: float = 1200) -> tuple[str | None, str]:
    """Chromium's path, installing Debian's ``chromium`` with apt-get when missing.

    Returns ``(path, "")``, or ``(None, reason)`` when there is no apt-get to install it with (the
    caller skips). An apt-get that runs and fails raises: CI must install it, not skip.
    """
    path = find_chromium()
    if path:
        return path, ""
    apt = shutil.which("apt-get")
    if apt is None:
        return None, "chromium is not installed and there is no apt-get to install it (Debian package 'chromium')"
    sudo = [] if _is_root() else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        return None, "chromium is not installed and apt-get needs root (no sudo): apt-get install -y chromium"
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for cmd in ([*sudo, apt, "update"], [*sudo, apt, "install", "-y", "--no-install-recommends", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    path = find_chromium()
    if path is None:
        raise RuntimeError("apt-get installed chromium but no chromium executable is on PATH")
    return path, ""


def _is_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


def _get_json(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    with opener.open(url, timeout=10) as resp:
        return json.loads(resp.read().decode())


class Browser:
    """One headless Chromium with one page; ``with Browser(path) as b: b.goto(url); b.text()``."""

    def __init__(self, chromium: str, start_timeout: float = 60):
        self.profile = Path(tempfile.mkdtemp(prefix="facenas-chromium-"))
        self.proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.time() + start_timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.time() > deadline:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.poll() is not None else ""
                self.close()
                raise RuntimeError(f"chromium did not open its DevTools port within {start_timeout} s: {err}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages = [t for t in _get_json(f"http://127.0.0.1:{port}/json/list") if t.get("type") == "page"]
        from websockets.sync.client import connect

        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def eval(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression[:200]}: {res['exceptionDetails'].get('text')} "
                               f"{res['exceptionDetails'].get('exception', {}).get('description', '')}")
        return res.get("result", {}).get("value")

    def text(self) -> str:
        return self.eval("document.body ? document.body.innerText : ''") or ""

    def wait_for(self, expression: str, timeout: float = 60, what: str = "") -> Any:
        """Poll ``expression`` until it is truthy; its value. Fails with the page text if it never is."""
        deadline = time.time() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.time() > deadline:
                raise AssertionError(f"page never showed {what or expression} in {timeout} s; it shows:\n{self.text()[:3000]}")
            time.sleep(0.5)

    def wait_for_text(self, needle: str, timeout: float = 60) -> None:
        """Wait until the page's visible text contains ``needle``."""
        self.wait_for(f"((document.body && document.body.innerText) || '').includes({json.dumps(needle)})",
                      timeout, what=repr(needle))

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
