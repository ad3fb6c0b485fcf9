/* Progressive enhancement only: every page works without this file. No inline handlers anywhere
   (the CSP allows scripts from this origin and nothing else). */
(function () {
  "use strict";

  // the language switcher submits itself; its button is for browsers without script
  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
    form.querySelectorAll("[data-hide-with-script]").forEach(function (button) {
      button.hidden = true;
    });
    form.querySelectorAll("select").forEach(function (select) {
      select.addEventListener("change", function () { form.submit(); });
    });
  });

  // the inbox: a "select all" box, and only the bulk action's own parameters shown
  document.querySelectorAll("[data-select-all]").forEach(function (all) {
    var form = all.closest("form");
    all.hidden = false;
    all.addEventListener("change", function () {
      form.querySelectorAll('input[name="item_ids"]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });
  document.querySelectorAll("[data-bulk-action]").forEach(function (select) {
    var form = select.closest("form");
    function show() {
      form.querySelectorAll("[data-bulk-param]").forEach(function (part) {
        part.hidden = part.getAttribute("data-bulk-param") !== select.value;
      });
    }
    select.addEventListener("change", show);
    show();
  });
})();
