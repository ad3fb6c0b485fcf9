// One click from the message: the score its link carried is pre-selected; a person's browser
// submits it at once (a mail scanner that only fetches the page records nothing).
(function () {
  var form = document.getElementById("check-in");
  if (form && form.getAttribute("data-auto-submit") === "1" && form.querySelector("input:checked")) {
    form.submit();
  }
})();
