"""The page's script under Node with a stand-in DOM (no browser): it keeps the run's loss series
through thinnings as the event stream sends them, and shows "stopping…" after Stop, then the run's
own word ("stopped")."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources

import pytest

from jaxstyle.preview import live as live_module
from jaxstyle.preview.live import LiveRun

NODE = shutil.which("node")

HARNESS = r"""
const vm = require("vm");
const elements = {};
const context = new Proxy({}, {get: () => () => ({width: 0}), set: () => true});
function element(id) {
  return elements[id] ||= {id, textContent: "", dataset: {}, innerHTML: "", disabled: false, value: 0, src: "",
    width: 560, height: 240, listeners: {}, addEventListener(type, f) { this.listeners[type] = f; },
    appendChild() {}, querySelector(q) { return element(id + " " + q); }, getContext() { return context; }};
}
let made = 0;
globalThis.window = globalThis;
globalThis.location = {search: "?token=t"};
globalThis.document = {getElementById: element, createElement: tag => element(tag + made++),
                       querySelectorAll: () => [element("stop"), element("snapshot")]};
globalThis.fetch = () => Promise.resolve({ok: true, json: () => Promise.resolve({ok: true})});
globalThis.EventSource = class { constructor() { globalThis.source = this; } close() { this.closed = true; } };
vm.runInThisContext(SCRIPT);
const seen = [];
(async () => {
  for (const message of MESSAGES) {
    if (message === "click stop") {
      element("stop").listeners.click();
      await new Promise(r => setTimeout(r, 0));  // the post's answer
      continue;
    }
    source.onmessage({data: JSON.stringify(message)});
    seen.push(element("status").textContent);
  }
  console.log(JSON.stringify({steps: preview.curves.map(p => p.step), seen, closed: !!source.closed,
                              stop: element("stop").disabled}));
})();
"""


@pytest.mark.skipif(NODE is None, reason="needs Node.js")
def test_the_page_keeps_the_thinned_series_and_says_stopped(monkeypatch):
    monkeypatch.setattr(live_module, "MAX_POINTS", 16)
    live, last, messages = LiveRun("t", 1000, {"style_weight": 1.0}), None, []
    for step in range(1, 120):
        live.report(step, terms={"total": float(step), "style": 1.0})
        if step % 3 == 0:
            last = live.news(last)
            messages.append(last)
        if step == 90:
            messages.append("click stop")  # the page posts it (to a stand-in here); the run gets it so:
            live.request("stop")
    assert live.take_stop()
    live.end("ended")
    messages.append(live.news(last))
    script = re.search(r"<script>(.*)</script>", resources.files("jaxstyle.preview").joinpath("page.html")
                       .read_text(), re.S).group(1)
    program = HARNESS.replace("SCRIPT", json.dumps(script)).replace("MESSAGES", json.dumps(messages))
    done = subprocess.run([NODE, "-e", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert page["steps"] == [p["step"] for p in live.state(0)["curves"]]  # the run's series, thinned as it is
    assert page["steps"][-1] == 119
    assert page["seen"][29] == "running" and page["seen"][30] == "stopping…" and page["seen"][-1] == "stopped"
    assert page["closed"] and page["stop"]
