// The order board: new orders arrive over Server-Sent Events (GET …/orders/stream, the session
// cookie goes along same-origin), each new one with a short beep made by the Web Audio API; the
// buttons POST …/orders/{id}/{verb} with the session's CSRF token and move the card at once.
"use strict";

(function () {
  const OPEN = ["placed", "accepted", "preparing", "ready"];
  const ACTIONS = { placed: ["accept"], accepted: ["start"], preparing: ["ready"], ready: ["complete"] };
  const REASON_ACTIONS = { placed: ["reject"], accepted: ["cancel"], preparing: ["cancel"], ready: ["cancel"] };
  const DONE_SHOWN = 30;
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  let board, labels, store, exponent, timezone, canWrite;
  let audio = null;
  let soundOn = true;

  const label = (key) => (labels && labels[key]) || key;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([name, value]) => {
      if (value === undefined || value === null || value === false) return;
      if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : value);
    });
    children.flat().forEach((child) => {
      if (child === undefined || child === null || child === "") return;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  // 6500 with exponent 2 -> "65.00", exactly (string arithmetic, no floats).
  function formatMinor(minor) {
    const negative = minor < 0;
    let digits = String(Math.abs(minor));
    if (exponent === 0) return (negative ? "-" : "") + digits;
    digits = digits.padStart(exponent + 1, "0");
    return (negative ? "-" : "") + digits.slice(0, -exponent) + "." + digits.slice(-exponent);
  }

  function localTime(text) {
    if (!text) return "";
    const moment = new Date(text);
    if (isNaN(moment)) return text;
    return moment.toLocaleTimeString("en-GB", { timeZone: timezone, hour: "2-digit", minute: "2-digit", hour12: false });
  }

  function versionOf(order) {
    const history = order.history || [];
    return history.length ? history[history.length - 1].position : order.placed_position;
  }

  function card(order) {
    const f = order.fulfillment || {};
    const meta = [label(f.type)];
    if (f.table) meta.push(label("Table") + " " + f.table);
    if (f.pickup_at) meta.push(label("Pickup at") + " " + localTime(f.pickup_at));
    if (f.address) meta.push(f.address);
    meta.push(label("Placed") + " " + localTime(order.placed_at));
    const actions = [];
    if (canWrite) {
      (ACTIONS[order.status] || []).forEach((verb) => actions.push(
        el("button", { type: "button", class: "order-action verb-" + verb, "data-verb": verb, "data-testid": verb }, label(verb))));
      (REASON_ACTIONS[order.status] || []).forEach((verb) => actions.push(el("details", { class: "with-reason" },
        el("summary", { "data-testid": verb + "-open" }, label(verb) + "…"),
        el("input", { name: "reason", maxlength: "500", placeholder: label("Reason"), "aria-label": label("Reason"),
                      "data-testid": verb + "-reason" }),
        el("button", { type: "button", class: "order-action danger", "data-verb": verb, "data-needs-reason": true,
                       "data-testid": verb + "-confirm" }, label("Confirm")))));
    }
    return el("article", {
      class: "order-card status-" + order.status, "data-order": order.order_id, "data-status": order.status,
      "data-version": String(versionOf(order)), "data-testid": "order-" + order.order_id,
    },
    el("header", {},
      el("strong", {}, label(order.channel)), " ", el("span", { class: "channel-ref" }, "#" + order.channel_order_id), " ",
      el("span", { class: "badge status-" + order.status, "data-testid": "order-status" }, label(order.status))),
    el("div", { class: "order-meta" }, meta.join(" · ")),
    el("ul", { class: "order-lines" }, (order.lines || []).map((line) => el("li", {},
      el("span", { class: "qty" }, line.qty + " ×"), " " + (line.name || line.sku),
      line.note ? el("small", { class: "note" }, " (" + line.note + ")") : ""))),
    el("div", { class: "order-total" }, label("Total") + " ", el("strong", {}, formatMinor(order.total_minor)),
      order.payment_id ? el("small", { class: "paid" }, " " + label("paid")) : ""),
    order.reason ? el("p", { class: "order-reason" }, label("Reason") + ": " + order.reason) : "",
    canWrite ? el("div", { class: "order-actions" }, actions) : "",
    canWrite ? el("span", { class: "form-error" }) : "");
  }

  function column(status) {
    const name = OPEN.includes(status) ? status : "done";
    return board.querySelector('[data-column="' + name + '"]');
  }

  function recount() {
    board.querySelectorAll("[data-column]").forEach((section) => {
      const cards = section.querySelectorAll(".order-card");
      if (section.dataset.column === "done") [...cards].slice(DONE_SHOWN).forEach((c) => c.remove());
      section.querySelector(".count").textContent = String(section.querySelectorAll(".order-card").length);
    });
  }

  // Put the order where its status says, unless the board already shows a newer state of it.
  function upsert(order, fresh) {
    const existing = board.querySelector('[data-order="' + CSS.escape(order.order_id) + '"]');
    if (existing && parseInt(existing.dataset.version, 10) >= versionOf(order)) return false;
    const node = card(order);
    if (fresh) node.classList.add("fresh");
    if (existing) existing.remove();
    const cards = column(order.status).querySelector(".cards");
    if (OPEN.includes(order.status)) {
      // Oldest first: the order placed earliest is served first.
      const after = [...cards.children].find((c) => parseInt(c.dataset.placed || "0", 10) > order.placed_position);
      node.dataset.placed = String(order.placed_position);
      cards.insertBefore(node, after || null);
    } else {
      cards.prepend(node);
    }
    recount();
    return !existing;
  }

  // A new order: counted on the board (data-beeps) and, with the sound on, two short tones.
  function beep() {
    board.dataset.beeps = String(parseInt(board.dataset.beeps || "0", 10) + 1);
    if (soundOn) tone();
  }

  function tone() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
      const now = audio.currentTime;
      [0, 0.18].forEach((offset, index) => {
        const tone = audio.createOscillator();
        const gain = audio.createGain();
        tone.type = "sine";
        tone.frequency.value = index === 0 ? 880 : 1320;
        gain.gain.setValueAtTime(0.0001, now + offset);
        gain.gain.exponentialRampToValueAtTime(0.3, now + offset + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.15);
        tone.connect(gain).connect(audio.destination);
        tone.start(now + offset);
        tone.stop(now + offset + 0.16);
      });
    } catch (ignored) { /* no audio device: the card still flashes */ }
  }

  function setLive(state) {
    const badge = document.querySelector('[data-testid="live-state"]');
    badge.dataset.state = state;
    badge.textContent = state === "live" ? label("Live") : label("Reconnecting…");
  }

  // After (re)connecting, read the open orders once: an order placed between the page's render and
  // the stream's start (which begins at the end of the log) is not missed.
  // (One read per open status: the list is oldest first and capped, open orders are few.)
  async function reconcile() {
    await Promise.all(OPEN.map(async (status) => {
      const response = await fetch("/v1/stores/" + encodeURIComponent(store) + "/orders?status=" + status, {
        credentials: "same-origin", headers: { accept: "application/json" } });
      if (!response.ok) return;
      const body = await response.json();
      // One the board did not show yet is new to the counter: flash and beep as for a live one.
      body.orders.forEach((order) => { if (upsert(order, order.status === "placed") && order.status === "placed") beep(); });
    }));
  }

  function follow() {
    const source = new EventSource("/v1/stores/" + encodeURIComponent(store) + "/orders/stream", { withCredentials: true });
    source.addEventListener("open", () => { setLive("live"); reconcile(); });
    source.addEventListener("error", () => setLive("reconnecting"));
    source.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      const placed = message.type === "order.placed";
      const added = upsert(message.order, placed);
      if (added && placed && message.order.status === "placed") beep();
    });
  }

  async function act(button) {
    const node = button.closest(".order-card");
    const slot = node.querySelector(".form-error");
    const body = {};
    if (button.dataset.needsReason !== undefined) {
      const reason = node.querySelector("details[open] input[name=reason], details input[name=reason]");
      body.reason = reason ? reason.value.trim() : "";
    }
    button.disabled = true;
    try {
      const response = await fetch("/v1/stores/" + encodeURIComponent(store) + "/orders/" +
        encodeURIComponent(node.dataset.order) + "/" + button.dataset.verb, {
        method: "POST", credentials: "same-origin", body: JSON.stringify(body),
        headers: { "content-type": "application/json", "x-csrf-token": csrf(), accept: "application/json" } });
      const answer = await response.json().catch(() => ({}));
      if (response.ok) { upsert(answer, false); return; }
      slot.textContent = answer.detail || answer.title || response.status + " " + response.statusText;
      slot.dataset.testid = "form-error";
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    board = document.querySelector('[data-testid="order-board"]');
    if (!board) return;
    labels = JSON.parse(board.dataset.labels || "{}");
    store = board.dataset.store;
    exponent = parseInt(board.dataset.exponent || "2", 10);
    timezone = board.dataset.timezone || "UTC";
    canWrite = board.dataset.canWrite === "true";
    board.addEventListener("click", (event) => {
      const button = event.target.closest(".order-action");
      if (button) { event.preventDefault(); act(button); }
    });
    const toggle = document.querySelector('[data-testid="sound-toggle"]');
    toggle.addEventListener("click", () => {
      soundOn = !soundOn;
      toggle.setAttribute("aria-pressed", String(soundOn));
      toggle.textContent = soundOn ? label("Sound on") : label("Sound off");
      if (soundOn) tone();  // a click is the gesture browsers want before they play sound
    });
    follow();
  });
})();
