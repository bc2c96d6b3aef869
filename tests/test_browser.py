"""The built book as a reader sees it: every page of book/_build/html rendered in headless
Chromium, with no network, at 1280 px.

Checks on every page of the table of contents: the math is typeset (no raw ``\\(``/``\\[`` left,
no TeX errors), no code or output block is wider than its box, every image loads; and no chapter
shows the test harness ("nbval"). Chromium is driven through the DevTools protocol over a pipe
(``--remote-debugging-pipe``): no extra package and no network port.

Skips when the book is not built or no Chromium is installed; with ``LMLAB_BROWSER_TEST=require``
(set by ``.ci/run``, which runs this file after building the book) those are failures instead.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
HTML = BOOK / "_build" / "html"
WIDTH, HEIGHT = 1280, 900  # the window the pages are checked at (a laptop screen)
REQUIRED = os.environ.get("LMLAB_BROWSER_TEST") == "require"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def toc_pages() -> list[str]:
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    return pages


PAGES = toc_pages()
CHAPTERS = [p for p in PAGES if p[:2].isdigit()]


def find_chromium() -> str | None:
    exe = os.environ.get("LMLAB_CHROMIUM")
    if exe:
        return exe if Path(exe).exists() else None
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (LMLAB_BROWSER_TEST=require)")
    pytest.skip(reason)


# Launches the real browser binary with fds 3 and 4 as the protocol pipe (Chromium's convention).
_LAUNCHER = (
    "import os, sys\n"
    "r, w = os.dup(int(sys.argv[1])), os.dup(int(sys.argv[2]))\n"
    "os.dup2(r, 3); os.dup2(w, 4)\n"
    "os.set_inheritable(3, True); os.set_inheritable(4, True)\n"
    "os.closerange(5, 1024)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


class Chromium:
    """Headless Chromium, driven with the DevTools protocol over ``--remote-debugging-pipe``.

    Offline by construction: every host name fails to resolve, so a page that needs the network
    (a script from a CDN) renders as it would for a reader without one.
    """

    def __init__(self, exe: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="lmlab-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars",
            f"--user-data-dir={self.profile}", f"--window-size={WIDTH},{HEIGHT}",
            "--remote-debugging-pipe", "about:blank",
        ]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(to_browser_r), str(from_browser_w), *args],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - the browser may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self._to_browser, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self._events.append(message)

    def wait_event(self, method: str, session: str, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self._events.pop(i)
            self._events.append(self._read_message(deadline))

    def evaluate(self, url: str, script: str) -> object:
        """Opens ``url`` in a new tab, waits for its load event, then returns the value of the
        (async) JavaScript expression ``script``."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        session = session["sessionId"]
        try:
            self.send("Emulation.setDeviceMetricsOverride", {
                "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False,
            }, session)
            self.send("Page.enable", {}, session)
            self.send("Page.navigate", {"url": url}, session)
            self.wait_event("Page.loadEventFired", session)
            result = self.send("Runtime.evaluate", {
                "expression": script, "awaitPromise": True, "returnByValue": True,
            }, session)
            if "exceptionDetails" in result:
                raise RuntimeError(f"script failed on {url}: {result['exceptionDetails']}")
            return result["result"]["value"]
        finally:
            self.send("Target.closeTarget", {"targetId": target})
            self._events = [e for e in self._events if e.get("sessionId") != session]


