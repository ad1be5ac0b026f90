// The head of the session in view: its name and state, away message and
// idle, sign off, and signing on again once it has stopped. With no
// session the welcome text shows instead.

import { byId, clockTime, setText } from "./dom.js";

function describe(session) {
  const link = session.link;
  switch (session.uiState) {
    case "connected":
    case "active": {
      if (!link.sessionId) return "Signing on…";
      const parts = [session.awayMessage ? `Away: ${session.awayMessage}` : "Online"];
      if (session.idle) parts.push("idle");
      if (session.info?.signed_on_at) parts.push(`signed on ${clockTime(session.info.signed_on_at * 1000)}`);
      if (session.info?.sessions > 1) parts.push(`${session.info.sessions} locations`);
      parts.push(`warning level ${session.warningLevel}%`);
      return parts.join(" · ");
    }
    case "reconnecting":
      return `Connection lost. Reconnecting (attempt ${link.attempt})…` +
        (link.queued ? ` ${link.queued} message(s) will be sent then.` : "");
    case "error":
      return `Could not sign on: ${link.error?.message ?? "unknown error"}`;
    default:
      return link.error ? `Signed off: ${link.error.message}` : "Signed off.";
  }
}

export function mountSessionView(manager, toast) {
  const welcome = byId("welcome");
  const view = byId("session-view");
  const awayToggle = byId("away-toggle");
  const awayPanel = byId("away-panel");
  const awayMessage = byId("away-message");
  const awayBack = byId("away-back");
  const idleToggle = byId("idle-toggle");
  const resignon = byId("resignon-form");
  const resignonPassword = byId("resignon-password");

  function render() {
    const session = manager.current;
    welcome.hidden = session !== null;
    view.hidden = session === null;
    if (!session) return;
    view.dataset.state = session.uiState;
    setText(byId("view-name"), session.screenName);
    setText(byId("view-status"), describe(session));
    const stopped = !session.live;
    resignon.hidden = !stopped;
    setText(byId("resignon-name"), session.screenName);
    byId("signoff").disabled = stopped;
    awayToggle.disabled = !session.connected && awayPanel.hidden;
    awayToggle.classList.toggle("on", Boolean(session.awayMessage));
    awayBack.disabled = !session.awayMessage;
    idleToggle.checked = session.idle;
  }

  function showAway(show) {
    awayPanel.hidden = !show;
    awayToggle.setAttribute("aria-expanded", String(show));
    if (show) awayMessage.focus();
  }

  // Errors of user actions become toasts; the form stays as it was.
  const attempt = (promise, what) =>
    promise.catch((error) => toast(`${what}: ${error.message}`, "error"));

  awayToggle.addEventListener("click", () => showAway(awayPanel.hidden));

  awayPanel.addEventListener("submit", (event) => {
    event.preventDefault();
    const session = manager.current;
    const text = awayMessage.value.trim();
    if (!session || !text) return;
    attempt(session.setAway(text), "Away message not set").then(() => showAway(false));
  });

  awayBack.addEventListener("click", () => {
    const session = manager.current;
    if (session) attempt(session.setAway(null), "Still away");
  });

  idleToggle.addEventListener("change", () => {
    const session = manager.current;
    if (!session) return;
    const wanted = idleToggle.checked;
    attempt(session.setIdle(wanted), "Idle not changed").then(render);
  });

  byId("signoff").addEventListener("click", () => {
    const session = manager.current;
    if (session) session.signOff();
  });

  resignon.addEventListener("submit", (event) => {
    event.preventDefault();
    const session = manager.current;
    if (!session || !resignonPassword.value) return;
    manager.signOnAgain(session, resignonPassword.value);
    resignonPassword.value = "";
  });

  byId("resignon-remove").addEventListener("click", () => {
    const session = manager.current;
    if (session) manager.remove(session);
    // The entry in view now, or the sign-on form when none is left.
    (document.querySelector("#sessions .current .session-select") ?? byId("signon-name")).focus();
  });

  const ifCurrent = (session) => {
    if (session === manager.current) render();
  };
  manager.on("current", () => {
    showAway(false);
    render();
  });
  manager.on("change", ifCurrent);
  manager.on("info", ifCurrent);
  render();
}
