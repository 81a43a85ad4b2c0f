// The apps page: install shows the app's secrets once (from the install answer, never stored by the
// page), uninstall asks first. Both send the session's CSRF token header.
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  async function call(method, url, body) {
    const response = await fetch(url, {
      method, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
      headers: { "content-type": "application/json", "x-csrf-token": csrf(), accept: "application/json" } });
    const answer = response.status === 204 ? {} : await response.json().catch(() => ({}));
    return { ok: response.ok, answer, text: answer.detail || answer.title || response.status + " " + response.statusText };
  }

  function storePath() {
    const match = window.location.pathname.match(/^\/stores\/([^/]+)\//);
    return "/v1/stores/" + (match ? match[1] : "");
  }

  function fail(button, text) {
    const slot = button.closest("article").querySelector(":scope > .form-error");
    slot.textContent = text;
    slot.dataset.testid = "form-error";
  }

  async function install(button) {
    button.disabled = true;
    const result = await call("POST", storePath() + "/apps/" + encodeURIComponent(button.dataset.app) + "/install", {});
    if (!result.ok) { button.disabled = false; fail(button, result.text); return; }
    const panel = document.querySelector('[data-testid="install-secrets"]');
    panel.querySelectorAll("[data-secret]").forEach((slot) => { slot.textContent = result.answer[slot.dataset.secret] || ""; });
    panel.hidden = false;
    // Nothing else on the page until the owner says the secrets are copied (then it reloads).
    document.querySelectorAll("main > section, main > .notice").forEach((other) => { if (other !== panel) other.hidden = true; });
    panel.scrollIntoView();
  }

  async function uninstall(button) {
    if (!window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    const result = await call("DELETE", storePath() + "/apps/" + encodeURIComponent(button.dataset.app));
    if (result.ok) { window.location.reload(); return; }
    button.disabled = false;
    fail(button, result.text);
  }

  document.addEventListener("click", (event) => {
    const target = event.target;
    if (target.closest("button.install")) { event.preventDefault(); install(target.closest("button.install")); }
    else if (target.closest("button.uninstall")) { event.preventDefault(); uninstall(target.closest("button.uninstall")); }
    else if (target.closest("button.secrets-done")) {
      // The secrets leave the page; the reloaded page lists the app as installed, without them.
      document.querySelectorAll('[data-testid="install-secrets"] [data-secret]').forEach((slot) => { slot.textContent = ""; });
      window.location.reload();
    }
  });
})();
