/* The admin dashboard's charts (Chart.js 4, served at static/lib/chart.umd.js). Data: #dashboard-data.
 * Colours: a tenant's colour is a hash of its name (stable across days, pages and reloads); the theme's
 * text and grid colours come from Bootstrap's CSS variables, so dark mode (data-bs-theme) is followed. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("dashboard-data").textContent || "{}");
  if (typeof Chart === "undefined") {
    document.getElementById("chartjs-missing").classList.remove("d-none");
    document.documentElement.setAttribute("data-charts", "missing");
    return;
  }
  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  var colour = window.AIStackAdmin.colour;  // common.js: a tenant's stable colour
  function theme() {
    Chart.defaults.color = cssVar("--bs-body-color") || "#212529";
    Chart.defaults.borderColor = cssVar("--bs-border-color-translucent") || "rgba(0,0,0,.15)";
    Chart.defaults.font.family = cssVar("--bs-body-font-family") || "system-ui";
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.animation = false;
  }
  theme();
  function hhmm(ts) { var d = new Date(ts * 1000); return d.toISOString().slice(11, 16); }
  var charts = {};

  // GPU utilisation over time, one line per GPU
  var gpus = (data.gpus && data.gpus.series) || [];
  var utilEl = document.getElementById("chart-gpu-util");
  if (utilEl) {
    if (data.gpus && data.gpus.source) { document.getElementById("gpu-source").textContent = "(" + data.gpus.source + ")"; }
    if (!gpus.length) { document.getElementById("gpu-util-empty").classList.remove("d-none"); }
    charts.util = new Chart(utilEl, {
      type: "line",
      data: { datasets: gpus.map(function (s) {
        return { label: s.gpu, data: s.points.map(function (p) { return { x: p.ts, y: p.util_pct }; }),
                 borderColor: colour(s.gpu), backgroundColor: colour(s.gpu, 0.2), pointRadius: 0, tension: 0.2 };
      }) },
      options: { parsing: true, interaction: { mode: "nearest", intersect: false },
        scales: { x: { type: "linear", title: { display: true, text: "time (UTC)" },
                       min: data.gpus && data.gpus.since, max: data.gpus && data.gpus.until,
                       ticks: { callback: function (v) { return hhmm(v); }, maxTicksLimit: 8 } },
                  y: { min: 0, max: 100, title: { display: true, text: "utilisation (%)" } } },
        plugins: { legend: { position: "bottom" } } }
    });
  }

  // GPU-hours per tenant per day: stacked bars, a category axis of days (every day of the span shown)
  var rows = data.gpu_hours || [];
  var hoursEl = document.getElementById("chart-gpu-hours");
  if (hoursEl) {
    var days = Array.from(new Set(rows.map(function (r) { return r.day; }))).sort();
    var tenants = Array.from(new Set(rows.map(function (r) { return r.tenant; }))).sort();
    if (!rows.length) { document.getElementById("gpu-hours-empty").classList.remove("d-none"); }
    charts.hours = new Chart(hoursEl, {
      type: "bar",
      data: { labels: days, datasets: tenants.map(function (t) {
        return { label: t, backgroundColor: colour(t, 0.85), borderColor: colour(t), borderWidth: 1,
                 maxBarThickness: 48,
                 data: days.map(function (d) {
                   var r = rows.find(function (x) { return x.day === d && x.tenant === t; });
                   return r ? r.gpu_hours : 0;
                 }) };
      }) },
      options: { scales: { x: { stacked: true, title: { display: true, text: "day (UTC)" },
                                ticks: { autoSkip: true, maxRotation: 45 } },
                           y: { stacked: true, beginAtZero: true, title: { display: true, text: "GPU-hours" } } },
                 plugins: { legend: { position: "bottom" },
                            tooltip: { callbacks: { label: function (c) {
                              return c.dataset.label + ": " + c.parsed.y.toFixed(2) + " GPU-h"; } } } } }
    });
  }

  // Queue: jobs waiting (bars) and mean wait of the jobs that started (line, right axis)
  var q = (data.queue && data.queue.points) || [];
  var queueEl = document.getElementById("chart-queue");
  if (queueEl) {
    charts.queue = new Chart(queueEl, {
      data: { labels: q.map(function (p) { return hhmm(p.ts); }), datasets: [
        { type: "bar", label: "jobs waiting", data: q.map(function (p) { return p.queued; }), yAxisID: "y",
          backgroundColor: colour("queue", 0.6) },
        { type: "line", label: "mean wait (min)", yAxisID: "wait", spanGaps: true, pointRadius: 2,
          borderColor: colour("wait"), data: q.map(function (p) { return p.mean_wait_s == null ? null : p.mean_wait_s / 60; }) }
      ] },
      options: { scales: { x: { title: { display: true, text: "time (UTC)" }, ticks: { maxTicksLimit: 12 } },
                           y: { beginAtZero: true, title: { display: true, text: "jobs waiting" }, ticks: { precision: 0 } },
                           wait: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
                                   title: { display: true, text: "mean wait (min)" } } },
                 plugins: { legend: { position: "bottom" } } }
    });
  }

  // Alarms of the monitor (XID, disks, stuck queue, samples that cannot be read)
  var list = document.getElementById("monitoring-alarms");
  var items = (data.alarms && data.alarms.items) || [];
  if (list && items.length) {
    document.getElementById("monitoring-alarms-empty").classList.add("d-none");
    items.forEach(function (a) {
      var div = document.createElement("div");
      div.className = "alert py-1 px-2 mb-1 small alert-" + (a.severity === "danger" ? "danger" : "warning");
      div.setAttribute("data-alarm", a.kind + ":" + a.subject);
      div.textContent = a.text;
      list.appendChild(div);
    });
  }

  // The theme may change (the navbar's toggle, the system's scheme): redraw in its colours
  new MutationObserver(function () {
    theme();
    Object.keys(charts).forEach(function (k) {
      var c = charts[k];
      Object.values(c.options.scales || {}).forEach(function (s) {
        s.ticks = s.ticks || {}; s.ticks.color = Chart.defaults.color;
        s.grid = s.grid || {}; s.grid.color = Chart.defaults.borderColor;
        if (s.title) { s.title.color = Chart.defaults.color; }
      });
      if (c.options.plugins && c.options.plugins.legend) { c.options.plugins.legend.labels = { color: Chart.defaults.color }; }
      c.update();
    });
  }).observe(document.documentElement, { attributes: true, attributeFilter: ["data-bs-theme"] });
  document.documentElement.setAttribute("data-charts", "ready");
  window.aistackCharts = charts;
})();