# Runs in the page once it has loaded: waits for MathJax's first typesetting (if MathJax loaded
# at all) and for every image, opens every collapsed block (dropdowns, hidden cells) so that it
# is measured too, then reports what a reader would see.
INSPECT = r"""
(async () => {
  const mathjax = window.MathJax;
  let mathjaxState = "not loaded";
  if (mathjax && mathjax.startup && mathjax.startup.promise) {
    const timeout = new Promise(done => setTimeout(() => done("timed out"), 20000));
    mathjaxState = await Promise.race([mathjax.startup.promise.then(() => "typeset"), timeout]);
  }
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  document.querySelectorAll(".toggle-hidden").forEach(e => e.classList.remove("toggle-hidden"));
  const main = document.querySelector("main") || document.body;
  const images = [...main.querySelectorAll("img")];
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.complete ? null :
    new Promise(done => { img.onload = img.onerror = done; setTimeout(done, 10000); })));
  await new Promise(done => requestAnimationFrame(() => setTimeout(done, 50)));

  const rawMath = [...main.querySelectorAll(".math")]
    .filter(e => !e.querySelector("mjx-container"))
    .map(e => e.textContent.trim().slice(0, 80));
  const mathErrors = [...main.querySelectorAll("mjx-merror")]
    .map(e => (e.getAttribute("data-mjx-error") || e.textContent).slice(0, 80));
  const prose = main.cloneNode(true);
  prose.querySelectorAll("pre, code, mjx-container, script, style").forEach(e => e.remove());
  const rawDelimiters = (prose.textContent.match(/.{0,30}\\[\(\[].{0,30}/g) || []);

  const blocks = [...main.querySelectorAll(
    "pre, div.cell_output, div.output, .pst-scrollable-table-container, table, .bd-article")];
  const wide = blocks.filter(e => e.scrollWidth > e.clientWidth).map(e => {
    const lines = e.textContent.split("\n");
    const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), "");
    return {box: e.clientWidth, content: e.scrollWidth, columns: longest.length,
            line: longest.trim().slice(0, 100),
            tag: e.tagName.toLowerCase() + "." + e.className.split(" ")[0]};
  });
  const pre = main.querySelector("div.highlight pre");
  let columnsShown = null;
  if (pre) {
    const probe = document.createElement("span");
    probe.textContent = "0".repeat(100);
    pre.appendChild(probe);
    const charWidth = probe.getBoundingClientRect().width / 100;
    probe.remove();
    const style = getComputedStyle(pre);
    const inner = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    columnsShown = Math.floor(inner / charWidth);
  }
  const brokenImages = images.filter(img => !(img.complete && img.naturalWidth > 0))
    .map(img => img.getAttribute("src"));
  const text = main.innerText;
  const nbval = text.split("\n").filter(line => /nbval/i.test(line)).map(l => l.slice(0, 120));
  return {mathjaxState, rawMath, mathErrors, rawDelimiters, wide, columnsShown,
          pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth,
          images: images.length, brokenImages, nbval, mathCount: main.querySelectorAll(".math").length};
})()
"""


@pytest.fixture(scope="module")
def render():
    if not (HTML / "index.html").exists():
        skip_or_fail(f"{HTML.relative_to(ROOT)} is missing: build the book first "
                     "(jupyter-book build -W -n --keep-going book)")
    stale = []
    for page in PAGES:
        html = HTML / f"{page}.html"
        sources = [p for p in BOOK.glob(f"{page}.*") if p.suffix in (".md", ".ipynb")]
        if not html.exists() or any(s.stat().st_mtime > html.stat().st_mtime for s in sources):
            stale.append(page)
    if stale:
        skip_or_fail(f"the built HTML is missing or older than its source for {stale}: "
                     "rebuild the book")
    exe = find_chromium()
    if exe is None:
        skip_or_fail("no Chromium found (apt-get install chromium, or set LMLAB_CHROMIUM)")
    browser = Chromium(exe)
    results: dict[str, dict] = {}

    def inspect(page: str) -> dict:
        if page not in results:
            results[page] = browser.evaluate((HTML / f"{page}.html").as_uri(), INSPECT)
        return results[page]

    yield inspect
    browser.close()


@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset(render, page):
    seen = render(page)
    if seen["mathCount"]:
        assert seen["mathjaxState"] == "typeset", \
            f"MathJax {seen['mathjaxState']} on {page}.html (it must load from the build)"
    assert not seen["rawMath"], f"raw TeX on {page}.html: {seen['rawMath'][:5]}"
    assert not seen["rawDelimiters"], f"raw \\( or \\[ on {page}.html: {seen['rawDelimiters'][:5]}"
    assert not seen["mathErrors"], f"TeX errors on {page}.html: {seen['mathErrors'][:5]}"


@pytest.mark.parametrize("page", PAGES)
def test_code_and_outputs_fit_their_box(render, page):
    seen = render(page)
    wide = [f"{w['tag']}: {w['columns']} columns, {w['content']} px in a {w['box']} px box: "
            f"{w['line']!r}" for w in seen["wide"]]
    assert not wide, f"{len(wide)} block(s) scroll sideways on {page}.html at {WIDTH} px:\n" + \
        "\n".join(wide)
    assert seen["pageWidth"] <= seen["viewport"], f"{page}.html is wider than the window"


def test_code_box_shows_88_columns(render):
    """The width rule of tests/test_book.py (code lines <= 88 columns) fits the rendered box."""
    seen = render(CHAPTERS[0])
    assert seen["columnsShown"] is not None and seen["columnsShown"] >= 88, \
        f"the code box shows {seen['columnsShown']} columns at {WIDTH} px, code is wrapped at 88"


@pytest.mark.parametrize("page", PAGES)
def test_images_load(render, page):
    seen = render(page)
    assert not seen["brokenImages"], f"images not loaded on {page}.html: {seen['brokenImages']}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_no_test_harness_shows(render, page):
    seen = render(page)
    assert not seen["nbval"], f"{page}.html shows the test harness: {seen['nbval'][:5]}"
