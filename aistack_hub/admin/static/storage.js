/* Tenant storage and environments on the admin page (issue 15 C): usage against quota (Chart.js 4 bars,
 * loaded by the page before this script), quota and dataset editors, the environment catalog editor. Talks to
 * the service API through the prefix in #storage[data-api] / #environments[data-api] (the admin page's
 * proxy adds the viewer's token). Forms never reload the page: what was typed stays, the API's refusal is
 * shown under the form. Done when #storage[data-loaded=1] and #environments[data-loaded=1]. */
(function () {
  "use strict";
  var xsrfEl = document.querySelector("#st-xsrf input[name=_xsrf]") || document.querySelector("input[name=_xsrf]");
  var chart = null;

  function $(id) { return document.getElementById(id); }
  function gib(b) { return (b / 1073741824).toLocaleString(undefined, { maximumFractionDigits: 2 }); }
  function list(s) { return (s || "").split(",").map(function (x) { return x.trim(); }).filter(Boolean); }
  function call(api, method, path, body) { return window.AIStackAdmin.call(api, xsrfEl, method, path, body); }
  function row(tbody, cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (c) {
      var td = document.createElement("td");
      if (c instanceof Node) { td.appendChild(c); } else { td.textContent = c === null || c === undefined ? "" : c; }
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
    return tr;
  }
  function bar(u) {
    var wrap = document.createElement("div");
    wrap.className = "progress";
    wrap.setAttribute("role", "progressbar");
    var pct = Math.min(100, Math.round((u.used_share || 0) * 100));
    wrap.setAttribute("aria-valuenow", String(pct));
    var b = document.createElement("div");
    b.className = "progress-bar " + (u.over_quota ? "bg-danger" : u.warning ? "bg-warning" : "bg-success");
    b.style.width = pct + "%";
    b.textContent = u.quota_gib ? pct + "%" : "no quota";
    wrap.appendChild(b);
    return wrap;
  }
  function form(id, errId, submit) {
    var f = $(id);
    if (!f) { return; }
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      $(errId).textContent = "";
      submit(f).then(function () { load(); }).catch(function (e) { $(errId).textContent = e.message; });
    });
  }

  var st = $("storage"), envs = $("environments");
  function loadStorage() {
    if (!st) { return Promise.resolve(); }
    var api = st.getAttribute("data-api");
    return call(api, "GET", "storage?limit=500").then(function (d) {
      var tbody = $("st-usage").querySelector("tbody");
      tbody.textContent = "";
      d.items.forEach(function (u) {
        // on Kubernetes the usage is a scan pod's (claim): say when none measured it, and why
        var note = u.partial ? " (partial scan)" : (u.measured_at === null ? " (not measured: " + (u.message || "no scan yet") + ")"
          : (u.message ? " (last scan failed: " + u.message + ")" : ""));
        row(tbody, [u.tenant + note, gib(u.used_bytes) + " GiB",
                    u.quota_gib ? u.quota_gib + " GiB" : "none", bar(u)]);
      });
      $("st-more").textContent = d.next_offset !== null ? ("first 500 of " + d.total + " tenants") : "";
      $("st-enforcement").textContent = d.items.length ? ("Quota: " + d.items[0].enforcement + ".") : "";
      if (window.Chart) {
        var data = { labels: d.items.map(function (u) { return u.tenant; }), datasets: [
          { label: "used GiB", data: d.items.map(function (u) { return u.used_bytes / 1073741824; }),
            backgroundColor: d.items.map(function (u) { return u.over_quota ? "#dc3545" : "#198754"; }) },
          { label: "quota GiB", data: d.items.map(function (u) { return u.quota_gib; }), backgroundColor: "rgba(108,117,125,.35)" }] };
        if (chart) { chart.data = data; chart.update(); } else {
          chart = new window.Chart($("st-chart"), { type: "bar", data: data, options: { indexAxis: "y",
            responsive: true, maintainAspectRatio: false,
            scales: { x: { beginAtZero: true, title: { display: true, text: "GiB" } } } } });
        }
      }
      if (!$("st-datasets")) { return null; }
      return call(api, "GET", "datasets?limit=500").then(function (ds) {
        var tb = $("st-datasets").querySelector("tbody");
        tb.textContent = "";
        ds.items.forEach(function (x) {
          var del = document.createElement("button");
          del.className = "btn btn-sm btn-outline-danger";
          del.textContent = "unpublish";
          del.addEventListener("click", function () {
            call(api, "DELETE", "datasets/" + encodeURIComponent(x.name)).then(load)
              .catch(function (e) { $("st-dataset-error").textContent = e.message; });
          });
          row(tb, [x.name, x.tenants.join(", "), x.description, del]);
        });
      });
    });
  }
  function loadEnvironments() {
    if (!envs) { return Promise.resolve(); }
    var api = envs.getAttribute("data-api");
    return call(api, "GET", "environments?limit=500").then(function (d) {
      var tbody = $("env-list").querySelector("tbody");
      tbody.textContent = "";
      d.items.forEach(function (e) {
        var del = document.createElement("button");
        del.className = "btn btn-sm btn-outline-danger";
        del.textContent = "remove";
        del.addEventListener("click", function () {
          call(api, "DELETE", "environments/" + encodeURIComponent(e.name)).then(load)
            .catch(function (err) { $("env-error").textContent = err.message; });
        });
        row(tbody, [e.display_name, e.kernel_name, e.python, e.image, e.tenants.join(", "),
                    envs.getAttribute("data-admin") === "1" ? del : ""]);
      });
    });
  }
  function load() {
    return Promise.all([
      loadStorage().catch(function (e) { if ($("st-more")) { $("st-more").textContent = e.message; } }),
      loadEnvironments().catch(function (e) { if ($("env-error")) { $("env-error").textContent = e.message; } })
    ]).then(function () {
      if (st) { st.setAttribute("data-loaded", "1"); }
      if (envs) { envs.setAttribute("data-loaded", "1"); }
    });
  }
  form("st-quota-form", "st-quota-error", function (f) {
    var v = f.quota_gib.value.trim();
    return call(st.getAttribute("data-api"), "PUT", "storage/" + encodeURIComponent(f.tenant.value.trim()),
                { quota_gib: v === "" ? null : Number(v) });
  });
  form("st-dataset-form", "st-dataset-error", function (f) {
    return call(st.getAttribute("data-api"), "PUT", "datasets/" + encodeURIComponent(f.name.value.trim()),
                { tenants: list(f.tenants.value), description: f.description.value });
  });
  form("env-form", "env-error", function (f) {
    var body = { display_name: f.display_name.value, tenants: list(f.tenants.value) };
    ["python", "kernel_name", "image"].forEach(function (k) { if (f[k].value.trim()) { body[k] = f[k].value.trim(); } });
    return call(envs.getAttribute("data-api"), "PUT", "environments/" + encodeURIComponent(f.name.value.trim()), body);
  });
  load();
}());
