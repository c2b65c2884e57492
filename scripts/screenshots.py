"""Screenshots for the docs: the Dagster asset lineage (raw data → production) and the MLflow run
the production model links to, taken with headless Chromium against a running `ml-platform dev`.

    ml-platform demo && ml-platform dev &      # in one terminal (or `make demo`, `make dev`)
    .venv/bin/python scripts/screenshots.py    # writes docs/img/*.png

Drives Chromium over the DevTools protocol (no browser download: Debian's `chromium`).
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1600,1000", "--hide-scrollbars",
]


class Browser:
    def __init__(self, port: int = 9333) -> None:
        self.profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)  # Chromium may still write
        self.process = subprocess.Popen(
            ["chromium", *CHROMIUM_FLAGS, f"--remote-debugging-port={port}",
             f"--user-data-dir={self.profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
                    page = next(t for t in json.loads(r.read()) if t["type"] == "page")
                break
            except (OSError, StopIteration):
                time.sleep(0.1)
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.next_id = 0

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                return message.get("result", {})

    def js(self, expression: str) -> object:
        return self.call("Runtime.evaluate", expression=expression,
                         returnByValue=True).get("result", {}).get("value")

    def open(self, url: str, settle_s: float) -> None:
        self.call("Page.navigate", url=url)
        time.sleep(settle_s)

    def shot(self, path: Path, clip: dict[str, float] | None = None) -> None:
        data = self.call("Page.captureScreenshot", format="png",
                         **({"clip": {**clip, "scale": 1}} if clip else {}))["data"]
        path.write_bytes(base64.b64decode(data))
        print(f"wrote {path}")

    def close(self) -> None:
        self.ws.close()
        self.process.terminate()
        self.process.wait()
        self.profile.cleanup()


LINEAGE_WIDTH = 2800


def _graph_bounds(browser: Browser, margin: float) -> dict[str, float]:
    """The page area the graph's groups and nodes cover (SVG foreignObjects), plus `margin`."""
    box = json.loads(str(browser.js("""JSON.stringify((() => {
        const rs = [...document.querySelectorAll('foreignObject')]
            .map(e => e.getBoundingClientRect()).filter(r => r.width > 0);
        return [Math.min(...rs.map(r => r.left)), Math.min(...rs.map(r => r.top)),
                Math.max(...rs.map(r => r.right)), Math.max(...rs.map(r => r.bottom))];
    })())""")))
    left, top, right, bottom = box
    return {"x": max(left - margin, 0), "y": max(top - margin, 0),
            "width": right - left + 2 * margin, "height": bottom - top + 2 * margin}


def _wait_for_text(browser: Browser, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not browser.js(
            f"document.body.innerText.includes({json.dumps(text)})"):
        time.sleep(1)


def _wait_for_graph(browser: Browser, node: str, timeout_s: float) -> None:
    """Until the graph shows `node` and no node still says "Loading" (each loads its status)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not browser.js(
            f"document.body.innerText.includes({json.dumps(node)})"
            " && !document.body.innerText.includes('Loading')"):
        time.sleep(1)


def _click_text(browser: Browser, text: str) -> None:
    browser.js(f"""[...document.querySelectorAll('button')]
        .filter(b => b.textContent.trim() === {json.dumps(text)}).forEach(b => b.click())""")


def _close_assistant(browser: Browser) -> None:
    """MLflow 3.17 opens its assistant panel beside the page on a first visit (a user closes it
    once): close it, as a user would, with the panel's own close button."""
    browser.js("""[...document.querySelectorAll('button')].filter(b => {
            if (!/close/i.test(b.getAttribute('aria-label') || b.title || '')) return false;
            for (let e = b.parentElement, i = 0; e && i < 4; e = e.parentElement, i++)
                if ((e.innerText || '').includes('MLflow Assistant')) return true;
            return false;
        }).slice(0, 1).forEach(b => b.click())""")
    time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dagster", default="http://127.0.0.1:3000")
    parser.add_argument("--mlflow", default="http://127.0.0.1:5000")
    parser.add_argument("--model", default="listing_price")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    browser = Browser()
    try:
        browser.call("Page.enable")
        # The chain is nine assets wide: on a wide page the graph draws each node in full (latest
        # materialization, checks, partitions, automation) instead of a bare name.
        browser.call("Emulation.setDeviceMetricsOverride", width=LINEAGE_WIDTH, height=800,
                     deviceScaleFactor=1, mobile=False)
        browser.open(f"{args.dagster}/assets/{args.model}/production?view=lineage"
                     "&lineageScope=neighbors&lineageDepth=12", settle_s=6)
        _click_text(browser, "Skip")  # the first-visit newsletter dialog
        _wait_for_graph(browser, "training_set", timeout_s=180)
        time.sleep(2)
        browser.shot(args.out / "dagster_lineage.png", clip=_graph_bounds(browser, margin=24))
        browser.call("Emulation.clearDeviceMetricsOverride")

        with urllib.request.urlopen(
            f"{args.mlflow}/api/2.0/mlflow/registered-models/alias"
            f"?name={args.model}&alias=production"
        ) as response:
            run_id = json.loads(response.read())["model_version"]["run_id"]
        with urllib.request.urlopen(f"{args.mlflow}/api/2.0/mlflow/runs/get?run_id={run_id}") as r:
            experiment = json.loads(r.read())["run"]["info"]["experiment_id"]
        # MLflow 3 opens its GenAI layout unless asked for the machine-learning one.
        ml_view = "?workflowType=machine_learning"
        browser.open(f"{args.mlflow}/#/experiments/{experiment}/runs/{run_id}{ml_view}", settle_s=4)
        _wait_for_text(browser, "Parameters", timeout_s=120)
        _close_assistant(browser)
        time.sleep(2)
        browser.shot(args.out / "mlflow_run.png")
        browser.open(f"{args.mlflow}/#/models/{args.model}{ml_view}", settle_s=4)
        _wait_for_text(browser, "Version 1", timeout_s=120)
        # the promotion records (JSON tags) fill the top of the page: show the versions
        browser.js("""[...document.querySelectorAll('*')]
            .filter(e => e.childElementCount === 0 && e.textContent.trim() === 'Versions')
            .slice(0, 1).forEach(e => e.scrollIntoView())""")
        time.sleep(2)
        browser.shot(args.out / "mlflow_registry.png")
    finally:
        browser.close()


if __name__ == "__main__":
    main()
