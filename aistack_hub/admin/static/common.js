/* What the admin page's scripts share (dashboard.js, and the accounting/storage partials' scripts): a tenant's
 * stable colour (a hash of its name: the same in every chart, day and reload) and the one way to call the
 * service API through the page's proxy (JSON, the page's XSRF token, the API's message on a refusal). */
(function () {
  "use strict";
  function hue(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) { h = (h * 31 + name.charCodeAt(i)) >>> 0; }
    return (h * 137) % 360;  // spread neighbouring hashes around the wheel
  }
  function colour(name, alpha) { return "hsla(" + hue(name) + ", 65%, 52%, " + (alpha || 1) + ")"; }
  function call(api, xsrfEl, method, path, body) {
    var headers = { "Accept": "application/json" };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    if (xsrfEl) { headers["X-XSRFToken"] = xsrfEl.value; }
    return fetch(api + path, { method: method, headers: headers, credentials: "same-origin",
                               body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        if (r.status === 204) { return null; }
        return r.json().catch(function () { return {}; }).then(function (j) {
          if (!r.ok) { throw new Error((j && j.message) || ("HTTP " + r.status)); }
          return j;
        });
      });
  }
  window.AIStackAdmin = { hue: hue, colour: colour, call: call };
})();
