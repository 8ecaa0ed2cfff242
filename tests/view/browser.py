"""Headless Chromium (Debian's `chromium` package) for the page tests: a screenshot, and what
the DOM shows after the page has loaded, read by a probe script the test appends to a copy of
the page (the page itself has no script).

`--dump-dom` prints the document once loading has finished (the load event included), so the
probe's result, written into the document on `load`, comes back in that dump.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]

PROBE = """<script>
window.addEventListener("load", () => {
  const all = (sel, root = document) => [...root.querySelectorAll(sel)];
  const out = {splits: {}, cards: {}, images: [], bars: [], examples: {}};
  for (const s of all("section[data-split]"))
    out.splits[s.dataset.split] = all("figure.card", s).map(c => c.dataset.imageKey);
  for (const c of all("figure.card"))
    out.cards[c.dataset.imageKey] = all("li.record", c).map(r => r.dataset.recordKey);
  out.images = [...document.images].map(i => [i.alt, i.naturalWidth, i.naturalHeight]);
  out.bars = all("#rejects .bar").map(b => [b.dataset.stage, b.dataset.reason,
    b.querySelector(".n").innerText]);
  out.hists = all(".hist").map(h => [h.querySelector("b").innerText, +h.dataset.total]);
  for (const e of all(".example")) out.examples[e.dataset.reason] =
    (out.examples[e.dataset.reason] || 0) + 1;
  const pre = document.createElement("pre");
  pre.id = "probe-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def install_chromium() -> tuple[str | None, str]:
    """(the browser, "") or (None, why not): installs Debian's package when apt-get can."""
    found = find_chromium()
    if found:
        return found, ""
    if not shutil.which("apt-get"):
        return None, "no chromium and no apt-get to install it"
    if os.geteuid() != 0:
        return None, "no chromium, and installing it with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        if res.returncode:
            return None, f"`{' '.join(cmd)}` failed: {res.stderr.strip()[-300:]}"
    found = find_chromium()
    return (found, "") if found else (None, "apt-get installed chromium but it is not on PATH")


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, *FLAGS, *args], capture_output=True, text=True, timeout=180, check=True
    )


def screenshot(browser: str, page: Path, png: Path, size: str = "1280,1600") -> Path:
    _run(browser, f"--window-size={size}", f"--screenshot={png}", page.resolve().as_uri())
    return png


def probe(browser: str, page: Path, work: Path) -> dict:
    """What the loaded page's DOM shows (see PROBE), from a probed copy of the page."""
    text = page.read_text(encoding="utf-8")
    copy = work / f"probed-{page.name}"
    copy.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    res = _run(browser, "--virtual-time-budget=20000", "--dump-dom", copy.resolve().as_uri())
    m = re.search(r'<pre id="probe-result">(.*?)</pre>', res.stdout, re.S)
    assert m, f"the probe did not run; chromium said: {res.stderr[-500:]}"
    return json.loads(unescape(m.group(1)))
