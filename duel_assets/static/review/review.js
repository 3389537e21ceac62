// duel-assets review: keyboard labelling. Served as a file (the page's Content-Security-Policy
// allows no inline script). Without it the buttons and links work the same way.
(function () {
  "use strict";
  var form = document.getElementById("label");
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "INPUT" && t.type !== "radio" || t.tagName === "TEXTAREA" || t.isContentEditable);
  }
  if (form) {
    var sent = false;
    form.addEventListener("submit", function (e) {
      if (sent) { e.preventDefault(); return; }  // one label per showing, however fast the keys come
      sent = true;
    });
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) { return; }
    var key = e.key;
    if (key === "?") {
      var help = document.getElementById("keys");
      if (help) { help.hidden = !help.hidden; }
      return;
    }
    if (key === "h") {
      var h = document.getElementById("history");
      if (h) { h.open = !h.open; }
      return;
    }
    if (!form) { return; }
    var target = form.querySelector('[data-key="' + key.toLowerCase() + '"]');
    if (!target) { return; }
    e.preventDefault();
    if (target.type === "radio") { target.checked = true; } else { target.click(); }
  });
})();
