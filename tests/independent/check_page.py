#!/usr/bin/env python3
"""Independent check of the operator page: does it render in a real browser?

Why this exists: the Rust tests only show that `naerdata report` writes the HTML it
means to write. This script opens the written page in headless Chromium (Debian's
`chromium`, no naerdata code), over the Chrome DevTools Protocol, and checks that

  1. the page loads from its file: URL with no console error, no uncaught exception
     and no error log entry (a resource that fails to load counts);
  2. the sections kpis, reception, missing, rejected, failed, quality and
     declaration are there;
  3. the reception heatmap `#heatmap-datasets` has cells, every cell carries one of
     the statuses on_time/late/missing/pending, and the heatmap is laid out (a
     rendered box wider and higher than zero); with --expect-units,
     `#heatmap-units` exists with at least 98 cells;
  4. at least one quality trend chart has a polyline with points;
  5. the tables #missing-table, #rejected-table, #failed-table and
     #declaration-table are there, and the declaration has at least one data row;
  6. a full-page screenshot can be taken: a PNG of more than a few KB is written.

With --kommune the page is a municipality's own page instead: it loads without a
console error, has the sections leveringer and indikatorer, one laid-out square per
day in #dage, at least one indicator table (table.mart) with rows, and it names its
municipality and no other (--kommune-name NAME, --other-name NAME...).

Usage: check_page.py PAGE.html SCREENSHOT.png [--expect-units] [--timeout SECONDS]
       check_page.py PAGE.html SCREENSHOT.png --kommune --kommune-name NAME [--other-name N]...
Chromium is looked up as `chromium` or `chromium-browser` on PATH ($CHROMIUM overrides).
Exit status 0 when every check passes, 1 when a check fails, 2 when the browser
cannot be started or driven (missing binary, timeout).
"""
import argparse
import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import websocket  # the websocket-client package
except ImportError:  # pragma: no cover - a setup problem, not a page problem
    sys.exit("check_page: the websocket-client package is missing (pip install websocket-client)")

SECTIONS = ["kpis", "reception", "missing", "rejected", "failed", "quality", "declaration"]
TABLES = ["missing-table", "rejected-table", "failed-table", "declaration-table"]
STATUSES = ["on_time", "late", "missing", "pending"]
MIN_UNIT_CELLS = 98  # one row per municipality at the least
MIN_PNG_BYTES = 10 * 1024  # a blank 1400x900 page is about 5 KB
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VIEWPORT_WIDTH = 1400
VIEWPORT_HEIGHT = 900
MAX_SHOT_HEIGHT = 16384  # Chromium's largest capture surface

# Everything the assertions need, read from the rendered DOM in one evaluation.
DOM_FACTS_JS = r"""
(() => {
  const STATUSES = %s;
  const box = el => {
    if (!el) return null;
    const r = el.getBoundingClientRect();
    return {width: r.width, height: r.height};
  };
  const dataRows = t => t ? Array.from(t.querySelectorAll('tr'))
      .filter(r => r.querySelector('td') !== null).length : null;
  const heatmap = id => {
    const svg = document.getElementById(id);
    if (!svg) return null;
    const cells = Array.from(svg.querySelectorAll('rect.cell'));
    const byStatus = {};
    let unknown = 0;
    for (const c of cells) {
      const s = STATUSES.find(s => c.classList.contains(s));
      if (s) byStatus[s] = (byStatus[s] || 0) + 1; else unknown++;
    }
    const first = cells.length ? box(cells[0]) : null;
    return {
      tag: svg.tagName.toLowerCase(),
      isHeatmap: svg.classList.contains('heatmap'),
      cells: cells.length,
      rows: new Set(cells.map(c => c.getAttribute('y'))).size,
      byStatus: byStatus,
      unknownStatus: unknown,
      box: box(svg),
      firstCellBox: first,
    };
  };
  const polylines = Array.from(document.querySelectorAll('svg.trend polyline.series'));
  return {
    url: location.href,
    readyState: document.readyState,
    title: document.title,
    sections: Object.fromEntries(%s.map(id => [id, document.getElementById(id) !== null])),
    heatmapCells: document.querySelectorAll('svg.heatmap rect.cell').length,
    datasets: heatmap('heatmap-datasets'),
    units: heatmap('heatmap-units'),
    trendCharts: document.querySelectorAll('svg.trend').length,
    trendSeries: polylines.length,
    trendSeriesWithPoints: polylines
        .filter(p => (p.getAttribute('points') || '').trim().length > 0).length,
    trendPoints: document.querySelectorAll('svg.trend circle').length,
    tables: Object.fromEntries(%s.map(id => [id, dataRows(document.getElementById(id))])),
    failingTables: document.querySelectorAll('table.failing').length,
    failingRows: Array.from(document.querySelectorAll('table.failing'))
        .reduce((n, t) => n + dataRows(t), 0),
  };
})()
""" % (json.dumps(STATUSES), json.dumps(SECTIONS), json.dumps(TABLES))


