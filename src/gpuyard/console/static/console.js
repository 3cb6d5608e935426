// gpuyard console: the theme, copy buttons, confirmations, no double submits, charts, the
// playground's streamed chat and uploads with progress.
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
    if (form.dataset.stream) { event.preventDefault(); streamChat(form); return; }
    if (form.hasAttribute("data-upload") && window.XMLHttpRequest) {
      event.preventDefault(); upload(form); return;
    }
    if (form.method.toLowerCase() !== "post") return;
    form.dataset.sent = "1";
    form.querySelectorAll("button[type=submit]").forEach(function (b) {
      b.disabled = true;
      b.setAttribute("aria-busy", "true");
    });
  });

  function busy(form, on) {
    if (on) form.dataset.sent = "1"; else delete form.dataset.sent;
    form.querySelectorAll("button[type=submit]").forEach(function (b) {
      b.disabled = on;
      if (on) b.setAttribute("aria-busy", "true"); else b.removeAttribute("aria-busy");
    });
  }

  // A refused request's words: the console's JSON {error}, else the page's alert.
  function refusalText(status, type, text) {
    if (type.indexOf("application/json") === 0) {
      try { var body = JSON.parse(text); if (body.error) return String(body.error); } catch (e) { /* below */ }
    }
    var alert = new DOMParser().parseFromString(text, "text/html").querySelector("[role=alert]");
    return alert ? alert.textContent.trim() : "The request failed (HTTP " + status + ").";
  }

  function turn(list, role, content) {
    var item = document.createElement("li");
    item.className = "turn " + role;
    var who = document.createElement("span");
    who.className = "role";
    who.textContent = role === "user" ? "You" : "Model";
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = content;  // text, never HTML
    item.append(who, " ", text);
    list.append(item);
    return item;
  }

  // Chat: the form goes to its data-stream URL, which relays the API's Server-Sent Events;
  // each delta is appended as it arrives.
  function streamChat(form) {
    var error = form.querySelector("[data-chat-error]");
    var list = document.getElementById(form.dataset.transcript);
    var data = new FormData(form);
    var message = String(data.get("message") || "").trim();
    var history = JSON.parse(form.elements.history.value || "[]");
    error.hidden = true;
    busy(form, true);
    var mine = turn(list, "user", message);
    var answer = turn(list, "assistant", "");
    var text = answer.querySelector(".text");
    var chunks = 0;
    var failed = null;
    answer.setAttribute("aria-busy", "true");
    answer.dataset.testid = "streaming";

    function fail(words) {
      mine.remove();
      answer.remove();
      error.textContent = words;
      error.hidden = false;
      busy(form, false);
    }
    function done() {
      if (failed) { fail(failed); return; }
      answer.removeAttribute("aria-busy");
      answer.dataset.chunks = String(chunks);
      answer.dataset.testid = "answer";
      history.push({ role: "user", content: message }, { role: "assistant", content: text.textContent });
      form.elements.history.value = JSON.stringify(history);
      form.elements.message.value = "";
      busy(form, false);
    }
    function handle(block) {
      block.split("\n").forEach(function (line) {
        if (line.indexOf("data:") !== 0) return;
        var payload = line.slice(5).trim();
        if (!payload || payload === "[DONE]") return;
        var chunk = JSON.parse(payload);
        if (chunk.error) { failed = chunk.error.message || String(chunk.error); return; }
        (chunk.choices || []).forEach(function (choice) {
          var piece = choice.delta && choice.delta.content;
          if (piece) {
            text.textContent += piece;
            chunks += 1;
            answer.dataset.chunks = String(chunks);
          }
        });
      });
    }
    fetch(form.dataset.stream, {
      method: "POST", body: new URLSearchParams(data), credentials: "same-origin",
      headers: { "Accept": "text/event-stream" }
    }).then(function (response) {
      var type = response.headers.get("content-type") || "";
      if (response.redirected) { window.location.assign(response.url); return null; }
      if (!response.ok || type.indexOf("text/event-stream") !== 0) {
        return response.text().then(function (body) { fail(refusalText(response.status, type, body)); });
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (part) {
          if (part.done) { if (buffer) handle(buffer); done(); return null; }
          buffer += decoder.decode(part.value, { stream: true }).replace(/\r/g, "");
          var blocks = buffer.split("\n\n");
          buffer = blocks.pop();
          blocks.forEach(handle);
          return pump();
        });
      }
      return pump();
    }).catch(function (e) { fail("The answer was cut off: " + e.message); });
  }

  // Upload: sent by XMLHttpRequest for its progress events; then the collection's page.
  function upload(form) {
    var bar = form.querySelector("progress");
    var status = form.querySelector("[data-upload-status]");
    var request = new XMLHttpRequest();
    busy(form, true);
    bar.hidden = false;
    request.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) return;
      bar.max = event.total;
      bar.value = event.loaded;
      status.textContent = "Uploading: " + Math.round(100 * event.loaded / event.total) + "%";
    });
    request.addEventListener("load", function () {
      if (request.status < 400) {
        status.textContent = "Uploaded.";
        window.location.assign(request.responseURL);
        return;
      }
      var type = request.getResponseHeader("content-type") || "";
      status.textContent = refusalText(request.status, type, request.responseText);
      status.setAttribute("role", "alert");
      bar.hidden = true;
      busy(form, false);
    });
    request.addEventListener("error", function () {
      status.textContent = "The upload failed: the server could not be reached.";
      bar.hidden = true;
      busy(form, false);
    });
    request.open("POST", form.action);
    request.send(new FormData(form));
  }

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
