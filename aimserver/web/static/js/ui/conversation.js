// The IM windows of the session in view: a tab per open conversation, the
// log of the active one (#conversation, a .message per line), the buddy's
// typing, and the message box (#im-text, Enter sends, Shift+Enter is a new
// line). Lines for conversations not in view only mark their tab; lines
// for sessions not in view are not drawn at all (the sidebar counts them).

import { renderHtml } from "../html.js";
import { AUTO, ELSEWHERE, OUT, SYSTEM } from "../conversations.js";
import { presenceText } from "./buddylist.js";
import { byId, clockTime, h, setText, syncChildren } from "./dom.js";

const STICK_TO_BOTTOM_PX = 48;

function noteFor(message) {
  switch (message.kind) {
    case AUTO:
      return "auto response";
    case ELSEWHERE:
      return "sent from another location";
    case OUT:
      if (message.status === "pending") return "sending…";
      if (message.status === "failed") return `not sent: ${message.error ?? "error"}`;
      if (message.status === "stored") return `stored: ${message.buddyName} gets it at next sign-on`;
      return "";
    default:
      return "";
  }
}

const MORE_INFORMATION = /click here for more information/i;

function locationsButton(...content) {
  return h(
    "button",
    { type: "button", class: "link-button show-locations", title: "Show this screen name's locations" },
    ...content,
  );
}

// The multisession notice ("... is now signed into AOL(R) Instant Messenger
// (TM) in 2 locations. Click here for more information.") leads to the
// Locations panel, where the user can see and sign off the others. Its link
// (an <a> the sanitizer kept, which would open a web page) or else its
// "Click here for more information" becomes a button that opens the panel.
// Returns whether there was one to make.
function linkToLocations(text) {
  const anchors = [...text.querySelectorAll("a")];
  for (const anchor of anchors) anchor.replaceWith(locationsButton(...anchor.childNodes));
  if (anchors.length > 0) return true;
  text.normalize(); // a dropped <a> (a scheme the sanitizer refused) leaves split text
  const walker = document.createTreeWalker(text, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const match = MORE_INFORMATION.exec(node.data);
    if (!match) continue;
    const phrase = node.splitText(match.index);
    phrase.splitText(match[0].length);
    phrase.replaceWith(locationsButton(phrase.data));
    return true;
  }
  return false;
}

function createLine(message) {
  const classes = `message ${message.kind}${message.earlier ? " earlier" : ""}`;
  const item = h("li", { class: classes, dataset: { from: message.from, kind: message.kind } });
  const when = h("time", { datetime: new Date(message.time).toISOString() }, clockTime(message.time));
  const text = h("span", { class: "message-text" }, renderHtml(message.text));
  if (message.kind === SYSTEM) {
    item.append(when, " ", text);
    if (/location/i.test(message.text) && !linkToLocations(text)) {
      item.append(" ", locationsButton("Show locations"));
    }
  } else {
    const from = h("span", { class: "from" }, message.from);
    item.append(when, " ", from, h("span", { class: "colon" }, ": "), text);
  }
  item.append(h("span", { class: "note" }));
  updateLine(item, message);
  return item;
}

function updateLine(item, message) {
  item.dataset.status = message.status ?? "";
  const note = noteFor(message);
  const element = item.querySelector(".note");
  setText(element, note);
  element.hidden = note === "";
}

function typingText(conversation) {
  if (conversation.typing === "typing") return `${conversation.name} is typing…`;
  if (conversation.typing === "typed") return `${conversation.name} has entered text.`;
  return "";
}

