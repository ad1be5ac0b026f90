// #signon-form adds a session: another screen name, or the same one again.
// With no session it is always open; once some are signed on it folds away
// behind #add-session, which opens it and puts the keyboard in it. The
// password goes to the new session's link and is not kept here.

import { MAX_SESSIONS } from "../protocol.js";
import { byId } from "./dom.js";

export function mountSignOn(manager, toast) {
  const form = byId("signon-form");
  const name = byId("signon-name");
  const password = byId("signon-password");
  const add = byId("add-session");
  const cancel = byId("signon-cancel");
  const create = byId("signon-create");
  let wanted = false; // opened with #add-session

  function render() {
    const alone = manager.sessions.length === 0;
    form.hidden = !alone && !wanted;
    cancel.hidden = alone;
    add.setAttribute("aria-expanded", String(!form.hidden));
  }

  function open() {
    wanted = true;
    render();
    form.classList.add("attention");
    name.focus();
    if (manager.liveCount >= MAX_SESSIONS) {
      toast(
        `${MAX_SESSIONS} sessions are signed on; another one will sign off the least recently used.`,
        "info",
      );
    }
  }

  function close() {
    wanted = false;
    render();
    if (!form.hidden) return;
    add.focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault(); // the page never navigates (CSP form-action 'none')
    const screenName = name.value.trim();
    if (!screenName) {
      name.focus();
      toast("Enter a screen name.", "error");
      return;
    }
    if (!password.value) {
      password.focus();
      toast("Enter the password.", "error");
      return;
    }
    manager.add(screenName, password.value, { signUp: create.checked });
    password.value = "";
    name.value = "";
    create.checked = false;
    form.classList.remove("attention");
    wanted = false;
    render();
  });

  form.addEventListener("animationend", () => form.classList.remove("attention"));
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !cancel.hidden) close();
  });
  cancel.addEventListener("click", close);
  add.addEventListener("click", () => (form.hidden ? open() : name.focus()));
  // The server says whether it makes accounts, and how many sessions one
  // screen name may have.
  manager.on("server-info", (info) => {
    byId("signon-create-row").hidden = !info.signup;
    if (!info.signup) create.checked = false;
    if (info.max_sessions) {
      byId("signon-hint").textContent =
        `Up to ${MAX_SESSIONS} sessions at once: other screen names, or the same one ` +
        `again (up to ${info.max_sessions} times).`;
    }
  });
  manager.on("list", render);
  render();
}
