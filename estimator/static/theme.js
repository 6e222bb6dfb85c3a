// The colour scheme, before the first paint. The server renders a chosen light or dark scheme on
// <html> itself; for "auto" (data-theme="auto") this script, loaded without defer in <head>,
// follows the system's setting now and whenever it changes. The switch in the navigation is a
// plain form; with this script it changes the scheme at once, without a reload.
"use strict";

(() => {
  const root = document.documentElement;
  const systemDark = window.matchMedia("(prefers-color-scheme: dark)");

  function apply() {
    const choice = root.dataset.theme || "auto";
    root.dataset.bsTheme = choice === "auto" ? (systemDark.matches ? "dark" : "light") : choice;
  }

  function markChoice(form, choice) {
    form.querySelectorAll("button[name=theme]").forEach((button) => {
      const chosen = button.value === choice;
      button.classList.toggle("active", chosen);
      button.setAttribute("aria-pressed", chosen ? "true" : "false");
    });
  }

  // The cookie is the server's to set (it renders the next page from it); if the server cannot be
  // asked, the form is sent the ordinary way and its answer says what went wrong.
  async function switchScheme(event) {
    const form = event.target;
    const button = event.submitter;
    if (!form.matches?.(".theme-switch") || !button?.value) return;
    event.preventDefault();
    const token = form.querySelector("input[name=csrf_token]")?.value || "";
    try {
      const response = await fetch(form.action, {
        method: "POST", body: new FormData(form, button), credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": token },
      });
      if (!response.ok) throw new Error(`theme answered ${response.status}`);
      root.dataset.theme = button.value;
      apply();
      markChoice(form, button.value);
    } catch (error) {
      const chosen = document.createElement("input");
      Object.assign(chosen, { type: "hidden", name: "theme", value: button.value });
      form.append(chosen);
      form.submit();
    }
  }

  apply();
  systemDark.addEventListener("change", apply);
  document.addEventListener("submit", switchScheme);
})();
