// The back office's only script: charts from data-chart, and forms that call the JSON API.
// No build step, no framework; every state change sends the session's CSRF token header.
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function drawCharts() {
    if (typeof echarts === "undefined") return;
    document.querySelectorAll(".chart[data-chart]").forEach((element) => {
      const chart = echarts.init(element);
      chart.setOption(JSON.parse(element.dataset.chart));
      window.addEventListener("resize", () => chart.resize());
    });
  }

  // "28.5" with exponent 2 -> 2850, exactly (no float arithmetic).
  function toMinor(text, exponent) {
    const value = text.trim();
    if (!/^\d+(\.\d+)?$/.test(value)) throw new Error("not an amount: " + value);
    const [units, fraction = ""] = value.split(".");
    if (fraction.length > exponent) throw new Error("too many decimals: " + value);
    return parseInt(units + fraction.padEnd(exponent, "0"), 10);
  }

  function fieldValue(input, form) {
    const type = input.dataset.type || "text";
    if (type === "bool") return input.checked;
    if (input.value.trim() === "" && type !== "text") return undefined;
    if (type === "money") return toMinor(input.value, parseInt(input.dataset.exponent || "2", 10));
    if (type === "int") {
      if (!/^-?\d+$/.test(input.value.trim())) throw new Error("not a whole number: " + input.value);
      return parseInt(input.value.trim(), 10);
    }
    if (type === "date") return input.value + "T00:00:00" + (form.dataset.offset || "Z");
    if (input.dataset.optional !== undefined && input.value.trim() === "") return undefined;
    return input.value;
  }

  // name "tiers.0.tier" -> {"tiers": [{"tier": ...}]}; rows whose fields are all empty are left out.
  function formBody(form) {
    const body = {};
    form.querySelectorAll("input[name], select[name], textarea[name]").forEach((input) => {
      if (input.dataset.skip !== undefined || input.disabled) return;
      const row = input.closest("[data-row]");
      if (row && [...row.querySelectorAll("input")].every((i) => i.value.trim() === "")) return;
      const value = fieldValue(input, form);
      if (value === undefined) return;
      const path = input.name.split(".");
      let target = body;
      path.forEach((part, index) => {
        if (index === path.length - 1) { target[part] = value; return; }
        if (target[part] === undefined) target[part] = /^\d+$/.test(path[index + 1]) ? [] : {};
        target = target[part];
      });
    });
    for (const key of Object.keys(body)) {
      if (Array.isArray(body[key])) body[key] = body[key].filter((item) => item !== undefined);
    }
    return body;
  }

  function actionOf(element, form) {
    return element.dataset.action.replace(/\{(\w+)\}/g, (_, name) => {
      const input = form && form.querySelector('[name="' + name + '"]');
      return encodeURIComponent(input ? input.value.trim() : "");
    });
  }

  async function send(method, url, body, errorSlot) {
    const response = await fetch(url, {
      method, credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf(), accept: "application/json" },
      body: method === "DELETE" ? undefined : JSON.stringify(body || {}),
    });
    if (response.ok) { window.location.reload(); return; }
    let detail = response.status + " " + response.statusText;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
      if (problem.errors) detail += ": " + problem.errors.map((e) => e.loc.slice(1).join(".") + " " + e.msg).join("; ");
    } catch (ignored) { /* not JSON */ }
    if (errorSlot) { errorSlot.textContent = detail; errorSlot.dataset.testid = "form-error"; }
    else window.alert(detail);
  }

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form.api-form");
    if (!form) return;
    event.preventDefault();
    const slot = form.querySelector(".form-error");
    try {
      send(form.dataset.method || "POST", actionOf(form, form), formBody(form), slot);
    } catch (error) {
      if (slot) slot.textContent = error.message;
    }
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest(".api-button");
    if (button) {
      event.preventDefault();
      const form = button.closest("form");
      send(button.dataset.method || "POST", actionOf(button, form), {}, form && form.querySelector(".form-error"));
      return;
    }
    if (event.target.closest(".print-button")) {
      const figure = event.target.closest("details").querySelector(".printable");
      figure.classList.add("printing");
      window.print();
      figure.classList.remove("printing");
    }
  });

  document.addEventListener("DOMContentLoaded", drawCharts);
})();
