// #sessions: one .session per sidebar entry, with its state dot, the ★ of
// the one in view, an unread badge and a preview of the latest line.
// Clicking an entry (or Enter/Space on its button) switches the view; it
// never touches a connection. The × button signs off and removes it.

import { MAX_SESSIONS } from "../protocol.js";
import { byId, h, setText, syncChildren } from "./dom.js";

const DOTS = {
  connected: "●",
  active: "↻",
  reconnecting: "◐",
  disconnected: "○",
  error: "✕",
};

function stateLabel(session) {
  switch (session.uiState) {
    case "connected":
      return session.awayMessage ? "Away" : "Online";
    case "active":
      return session.link.sessionId ? "Working…" : "Signing on…";
    case "reconnecting":
      return `Reconnecting (attempt ${session.link.attempt})`;
    case "error":
      return session.link.error?.message ? `Error: ${session.link.error.message}` : "Error";
    default:
      return session.link.error?.message ? `Signed off: ${session.link.error.message}` : "Signed off";
  }
}

function create() {
  const select = h(
    "button",
    { type: "button", class: "session-select" },
    h("span", { class: "dot", "aria-hidden": "true" }),
    h(
      "span",
      { class: "session-main" },
      h(
        "span",
        { class: "session-line" },
        h("span", { class: "session-name" }),
        h("span", { class: "star", "aria-hidden": "true" }, "★"),
        h("span", { class: "unread" }),
      ),
      h("span", { class: "session-state" }),
      h("span", { class: "preview" }),
    ),
  );
  const close = h("button", { type: "button", class: "session-close" }, "×");
  return h("li", { class: "session" }, select, close);
}

function update(element, session, current) {
  const state = session.uiState;
  element.dataset.screenName = session.screenName;
  element.dataset.state = state;
  element.dataset.sessionId = session.link.sessionId ?? "";
  element.dataset.attempt = String(session.link.attempt);
  element.classList.toggle("current", session === current);

  const select = element.querySelector(".session-select");
  if (session === current) select.setAttribute("aria-current", "true");
  else select.removeAttribute("aria-current");
  setText(element.querySelector(".dot"), DOTS[state] ?? "○");
  setText(element.querySelector(".session-name"), session.screenName);
  setText(element.querySelector(".session-state"), stateLabel(session));

  const unread = element.querySelector(".unread");
  setText(unread, session.unread > 0 ? String(session.unread) : "");
  unread.hidden = session.unread === 0;

  const preview = session.preview;
  const previewText = preview ? `${preview.from}: ${preview.text}` : "";
  setText(element.querySelector(".preview"), previewText);

  // One sentence for screen readers instead of the glyphs and fragments.
  const parts = [session.screenName, stateLabel(session)];
  if (session.unread > 0) parts.push(`${session.unread} unread`);
  if (previewText) parts.push(`last: ${previewText}`);
  select.setAttribute("aria-label", parts.join(", "));

  const close = element.querySelector(".session-close");
  close.setAttribute(
    "aria-label",
    session.live ? `Sign off ${session.screenName} and remove` : `Remove ${session.screenName}`,
  );
  close.title = close.getAttribute("aria-label");
}

export function mountSidebar(manager) {
  const list = byId("sessions");
  const count = byId("session-count");
  const byKey = new Map();

  function render() {
    byKey.clear();
    for (const session of manager.sessions) byKey.set(session.key, session);
    syncChildren(
      list,
      manager.sessions,
      (session) => session.key,
      create,
      (element, session) => update(element, session, manager.current),
    );
    setText(count, `${manager.liveCount} / ${MAX_SESSIONS}`);
  }

  // One element changed: cheaper than the whole list, and most changes
  // (a message in a background session) concern one entry.
  function renderOne(session) {
    const element = list.querySelector(`.session[data-key="${CSS.escape(session.key)}"]`);
    if (element) update(element, session, manager.current);
    setText(count, `${manager.liveCount} / ${MAX_SESSIONS}`);
  }

  list.addEventListener("click", (event) => {
    const element = event.target.closest(".session");
    const session = element && byKey.get(element.dataset.key);
    if (!session) return;
    if (event.target.closest(".session-close")) {
      const next = element.nextElementSibling ?? element.previousElementSibling;
      manager.remove(session);
      // The focused button is gone with its entry: keep the keyboard user
      // nearby rather than back at the top of the page.
      (next?.querySelector(".session-select") ?? byId("signon-name")).focus();
    } else if (session !== manager.current) {
      manager.select(session);
    }
  });

  manager.on("list", render);
  manager.on("current", render);
  manager.on("change", renderOne);
  manager.on("info", renderOne);
  render();
}