export function mountConversation(manager, toast) {
  const tabs = byId("im-tabs");
  const empty = byId("im-empty");
  const window_ = byId("im-window");
  const log = byId("conversation");
  const typing = byId("typing-indicator");
  const form = byId("im-form");
  const input = byId("im-text");
  const send = byId("im-send");
  const lines = new Map(); // message -> its <li>, for the log on screen
  let shown = null; // {session, key} whose log is on screen

  function renderTabs(session) {
    const conversations = session ? [...session.conversations.values()] : [];
    tabs.hidden = conversations.length === 0;
    syncChildren(
      tabs,
      conversations,
      (c) => c.key,
      () =>
        h(
          "button",
          { type: "button", class: "im-tab" },
          h("span", { class: "tab-name" }),
          h("span", { class: "tab-typing", "aria-hidden": "true" }),
          h("span", { class: "tab-unread" }),
        ),
      (button, c) => {
        const active = c === session.activeConversation; // none while a room is in view
        button.classList.toggle("active", active);
        if (active) button.setAttribute("aria-current", "true");
        else button.removeAttribute("aria-current");
        setText(button.querySelector(".tab-name"), c.name);
        setText(button.querySelector(".tab-typing"), c.typing === "typing" ? "✎" : "");
        const unread = button.querySelector(".tab-unread");
        setText(unread, c.unread ? String(c.unread) : "");
        unread.hidden = !c.unread;
        button.setAttribute("aria-label", c.name + (c.unread ? `, ${c.unread} unread` : ""));
      },
    );
  }

  // The server's own notices come from a name nobody can answer.
  const isSystem = (session, conversation) => conversation.system && !session.isBuddy(conversation.name);

  function renderHead(session, conversation) {
    const system = isSystem(session, conversation);
    setText(byId("im-with"), conversation.name);
    setText(byId("im-presence"), system ? "" : presenceText(session.buddy(conversation.name)));
    const listed = session.isBuddy(conversation.name);
    byId("remove-buddy").hidden = !listed;
    byId("add-this-buddy").hidden = listed || system;
    byId("warn-tools").hidden = system;
    for (const id of ["remove-buddy", "add-this-buddy", "warn-buddy"]) byId(id).disabled = !session.connected;
  }

  function renderLog(session, conversation) {
    log.setAttribute("aria-busy", "true"); // one change, not a line-by-line reading
    lines.clear();
    log.replaceChildren(
      ...conversation.messages.map((message) => {
        const item = createLine(message);
        lines.set(message, item);
        return item;
      }),
    );
    log.scrollTop = log.scrollHeight;
    log.removeAttribute("aria-busy");
    shown = { session, key: conversation.key };
  }

  function render({ force = false } = {}) {
    const session = manager.current;
    renderTabs(session);
    const conversation = session?.activeConversation ?? null;
    // A room in view (ui/rooms.js) takes the window's place.
    empty.hidden = conversation !== null || Boolean(session?.activeRoom);
    window_.hidden = conversation === null;
    if (!conversation) {
      shown = null;
      lines.clear();
      log.replaceChildren();
      return;
    }
    renderHead(session, conversation);
    const switched = shown?.session !== session || shown?.key !== conversation.key;
    if (switched || force) renderLog(session, conversation);
    if (switched) input.value = conversation.draft;
    setText(typing, typingText(conversation));
    const system = isSystem(session, conversation);
    const usable = session.live && !system;
    input.disabled = !usable;
    send.disabled = !usable;
    if (system) input.placeholder = "Notices from the server cannot be answered";
    else input.placeholder = usable ? `Message to ${conversation.name}` : "Sign on again to send messages";
    byId("im-text-label").textContent = `Message to ${conversation.name}`;
  }

  function append(message) {
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < STICK_TO_BOTTOM_PX;
    const item = createLine(message);
    lines.set(message, item);
    log.append(item);
    // Follow the conversation unless the user scrolled up to read.
    if (atBottom || message.kind === OUT) log.scrollTop = log.scrollHeight;
  }

  const isShown = (session, conversation) =>
    shown !== null && shown.session === session && conversation && shown.key === conversation.key;

  manager.on("message", (session, conversation, message) => {
    if (session !== manager.current) return; // the sidebar counts it
    if (isShown(session, conversation) && session.activeKey === conversation.key) {
      // A line for the conversation in view: this is where the user is.
      conversation.unread = 0;
      append(message);
    } else {
      render();
    }
  });
  manager.on("message-updated", (session, conversation, message) => {
    const item = lines.get(message);
    if (item && session === manager.current) updateLine(item, message);
  });
  manager.on("history", (session, conversation) => {
    if (isShown(session, conversation)) render({ force: true });
  });
  manager.on("typing", (session, conversation) => {
    if (isShown(session, conversation)) setText(typing, typingText(conversation));
  });
  for (const type of ["conversations", "buddies", "change"]) {
    manager.on(type, (session) => {
      if (session === manager.current) render();
    });
  }
  manager.on("current", () => render());

  tabs.addEventListener("click", (event) => {
    const tab = event.target.closest(".im-tab");
    if (tab && manager.current) manager.current.activate(tab.dataset.key);
  });

  // Open the Locations panel (ui/locations.js) through its own toggle, or
  // refresh it when open, and bring it into view.
  log.addEventListener("click", (event) => {
    if (!event.target.closest(".show-locations")) return;
    event.preventDefault();
    const panel = byId("locations-panel");
    const toggle = byId("locations-toggle");
    if (!panel.hidden) byId("locations-refresh").click();
    else if (!toggle.disabled) toggle.click();
    else {
      toast("The locations can be listed once this session is signed on again.", "info");
      return;
    }
    panel.scrollIntoView({ block: "nearest" });
    panel.focus({ preventScroll: true });
  });

  input.addEventListener("input", () => {
    const session = manager.current;
    if (session?.activeKey) session.typed(session.activeKey, input.value);
  });

  input.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a new line; an IME composing text keeps
    // its Enter.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const session = manager.current;
    if (!session?.activeKey) return;
    if (session.sendIm(session.activeKey, input.value)) input.value = "";
    input.focus();
  });

  // Buddy actions act on the conversation in view.
  const withBuddy = (action) => async () => {
    const session = manager.current;
    const conversation = session?.activeConversation;
    if (!conversation) return;
    try {
      await action(session, conversation.name);
    } catch (error) {
      toast(`${conversation.name}: ${error.message}`, "error");
    }
  };

  byId("warn-buddy").addEventListener(
    "click",
    withBuddy(async (session, name) => {
      const level = await session.warn(name, byId("warn-anonymous").checked);
      toast(`You warned ${name}; their warning level is now ${level}%.`, "info");
    }),
  );
  byId("remove-buddy").addEventListener(
    "click",
    withBuddy(async (session, name) => {
      await session.removeBuddy(name);
      toast(`${name} removed from ${session.screenName}'s buddy list.`, "info");
    }),
  );
  byId("add-this-buddy").addEventListener(
    "click",
    withBuddy(async (session, name) => {
      await session.addBuddy(name);
      toast(`${name} added to ${session.screenName}'s buddy list.`, "info");
    }),
  );
  byId("close-im").addEventListener("click", () => {
    const session = manager.current;
    if (!session?.activeKey) return;
    session.closeConversation(session.activeKey);
    (tabs.querySelector(".im-tab.active") ?? byId("new-im-name")).focus();
  });

  render();
}
