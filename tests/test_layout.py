"""The email as a reader's screen shows it: the inlined HTML laid out by a real browser
(Debian's chromium, headless) at a phone's width and a desktop's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mailer.articles import ingest_file
from mailer.demo import SAMPLE_ARTICLE
from mailer.messages import preview
from mailer.render import render_article_issue

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

# Two frames of the email, 375 px (a phone) and 1000 px wide; a script measures each.
PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="phone" src="email.html" style="width:375px;height:900px;border:0"></iframe>
<iframe id="desktop" src="email.html" style="width:1000px;height:900px;border:0"></iframe>
<script>
function measure(id) {
  var doc = document.getElementById(id).contentDocument, win = doc.defaultView;
  var first = Array.from(doc.querySelectorAll('p')).find(function (p) {
    return p.textContent.indexOf('MOSCOW') === 0; });
  var column = doc.querySelector('table[width="600"]');
  return {viewport: win.innerWidth, scroll: doc.documentElement.scrollWidth,
          font: parseFloat(win.getComputedStyle(first).fontSize),
          text: first.getBoundingClientRect().width,
          column: column.getBoundingClientRect().width};
}
window.addEventListener('load', function () {
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({phone: measure('phone'), desktop: measure('desktop')});
  document.body.appendChild(out);
});
</script></body></html>"""


@pytest.fixture
def layout(engine, settings, tmp_path: Path) -> dict[str, dict[str, float]]:
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    (tmp_path / "email.html").write_text(
        preview(settings, render_article_issue(settings, article)), encoding="utf-8"
    )
    (tmp_path / "probe.html").write_text(PROBE, encoding="utf-8")
    result = subprocess.run(
        [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--allow-file-access-from-files",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000",
         "--dump-dom", (tmp_path / "probe.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.search(r'<pre id="probe">([^<]*)</pre>', result.stdout)
    assert found, result.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"'))


def test_on_a_phone_the_email_fits_the_screen_with_readable_text(layout):
    phone = layout["phone"]
    assert phone["viewport"] == 375
    assert phone["scroll"] <= phone["viewport"], "no sideways scrolling"
    assert phone["column"] <= 375 and phone["text"] >= 300, "one column, full width"
    assert phone["font"] >= 16


def test_on_a_desktop_the_email_is_one_column_at_most_600px(layout):
    desktop = layout["desktop"]
    assert desktop["column"] == 600
    assert desktop["text"] <= 600 and desktop["font"] >= 16
