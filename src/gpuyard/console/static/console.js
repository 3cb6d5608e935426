// gpuyard console: the theme, copy buttons, confirmations, no double submits, and charts.
// Loaded in <head> without defer so the theme applies before the first paint.
(function () {
  "use strict";
  var root = document.documentElement;
  var saved = null;
  try { saved = localStorage.getItem("gpuyard-theme"); } catch (e) { /* private mode */ }
  if (saved === "light" || saved === "dark") root.dataset.theme = saved;

  function dark() {
    if (root.dataset.theme) return root.dataset.theme === "dark";
    return window.matchMedia("(prefers-color-scheme: dark)").matches;
  }

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-theme-toggle]");
    if (toggle) {
      root.dataset.theme = dark() ? "light" : "dark";
      try { localStorage.setItem("gpuyard-theme", root.dataset.theme); } catch (e) { /* ignore */ }
      drawCharts(document);
      return;
    }
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var field = document.querySelector(copy.dataset.copy);
      field.select();
      if (navigator.clipboard) navigator.clipboard.writeText(field.value);
      else document.execCommand("copy");
      copy.textContent = "Copied";
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var asking = event.submitter && event.submitter.dataset.confirm;
    if (asking && !window.confirm(asking)) { event.preventDefault(); return; }
    if (form.dataset.sent) { event.preventDefault(); return; }  // no double submits
    if (form.method.toLowerCase() !== "post") return;
    form.dataset.sent = "1";
    form.querySelectorAll("button[type=submit]").forEach(function (b) {
      b.disabled = true;
      b.setAttribute("aria-busy", "true");
    });
  });

  var charts = new WeakMap();
  function drawCharts(scope) {
    if (!window.Chart) return;
    scope.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var spec = JSON.parse(canvas.dataset.chart);
      var old = charts.get(canvas);
      if (old) old.destroy();
      var text = dark() ? "#e8eaee" : "#16181d";
      // One series ({label, values}) or several ({series: [{label, values}, ...]}).
      var series = spec.series || [{ label: spec.label, values: spec.values }];
      var options = {
        animation: false,
        maintainAspectRatio: false,
        color: text,
        plugins: { legend: { labels: { color: text } } }
      };
      if (spec.type !== "doughnut") {
        var grid = dark() ? "#323844" : "#d9dde3";
        options.scales = {
          x: { ticks: { color: text }, grid: { color: grid } },
          y: { beginAtZero: true, ticks: { color: text }, grid: { color: grid },
               title: { display: !!spec.unit, text: spec.unit || "", color: text } }
        };
      }
      charts.set(canvas, new window.Chart(canvas, {
        type: spec.type,
        data: {
          labels: spec.labels,
          datasets: series.map(function (s) {
            return { label: s.label, data: s.values, stepped: !!spec.stepped };
          })
        },
        options: options
      }));
    });
  }
  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:load", function (event) { drawCharts(event.target); });
})();
