"""Drive headless Chromium over the DevTools protocol on a pipe (standard library only).

For pages that need a click before they show what matters (the MLflow UI: pick the "Model
training" view, expand a sweep's parent run). ``--remote-debugging-pipe`` makes Chromium read
NUL-terminated JSON commands on fd 3 and answer on fd 4, so no websocket client is needed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

# headless Chromium as root in a container, offline, showing only our own pages
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in containers; the pages are our own
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


class Chromium:
    def __init__(self, binary: str, profile: str, width: int, height: int) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def fds() -> None:  # in the child: the pipe ends become (inheritable) fds 3 and 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)  # either may already be 3 or 4
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                *HEADLESS_FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            preexec_fn=fds,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.page("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def _send(self, msg: dict[str, Any]) -> int:
        self._id += 1
        os.write(self._w, json.dumps({**msg, "id": self._id}).encode() + b"\0")
        return self._id

    def _recv(self, want: int, timeout: float = 60.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                if msg.get("id") == want:
                    if "error" in msg:
                        raise RuntimeError(f"DevTools error: {msg['error']}")
                    return msg.get("result", {})
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raise TimeoutError(f"no DevTools answer to command {want} in {timeout:.0f}s")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self._recv(self._send({"method": method, "params": params}))

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self._recv(
            self._send({"method": method, "params": params, "sessionId": self.session})
        )

    def goto(self, url: str, settle_s: float) -> None:
        self.page("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", 60)
        time.sleep(settle_s)

    def js(self, expression: str) -> Any:
        res = self.page("Runtime.evaluate", expression=expression, awaitPromise=True,
                        returnByValue=True)  # fmt: skip
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    def wait_for(self, condition: str, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.js(f"Boolean({condition})"):
                return True
            time.sleep(0.5)
        return False

    def screenshot(self, out: Path) -> Path:
        data = self.page("Page.captureScreenshot", format="png")["data"]
        Path(out).write_bytes(base64.b64decode(data))
        return Path(out)

    def close(self) -> None:
        try:
            self._send({"method": "Browser.close"})
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - closing anyway
            self.proc.kill()
        finally:
            os.close(self._w)
            os.close(self._r)
