// The buddy list of the session in view: groups in the server's order, each
// .buddy a button (data-name, data-online) that opens the conversation.
// Below it: open an IM to anyone, and add a buddy. Background sessions keep
// their lists up to date in the model; only the one in view is drawn.

import { normalize } from "../names.js";
import { byId, duration, h, setText, syncChildren } from "./dom.js";

const IDLE_REFRESH_MS = 60000; // idle times shown in minutes

export function presenceText(buddy) {
  if (!buddy.known) return "not on your buddy list";
  if (!buddy.online) return "offline";
  const parts = [];
  if (buddy.away) parts.push("away");
  if (buddy.idleSince) parts.push(`idle ${duration((Date.now() - buddy.idleSince) / 1000)}`);
  return parts.join(", ") || "online";
}

function createGroup() {
  const toggle = h(
    "button",
    { type: "button", class: "group-toggle", "aria-expanded": "true" },
    h("span", { class: "chevron", "aria-hidden": "true" }, "▾"),
    h("span", { class: "group-name" }),
    h("span", { class: "group-count" }),
  );
  return h(
    "section",
    { class: "group" },
    h("h4", { class: "group-head" }, toggle),
    h("ul", { class: "group-buddies" }),
  );
}

function createBuddy() {
  return h(
    "li",
    {},
    h(
      "button",
      { type: "button", class: "buddy" },
      h("span", { class: "presence-dot", "aria-hidden": "true" }),
      h("span", { class: "buddy-name" }),
      h("span", { class: "buddy-status" }),
    ),
  );
}

function updateBuddy(item, { session, name }) {
  const buddy = session.buddy(name);
  const button = item.firstElementChild;
  button.dataset.name = name;
  button.dataset.online = String(buddy.online);
  button.dataset.away = String(buddy.away);
  button.dataset.idle = String(Boolean(buddy.idleSince));
  const conversation = session.conversations.get(normalize(name));
  button.classList.toggle("has-unread", Boolean(conversation?.unread));
  setText(button.querySelector(".buddy-name"), name);
  setText(button.querySelector(".buddy-status"), presenceText(buddy));
  button.setAttribute("aria-label", `${name}, ${presenceText(buddy)}. Send an IM.`);
}

export function mountBuddyList(manager, toast) {
  const container = byId("buddy-groups");
  const empty = byId("buddies-empty");
  const groupNames = byId("group-names");
  const collapsed = new Set(); // "sessionKey/group" of groups folded by the user

  function render() {
    const session = manager.current;
    if (!session) {
      container.replaceChildren();
      return;
    }
    const groups = session.groups;
    empty.hidden = groups.some((g) => g.buddies.length > 0);
    syncChildren(
      container,
      groups,
      (group) => group.name,
      createGroup,
      (element, group) => {
        const folded = collapsed.has(`${session.key}/${group.name}`);
        const online = group.buddies.filter((name) => session.buddy(name).online).length;
        element.querySelector(".group-toggle").setAttribute("aria-expanded", String(!folded));
        setText(element.querySelector(".group-name"), group.name);
        setText(element.querySelector(".group-count"), `${online}/${group.buddies.length}`);
        const list = element.querySelector(".group-buddies");
        list.hidden = folded;
        syncChildren(
          list,
          group.buddies.map((name) => ({ session, name })),
          (entry) => normalize(entry.name),
          createBuddy,
          updateBuddy,
        );
      },
    );
    groupNames.replaceChildren(...groups.map((g) => h("option", { value: g.name })));
  }

  container.addEventListener("click", (event) => {
    const session = manager.current;
    if (!session) return;
    const toggle = event.target.closest(".group-toggle");
    if (toggle) {
      const name = toggle.querySelector(".group-name").textContent;
      const id = `${session.key}/${name}`;
      if (collapsed.has(id)) collapsed.delete(id);
      else collapsed.add(id);
      render();
      return;
    }
    const buddy = event.target.closest(".buddy");
    if (buddy) {
      session.openConversation(buddy.dataset.name);
      byId("im-text").focus();
    }
  });

  byId("new-im-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const session = manager.current;
    const input = byId("new-im-name");
    const name = input.value.trim();
    if (!session || !name) return;
    session.openConversation(name);
    input.value = "";
    byId("im-text").focus();
  });

  byId("buddy-add-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const session = manager.current;
    const nameInput = byId("buddy-add-name");
    const groupInput = byId("buddy-add-group");
    const name = nameInput.value.trim();
    if (!session || !name) return;
    try {
      await session.addBuddy(name, groupInput.value.trim() || undefined);
      // Only if the user has not started on the next name meanwhile.
      if (nameInput.value.trim() === name) nameInput.value = "";
      toast(`${name} added to ${session.screenName}'s buddy list.`, "info");
    } catch (error) {
      toast(`${name} not added: ${error.message}`, "error");
    }
  });

  const ifCurrent = (session) => {
    if (session === manager.current) render();
  };
  manager.on("current", render);
  manager.on("buddies", ifCurrent);
  manager.on("conversations", ifCurrent);
  setInterval(render, IDLE_REFRESH_MS);
  render();
}