class BrowserError(Exception):
    """The browser could not be started or driven: not a verdict on the page."""


class CDP:
    """A minimal Chrome DevTools Protocol client over one browser websocket.

    Commands go to a page through a flat session (sessionId); every event received
    while waiting is kept in `events` so nothing is lost between waits."""

    def __init__(self, url, timeout):
        self.timeout = timeout
        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events = []

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.ws.settimeout(left)
        try:
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            raise TimeoutError
        return json.loads(raw)

    def send(self, method, params=None, session=None, timeout=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                m = self._recv(deadline)
            except TimeoutError:
                raise BrowserError(f"no answer to {method} within {timeout or self.timeout:.0f} s")
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise BrowserError(f"{method} failed: {m['error']}")
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def wait_event(self, method, since, session=None, timeout=None):
        """The first `method` event at index >= since (for `session`)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        i = since
        while True:
            while i < len(self.events):
                e = self.events[i]
                i += 1
                if e["method"] == method and (session is None or e.get("sessionId") == session):
                    return e
            try:
                m = self._recv(deadline)
            except TimeoutError:
                raise BrowserError(f"no {method} within {timeout or self.timeout:.0f} s")
            if "method" in m:
                self.events.append(m)

    def drain(self, seconds):
        """Collect events for a short quiet period (late exceptions, late log entries)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                m = self._recv(deadline)
            except TimeoutError:
                return
            if "method" in m:
                self.events.append(m)


def find_chromium():
    exe = os.environ.get("CHROMIUM")
    if exe:
        found = shutil.which(exe)
        if not found:
            raise BrowserError(f"$CHROMIUM={exe} is not an executable")
        return found
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserError("no chromium or chromium-browser on PATH (apt-get install chromium)")


def start_chromium(exe, profile, timeout):
    log = open(Path(profile).parent / "chromium.log", "wb")
    args = [
        exe,
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",  # containers have a small /dev/shm
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--mute-audio",
        "--disable-breakpad",
        "--disable-crash-reporter",
        f"--window-size={VIEWPORT_WIDTH},{VIEWPORT_HEIGHT}",
        "about:blank",
    ]
    # A session of its own, so the browser and all its helper processes can be
    # ended together by process group.
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    log.close()
    port_file = Path(profile) / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrowserError(f"chromium exited with status {proc.returncode} at start")
        try:
            lines = port_file.read_text().split("\n")
            if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
                return proc, f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    raise BrowserError(f"chromium wrote no DevToolsActivePort within {timeout:.0f} s")


def stop_chromium(proc):
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # Helpers left in the group after the main process exited.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def describe_remote(obj):
    if "value" in obj:
        return obj["value"] if isinstance(obj["value"], str) else json.dumps(obj["value"])
    return obj.get("description") or obj.get("unserializableValue") or obj.get("type", "?")


def console_errors(events, session):
    """Console errors, uncaught exceptions and error log entries of the page."""
    found = []
    for e in events:
        if e.get("sessionId") != session:
            continue
        p = e.get("params", {})
        if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            text = " ".join(str(describe_remote(a)) for a in p.get("args", []))
            found.append(f"console.{p['type']}: {text}")
        elif e["method"] == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            exc = d.get("exception") or {}
            text = exc.get("description") or d.get("text", "exception")
            where = f" ({d.get('url', '')}:{d.get('lineNumber', 0) + 1})" if d.get("url") else ""
            found.append(f"uncaught: {text}{where}")
        elif e["method"] == "Log.entryAdded":
            entry = p.get("entry", {})
            if entry.get("level") == "error":
                url = f" [{entry['url']}]" if entry.get("url") else ""
                found.append(f"log ({entry.get('source', '?')}): {entry.get('text', '')}{url}")
    return found


def png_size(data):
    if len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


KOMMUNE_FACTS_JS = r"""(() => {
  const q = s => Array.from(document.querySelectorAll(s));
  const box = e => { if (!e) return null; const r = e.getBoundingClientRect();
                     return {width: r.width, height: r.height}; };
  const days = q('#dage span.day');
  const marts = q('table.mart');
  return {
    sections: {leveringer: !!document.getElementById('leveringer'),
               indikatorer: !!document.getElementById('indikatorer')},
    days: days.length, dayBox: box(days[0]),
    marts: marts.length,
    martRows: marts.reduce((n, t) => n + t.querySelectorAll('tr').length - 1, 0),
    text: document.body.innerText,
  };
})()"""


def check_kommune(facts, errors, png, name, others):
    fails = [f"console error: {e}" for e in errors]
    for s, present in facts["sections"].items():
        if not present:
            fails.append(f"section #{s} missing")
    if facts["days"] < 1:
        fails.append("#dage has no day")
    elif not facts["dayBox"] or facts["dayBox"]["width"] <= 0:
        fails.append(f"the days are not laid out ({facts['dayBox']})")
    if facts["marts"] < 1 or facts["martRows"] < 1:
        fails.append(f"{facts['marts']} indicator tables with {facts['martRows']} rows")
    if name not in facts["text"]:
        fails.append(f"the page does not name {name}")
    for o in others:
        if o in facts["text"]:
            fails.append(f"the page shows {o}, another municipality")
    if not png.startswith(PNG_SIGNATURE) or len(png) <= MIN_PNG_BYTES:
        fails.append(f"the screenshot is not a PNG of more than {MIN_PNG_BYTES} bytes")
    return fails


def render(page, shot, timeout, facts_js=None):
    """Loads the page in Chromium; returns (DOM facts, console errors, PNG bytes)."""
    exe = find_chromium()
    tmp = tempfile.mkdtemp(prefix="check_page-")
    profile = os.path.join(tmp, "profile")
    os.mkdir(profile)
    proc = cdp = None
    try:
        proc, browser_ws = start_chromium(exe, profile, timeout)
        try:
            cdp = CDP(browser_ws, timeout)
        except Exception as e:
            raise BrowserError(f"cannot connect to {browser_ws}: {e}")
        version = cdp.send("Browser.getVersion").get("product", "?")
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send("Emulation.setDeviceMetricsOverride",
                 {"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT,
                  "deviceScaleFactor": 1, "mobile": False}, session=session)

        url = page.resolve().as_uri()
        since = len(cdp.events)
        nav = cdp.send("Page.navigate", {"url": url}, session=session)
        if nav.get("errorText"):
            raise BrowserError(f"cannot open {url}: {nav['errorText']}")
        cdp.wait_event("Page.loadEventFired", since, session=session)
        # The load event must be this document's: wait for the file: URL to be complete.
        deadline = time.monotonic() + timeout
        while True:
            state = cdp.send("Runtime.evaluate", {
                "expression": "[location.href, document.readyState]",
                "returnByValue": True}, session=session)["result"]["value"]
            if state == [url, "complete"]:
                break
            if time.monotonic() > deadline:
                raise BrowserError(f"page not loaded within {timeout:.0f} s: {state}")
            time.sleep(0.1)
        cdp.drain(0.5)

        result = cdp.send("Runtime.evaluate", {"expression": facts_js or DOM_FACTS_JS,
                                               "returnByValue": True},
                          session=session)
        if "exceptionDetails" in result:
            raise BrowserError(f"DOM probe failed: {result['exceptionDetails']}")
        facts = result["result"]["value"]
        facts["browser"] = version

        metrics = cdp.send("Page.getLayoutMetrics", session=session)
        content = metrics.get("cssContentSize") or metrics["contentSize"]
        width = max(VIEWPORT_WIDTH, int(content["width"] + 0.999))
        height = min(MAX_SHOT_HEIGHT, max(1, int(content["height"] + 0.999)))
        shot_b64 = cdp.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        }, session=session)["data"]
        png = base64.b64decode(shot_b64)
        shot.parent.mkdir(parents=True, exist_ok=True)
        shot.write_bytes(png)
        facts["contentHeight"] = content["height"]

        cdp.drain(0.2)
        errors = console_errors(cdp.events, session)
        try:
            cdp.send("Browser.close", timeout=5)
        except Exception:
            pass
        return facts, errors, png
    finally:
        if cdp is not None:
            cdp.close()
        stop_chromium(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def check(facts, errors, png, expect_units):
    """The failed assertions, as messages (empty when the page passes)."""
    fails = []
    for e in errors:
        fails.append(f"console error: {e}")
    missing = [s for s in SECTIONS if not facts["sections"].get(s)]
    if missing:
        fails.append(f"sections missing: {', '.join(missing)}")

    ds = facts["datasets"]
    if ds is None:
        fails.append("no #heatmap-datasets")
    else:
        if not ds["isHeatmap"] or ds["tag"] != "svg":
            fails.append(f"#heatmap-datasets is a <{ds['tag']}> without class heatmap, not an svg.heatmap")
        if ds["cells"] < 1:
            fails.append("#heatmap-datasets has no rect.cell")
        if ds["unknownStatus"]:
            fails.append(f"#heatmap-datasets: {ds['unknownStatus']} cells without a status "
                         f"({'/'.join(STATUSES)})")
        b = ds["box"]
        if not b or b["width"] <= 0 or b["height"] <= 0:
            fails.append(f"#heatmap-datasets is not laid out (rendered box {b})")
        c = ds["firstCellBox"]
        if ds["cells"] and (not c or c["width"] <= 0 or c["height"] <= 0):
            fails.append(f"#heatmap-datasets cells are not laid out (first cell box {c})")

    if expect_units:
        u = facts["units"]
        if u is None:
            fails.append("no #heatmap-units (--expect-units)")
        else:
            if u["cells"] < MIN_UNIT_CELLS:
                fails.append(f"#heatmap-units has {u['cells']} cells, expected at least {MIN_UNIT_CELLS}")
            if u["unknownStatus"]:
                fails.append(f"#heatmap-units: {u['unknownStatus']} cells without a status")
            b = u["box"]
            if not b or b["width"] <= 0 or b["height"] <= 0:
                fails.append(f"#heatmap-units is not laid out (rendered box {b})")

    if facts["trendSeriesWithPoints"] < 1:
        fails.append(f"no trend chart with points (svg.trend: {facts['trendCharts']}, "
                     f"polyline.series: {facts['trendSeries']}, none with points)")

    for t in TABLES:
        if facts["tables"].get(t) is None:
            fails.append(f"table #{t} missing")
    if (facts["tables"].get("declaration-table") or 0) < 1:
        fails.append("#declaration-table has no data row")

    if not png.startswith(PNG_SIGNATURE):
        fails.append("the screenshot is not a PNG")
    elif len(png) <= MIN_PNG_BYTES:
        fails.append(f"the screenshot is only {len(png)} bytes (a blank page?)")
    return fails


def summary(facts, png):
    ds, u = facts["datasets"] or {}, facts["units"]
    dims = png_size(png)
    t = facts["tables"]
    parts = [
        f"sections {sum(facts['sections'].values())}/{len(SECTIONS)}",
        f"heatmap-datasets {ds.get('cells', 0)} cells/{ds.get('rows', 0)} rows "
        f"{json.dumps(ds.get('byStatus', {}), separators=(',', ':'))}"
        + (f" {ds['box']['width']:.0f}x{ds['box']['height']:.0f}px" if ds.get("box") else ""),
        (f"heatmap-units {u['cells']} cells/{u['rows']} rows" if u else "no heatmap-units"),
        f"trend charts {facts['trendCharts']}, series with points "
        f"{facts['trendSeriesWithPoints']}/{facts['trendSeries']}, points {facts['trendPoints']}",
        "rows " + " ".join(f"{k.removesuffix('-table')}={v}" for k, v in t.items())
        + f" failing={facts['failingRows']} in {facts['failingTables']}",
        f"screenshot {dims[0]}x{dims[1]} {len(png) // 1024} KB" if dims else f"screenshot {len(png)} B",
        facts["browser"],
    ]
    return "; ".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", type=Path, help="the operator page (HTML file)")
    ap.add_argument("screenshot", type=Path, help="where to write the full-page PNG")
    ap.add_argument("--expect-units", action="store_true",
                    help=f"require #heatmap-units with at least {MIN_UNIT_CELLS} cells")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds allowed for each wait on the browser (default 60)")
    ap.add_argument("--kommune", action="store_true",
                    help="the page is a municipality's own page")
    ap.add_argument("--kommune-name", help="the municipality the page must name")
    ap.add_argument("--other-name", action="append", default=[],
                    help="a municipality the page must not show (repeatable)")
    args = ap.parse_args()
    if not args.page.is_file():
        print(f"check_page: FAIL: {args.page} is not a file", file=sys.stderr)
        return 1
    started = time.monotonic()
    if args.kommune:
        try:
            facts, errors, png = render(args.page, args.screenshot, args.timeout, KOMMUNE_FACTS_JS)
        except BrowserError as e:
            print(f"check_page: ERROR: {e}", file=sys.stderr)
            return 2
        print(f"check_page: {args.page}: {facts['days']} days, {facts['marts']} indicator tables "
              f"with {facts['martRows']} rows, {facts['browser']}")
        fails = check_kommune(facts, errors, png, args.kommune_name or "", args.other_name)
        for f in fails:
            print(f"check_page: FAIL: {f}", file=sys.stderr)
        if fails:
            return 1
        print(f"check_page: OK, screenshot in {args.screenshot}")
        return 0
    try:
        facts, errors, png = render(args.page, args.screenshot, args.timeout)
    except BrowserError as e:
        print(f"check_page: ERROR: {e}", file=sys.stderr)
        return 2
    print(f"check_page: {args.page}: {summary(facts, png)} ({time.monotonic() - started:.1f} s)")
    fails = check(facts, errors, png, args.expect_units)
    for f in fails:
        print(f"check_page: FAIL: {f}", file=sys.stderr)
    if fails:
        print(f"check_page: {len(fails)} check(s) failed; screenshot in {args.screenshot}", file=sys.stderr)
        return 1
    print(f"check_page: OK, screenshot in {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
