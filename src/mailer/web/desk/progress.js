// The issue page's live progress: asks the desk for the counts every 1.5 s and
// updates the numbers and the bar in place, until nothing more happens by itself.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box || box.getAttribute("data-done") === "true") return;
  var url = box.getAttribute("data-url");
  var bar = box.querySelector("progress");

  function set(name, value) {
    var shown = box.querySelector('[data-field="' + name + '"]');
    if (shown) shown.textContent = value;
  }

  function minutes(seconds) {
    if (seconds === null) return "–";
    return seconds < 60 ? "under a minute" : "about " + Math.round(seconds / 60) + " min";
  }

  function show(p) {
    ["state", "sent", "deferred", "failed", "skipped", "waiting", "total"].forEach(function (name) {
      set(name, p[name]);
    });
    set("rate", p.per_minute === null ? "–" : p.per_minute + " a minute");
    set("left", minutes(p.seconds_left));
    bar.max = Math.max(p.total, 1);
    bar.value = p.total - p.waiting;
    if (p.done) box.setAttribute("data-done", "true");
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (p) {
        if (p) show(p);
        if (p && !p.done) setTimeout(poll, 1500); // no such issue, or gone: a reload tells
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  poll();
})();
