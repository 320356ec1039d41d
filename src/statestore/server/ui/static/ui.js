// statestore web UI: progressive enhancement only; every page works without this file.
"use strict";
(function () {
  // The value editor: say whether the text is JSON while it is typed. The server
  // validates again with the library's own rules (NaN, depth, size); this is a hint.
  function watchEditor(area) {
    var out = document.getElementById(area.getAttribute("data-validity"));
    if (!out) { return; }
    function check() {
      var text = area.value;
      if (!text.trim()) { out.textContent = "Empty: a value is required."; out.className = "validity bad"; return; }
      try {
        var parsed = JSON.parse(text);
        if (parsed === null) { out.textContent = "null is not a value: delete the key instead."; out.className = "validity bad"; return; }
        var size = new TextEncoder().encode(JSON.stringify(parsed)).length;
        out.textContent = "Valid JSON, " + size + " bytes compact.";
        out.className = "validity good";
      } catch (err) {
        out.textContent = "Not JSON: " + err.message;
        out.className = "validity bad";
      }
    }
    area.addEventListener("input", check);
    check();
  }
  function start() {
    var areas = document.querySelectorAll("textarea[data-validity]");
    for (var i = 0; i < areas.length; i++) { watchEditor(areas[i]); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
