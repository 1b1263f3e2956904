/* Accounting on the admin page (issue 15 A): report table, CSV link, price book and budget editors, charts
 * (Chart.js 4, loaded by the page from static/lib/chart.umd.js before this script). Talks to the accounting
 * API through the prefix in #accounting[data-api] (the admin page's proxy, which adds the viewer's token).
 * Editors never reload the page: what was typed stays, and the API's refusal is shown under the form. */
(function () {
  "use strict";
  var root = document.getElementById("accounting");
  if (!root) { return; }
  var api = root.getAttribute("data-api");
  var xsrfEl = document.querySelector("#acc-xsrf input[name=_xsrf]");
  var charts = {};

  function $(id) { return document.getElementById(id); }
  function num(x, d) { return (x || 0).toLocaleString(undefined, { maximumFractionDigits: d === undefined ? 2 : d }); }
  var colour = window.AIStackAdmin.colour;  // common.js: the same tenant colours as the dashboard
  function call(method, path, body) { return window.AIStackAdmin.call(api, xsrfEl, method, path, body); }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function query() {
    var p = new URLSearchParams();
    if ($("acc-start").value) { p.set("start", $("acc-start").value); }
    if ($("acc-end").value) { p.set("end", $("acc-end").value); }
    p.set("group_by", $("acc-group").value);
    return p;
  }

  function loadReport() {
    var p = query(), g = $("acc-group").value;
    var csv = new URLSearchParams(p);
    csv.set("format", "csv");
    $("acc-csv").href = api + "report?" + csv.toString();
    root.querySelectorAll(".acc-user").forEach(function (e) { e.classList.toggle("d-none", g.indexOf("user") < 0); });
    root.querySelectorAll(".acc-model").forEach(function (e) { e.classList.toggle("d-none", g.indexOf("gpu_model") < 0); });
    return call("GET", "report?" + p.toString()).then(function (rep) {
      $("acc-report-error").classList.add("d-none");
      var body = $("acc-report").querySelector("tbody");
      body.textContent = "";
      rep.rows.forEach(function (r) {
        var tr = document.createElement("tr");
        cell(tr, r.tenant);
        cell(tr, r.user || "", "acc-user" + (g.indexOf("user") < 0 ? " d-none" : ""));
        cell(tr, r.gpu_model || "", "acc-model" + (g.indexOf("gpu_model") < 0 ? " d-none" : ""));
        cell(tr, num(r.gpu_hours), "text-end");
        cell(tr, num(r.charged_gpu_hours), "text-end");
        cell(tr, num(r.idle_gpu_hours), "text-end");
        cell(tr, String(r.jobs), "text-end");
        cell(tr, String(r.servers), "text-end");
        cell(tr, num(r.cost) + " " + (r.currency || ""), "text-end");
        body.appendChild(tr);
      });
      $("acc-report").querySelectorAll("tfoot [data-f]").forEach(function (td) {
        var f = td.getAttribute("data-f");
        td.textContent = num(rep.totals[f]) + (f === "cost" && rep.currency ? " " + rep.currency : "");
      });
      $("acc-report-more").textContent = rep.rows.length + " of " + rep.total + " rows, " + rep.start.slice(0, 10) +
        " to " + rep.end.slice(0, 10) + (rep.next_offset !== null ? " (the CSV has them all)" : "");
    }).catch(function (e) {
      $("acc-report-error").textContent = e.message;
      $("acc-report-error").classList.remove("d-none");
    });
  }

  function loadDaily() {
    if (typeof Chart === "undefined") { return Promise.resolve(); }
    return call("GET", "report?period=30d&group_by=tenant,day&limit=1000").then(function (rep) {
      var days = [], tenants = [], val = {};
      rep.rows.forEach(function (r) {
        if (days.indexOf(r.day) < 0) { days.push(r.day); }
        if (tenants.indexOf(r.tenant) < 0) { tenants.push(r.tenant); }
        val[r.tenant + "|" + r.day] = r.gpu_hours;
      });
      days.sort();
      tenants.sort();
      var datasets = tenants.map(function (t) {
        return { label: t, backgroundColor: colour(t, 0.8), borderColor: colour(t), borderWidth: 1,
                 data: days.map(function (d) { return val[t + "|" + d] || 0; }) };
      });
      if (charts.daily) { charts.daily.destroy(); }
      charts.daily = new Chart($("acc-chart-daily"), { type: "bar", data: { labels: days, datasets: datasets },
        options: { maintainAspectRatio: false, animation: false,
          scales: { x: { stacked: true, ticks: { autoSkip: true, maxRotation: 0 } },
                    y: { stacked: true, beginAtZero: true, title: { display: true, text: "GPU-hours" } } } } });
    });
  }

  function loadBudgets() {
    return call("GET", "budgets?limit=1000").then(function (res) {
      var body = $("acc-budgets").querySelector("tbody");
      body.textContent = "";
      res.budgets.forEach(function (b) {
        var tr = document.createElement("tr");
        cell(tr, b.tenant);
        cell(tr, num(b.spent) + " " + b.currency, "text-end");
        cell(tr, num(b.amount) + " " + b.currency, "text-end");
        var st = cell(tr, b.holding ? "over: new work held" : b.over ? "over budget" :
          b.warning ? "warning (" + Math.round(b.fraction * 100) + "%)" : "ok");
        st.className = b.over ? "text-danger fw-semibold" : b.warning ? "text-warning-emphasis" : "";
        body.appendChild(tr);
      });
      if (typeof Chart === "undefined") { return; }
      var labels = res.budgets.map(function (b) { return b.tenant; });
      if (charts.budget) { charts.budget.destroy(); }
      charts.budget = new Chart($("acc-chart-budget"), { type: "bar", data: { labels: labels, datasets: [
        { label: "spent", data: res.budgets.map(function (b) { return b.spent; }),
          backgroundColor: res.budgets.map(function (b) { return colour(b.tenant, 0.8); }) },
        { label: "budget", data: res.budgets.map(function (b) { return b.amount; }), type: "line",
          showLine: false, pointStyle: "line", pointRadius: 18, pointBorderWidth: 3, borderColor: "#dc3545" }] },
        options: { maintainAspectRatio: false, animation: false,
                   scales: { y: { beginAtZero: true, title: { display: true, text: "cost this month" } } } } });
    });
  }

  function loadPrices() {
    return call("GET", "prices?limit=200").then(function (res) {
      var body = $("acc-prices").querySelector("tbody");
      body.textContent = "";
      res.prices.forEach(function (p) {
        var tr = document.createElement("tr");
        cell(tr, p.resource);
        cell(tr, p.gpu_model || (p.resource === "gpu" ? "any" : ""));
        cell(tr, num(p.unit_price, 4) + " " + p.currency, "text-end");
        cell(tr, p.effective_from);
        var td = cell(tr, "");
        if (!p.in_force_or_past && root.getAttribute("data-admin") === "1") {
          var b = document.createElement("button");
          b.className = "btn btn-sm btn-outline-danger";
          b.type = "button";
          b.textContent = "delete";
          b.addEventListener("click", function () {
            call("DELETE", "prices/" + p.id).then(loadPrices).catch(function (e) { $("acc-price-error").textContent = e.message; });
          });
          td.appendChild(b);
        }
        body.appendChild(tr);
      });
      $("acc-prices-more").textContent = res.prices.length < res.total ? res.prices.length + " of " + res.total + " versions" : "";
    });
  }

  function editor(formId, errId, send) {
    var form = $(formId);
    if (!form) { return; }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var err = $(errId);
      err.textContent = "";
      var msg = null;
      try { msg = send(form); } catch (e) { err.textContent = e.message; return; }
      msg.then(function () { err.textContent = ""; return Promise.all([loadPrices(), loadBudgets(), loadReport()]); })
        .catch(function (e) { err.textContent = e.message; });  // the input stays as typed
    });
  }
  function number(form, name) {
    var v = form.elements[name].value.trim();
    if (v === "" || isNaN(Number(v))) { throw new Error(name.replace("_", " ") + " must be a number"); }
    return Number(v);
  }
  editor("acc-price-form", "acc-price-error", function (f) {
    var body = { resource: f.elements.resource.value, unit_price: number(f, "unit_price"),
                 effective_from: f.elements.effective_from.value };
    if (!body.effective_from) { throw new Error("effective from: pick a date"); }
    if (f.elements.gpu_model.value.trim()) { body.gpu_model = f.elements.gpu_model.value.trim(); }
    return call("POST", "prices", body);
  });
  editor("acc-budget-form", "acc-budget-error", function (f) {
    var tenant = f.elements.tenant.value.trim();
    if (!tenant) { throw new Error("tenant: name one"); }
    var thr = f.elements.thresholds.value.split(",").map(function (x) { return x.trim(); }).filter(Boolean).map(Number);
    if (thr.some(isNaN)) { throw new Error("warn at: fractions such as 0.5,0.8,1"); }
    return call("PUT", "budgets/" + encodeURIComponent(tenant),
                { amount: number(f, "amount"), thresholds: thr, hold: f.elements.hold.checked });
  });
  $("acc-report-form").addEventListener("submit", function (ev) { ev.preventDefault(); loadReport(); });

  Promise.all([loadReport(), loadPrices(), loadBudgets(), loadDaily()]).catch(function (e) {
    $("acc-report-error").textContent = e.message;
    $("acc-report-error").classList.remove("d-none");
  }).then(function () { root.setAttribute("data-loaded", "1"); });
})();
