// Browser code shared by every dashboard page (/assets/dashboard.js): JSON fetches that report failures in
// the header, element building with textContent only (values from memcached and the log files are never
// parsed as markup), and number and time formatting.
export const DASHBOARD_JS = String.raw`(function () {
  "use strict";
  var statusTimer = null;
  function status(text, isError) {
    var el = document.getElementById("status");
    if (!el) return;
    el.textContent = text;
    el.className = isError ? "status error" : "status";
    clearTimeout(statusTimer);
    if (!isError && text) statusTimer = setTimeout(function () { el.textContent = ""; }, 3000);
  }
  function getJson(url, options) {
    return fetch(url, Object.assign({ credentials: "same-origin", cache: "no-store" }, options || {}))
      .then(function (response) {
        return response.text().then(function (text) {
          var body = null;
          try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
          if (!response.ok) {
            var message = body && body.error ? body.error : response.status + " " + response.statusText;
            status(message, true);
            throw new Error(message);
          }
          return body;
        });
      }, function (error) {
        status("the dashboard's server did not answer: " + error.message, true);
        throw error;
      });
  }
  /** el("td", {class: "num"}, "12") builds an element; children are strings (as text) or elements. */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) {
      if (attrs[k] === null || attrs[k] === undefined || attrs[k] === false) return;
      if (k === "text") node.textContent = String(attrs[k]);
      else node.setAttribute(k, attrs[k] === true ? "" : String(attrs[k]));
    });
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function fmt(n, digits) {
    if (n === null || n === undefined || Number.isNaN(n)) return "–";
    return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 1 : digits });
  }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return fmt(n, i === 0 ? 0 : 1) + " " + units[i];
  }
  function ago(ms) {
    if (ms === null || ms === undefined) return "never";
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }
  window.memipc = { status: status, getJson: getJson, el: el, fmt: fmt, bytes: bytes, ago: ago };
})();
`;
