// Estimator's page script: copy buttons, and nothing else yet.
"use strict";
document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const input = document.querySelector(copy.dataset.copy);
    input.select();
    navigator.clipboard?.writeText(input.value).then(() => { copy.textContent = "Copied"; });
  }
  if (event.target.closest("[data-history-back]")) {
    history.back();
  }
});
