// The console's only script: parts of a page marked data-live are fetched again every few seconds
// from the URL they name and replaced, so charts and the refusal list stay current. The HTML comes
// from this listener, escaped on the server.
"use strict";
(function () {
  var parts = document.querySelectorAll("[data-live]");
  if (!parts.length) return;
  function refresh() {
    // a tab nobody looks at asks for nothing
    if (document.hidden) return;
    parts.forEach(function (el) {
      fetch(el.getAttribute("data-live"), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
        .then(function (html) { if (html !== null) el.innerHTML = html; })
        .catch(function () {});
    });
  }
  setInterval(refresh, 5000);
})();
