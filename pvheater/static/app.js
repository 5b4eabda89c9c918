// pvheater status page: refresh the live values from /api/state, the energy and events from /api/summary,
// the chart now and then; send the mode and boost forms with the token in a header. Same origin only.
"use strict";
(function () {
  var body = document.body;
  var refreshMs = Math.max(1, parseFloat(body.dataset.refreshS) || 2) * 1000;
  var updates = 0;

  function jsRound(v) { var n = Math.round(v); return n === 0 ? 0 : n; }

  // The same formats as pvheater/web.py fmt_value().
  function fmt(kind, v) {
    if (v === null || v === undefined) { return "-"; }
    switch (kind) {
      case "w": return jsRound(v) + " W";
      case "pct": return jsRound(v) + " %";
      case "c": return v.toFixed(1) + " \u00b0C";
      case "deg": return jsRound(v) + "\u00b0";
      case "onoff": return v ? "closed" : "open";
      case "min": return jsRound(v / 60) + " min";
      case "kwh": return v.toFixed(2) + " kWh";
      default: return String(v);
    }
  }

  function heaterW(s) {
    return (s.heater_measured_w !== null && s.heater_measured_w !== undefined) ? s.heater_measured_w
      : s.heater_calibrated_w;
  }

  function houseW(s) {
    if (s.house_w !== null && s.house_w !== undefined) { return s.house_w; }
    if (s.consumption_w === null || s.consumption_w === undefined) { return null; }
    return Math.max(0, s.consumption_w - (heaterW(s) || 0));
  }

  function value(s, key) {
    if (key === "heater_w") { return heaterW(s); }
    if (key === "house_w") { return houseW(s); }
    return s[key];
  }

  function statusText(s) {
    if (s.loop_error) { return "loop error"; }
    if (s.fault) { return "GX error"; }
    if (s.failsafe) { return "fail-safe"; }
    if (s.tank_full) { return "tank full"; }
    if (s.relay_on) { return "heating"; }
    return "idle";
  }

  function clock(wallS) {
    if (!wallS || wallS < 1704067200) { return "(clock unset)"; }
    var d = new Date(wallS * 1000);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + " " +
      two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }

  function show(s) {
    var nodes = document.querySelectorAll("[data-key]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      var v = value(s, el.dataset.key);
      el.textContent = (el.dataset.key === "reason" && !v) ? "-" : fmt(el.dataset.fmt, v);
    }
    var chip = document.getElementById("status");
    chip.textContent = statusText(s);
    chip.className = "chip " + statusText(s).replace(/[^a-z]+/g, "-");
    document.getElementById("updated").textContent = clock(s.wall_s);
    body.dataset.wallS = String(s.wall_s);
    updates += 1;
    body.dataset.updates = String(updates);
  }

  function setLink(ok) {
    document.getElementById("link").hidden = ok;
  }

  function refresh() {
    fetch("/api/state", { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(function (s) { show(s); setLink(true); })
      .catch(function () { setLink(false); })
      .finally(function () { setTimeout(refresh, refreshMs); });
  }

  function text(tag, cls, content) {
    var el = document.createElement(tag);
    if (cls) { el.className = cls; }
    el.textContent = content;
    return el;
  }

  function showSummary(sm) {
    var keys = ["today", "week"];
    for (var i = 0; i < keys.length; i++) {
      var d = sm[keys[i]];
      if (!d) { continue; }
      var h = document.getElementById("e-" + keys[i] + "-heater");
      if (h) {
        h.textContent = d.heater_kwh.toFixed(2);
        document.getElementById("e-" + keys[i] + "-captured").textContent = d.captured_kwh.toFixed(2);
        document.getElementById("e-" + keys[i] + "-hours").textContent = d.heating_h.toFixed(1);
      }
    }
    var list = document.getElementById("events");
    if (!list || !sm.events) { return; }
    while (list.firstChild) { list.removeChild(list.firstChild); }
    if (sm.events.length === 0) { list.appendChild(text("li", "muted", "no events recorded")); }
    for (var k = 0; k < sm.events.length; k++) {
      var e = sm.events[k];
      var li = document.createElement("li");
      li.className = "ev-" + e.kind;
      li.appendChild(text("time", "", clock(e.wall_s)));
      li.appendChild(document.createTextNode(" " + e.label));
      if (e.detail) { li.appendChild(document.createTextNode(" ")); li.appendChild(text("span", "muted", e.detail)); }
      list.appendChild(li);
    }
  }

  function refreshSummary() {
    fetch("/api/summary", { cache: "no-store" }).then(function (r) { return r.json(); })
      .then(showSummary).catch(function () {})
      .finally(function () { setTimeout(refreshSummary, 60000); });
  }

  function refreshChart() {
    document.getElementById("chart").src = "/chart.svg?t=" + Date.now();
    setTimeout(refreshChart, 60000);
  }

  function send(form, submitter) {
    var data = new URLSearchParams(new FormData(form));
    if (submitter && submitter.name) { data.set(submitter.name, submitter.value); }
    var answer = document.getElementById("answer");
    answer.textContent = "sending\u2026";
    fetch(form.getAttribute("action"), {
      method: "POST",
      headers: { "X-Pvheater-Token": document.getElementById("token").value },
      body: data,
    }).then(function (r) { return r.json(); }).then(function (a) {
      answer.textContent = a.ok ? (a.message || "done") : ("refused: " + a.error);
      answer.className = a.ok ? "ok" : "error";
    }).catch(function (err) {
      answer.textContent = "no answer from pvheater (" + err + ")";
      answer.className = "error";
    });
  }

  // The chart's state on <body data-chart>: its size once drawn, "failed" (and a note) when it cannot load.
  var chart = document.getElementById("chart");
  function chartLoaded() { body.dataset.chart = chart.naturalWidth + "x" + chart.naturalHeight; }
  chart.addEventListener("load", chartLoaded);
  chart.addEventListener("error", function () {
    body.dataset.chart = "failed";
    chart.alt = "the chart cannot be loaded";
  });
  if (chart.complete && chart.naturalWidth > 0) { chartLoaded(); }

  var forms = document.querySelectorAll("form.cmd");
  for (var f = 0; f < forms.length; f++) {
    forms[f].addEventListener("submit", function (ev) { ev.preventDefault(); send(ev.target, ev.submitter); });
  }
  refresh();
  setTimeout(refreshSummary, 60000);
  setTimeout(refreshChart, 60000);
})();
