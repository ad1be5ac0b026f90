// The chat rooms of the session in view: the join form under the buddy
// list (#room-join-form), a tab per room beside the IM tabs (#room-tabs,
// .room-tab), and the room in view in place of the IM window
// (#room-window): its lines (#room-log, a .room-line per line said, with
// data-from; .room-notice for comings and goings), who is in it
// (#room-members, a .room-member with data-name each: a button that opens
// an IM), the box to talk (#room-text, Enter sends) and #room-leave.
// As with IMs, lines for rooms not in view only mark their tab, and lines
// for sessions not in view are not drawn (the sidebar counts them).

import { renderHtml } from "../html.js";
import { normalize } from "../names.js";
import { PUBLIC_EXCHANGE } from "../protocol.js";
import { NOTICE, roomNameProblem } from "../rooms.js";
import { byId, clockTime, h, setText, syncChildren } from "./dom.js";

const STICK_TO_BOTTOM_PX = 48;

function createLine(line) {
  const when = h("time", { datetime: new Date(line.time).toISOString() }, clockTime(line.time));
  if (line.kind === NOTICE) {
    return h("li", { class: "room-notice", dataset: { name: line.from } }, when, " ", line.text);
  }
  const classes = ["room-line", line.own ? "own" : "", line.whisper ? "whisper" : ""].filter(Boolean);
  return h(
    "li",
    { class: classes.join(" "), dataset: { from: line.from } },
    when,
    " ",
    h("span", { class: "from" }, line.from),
    h("span", { class: "colon" }, ": "),
    h("span", { class: "message-text" }, renderHtml(line.text)),
    line.whisper ? h("span", { class: "note" }, line.own ? "a whisper" : "whispered to you") : null,
  );
}

function createMember() {
  return h(
    "li",
    { class: "room-member" },
    h("button", { type: "button", class: "member-im" }, h("span", { class: "member-name" })),
  );
}

export function mountRooms(manager, toast) {
  const joinForm = byId("room-join-form");
  const joinName = byId("room-join-name");
  const joinPublic = byId("room-join-public");
  const joinSubmit = byId("room-join-submit");
  const tabs = byId("room-tabs");
  const window_ = byId("room-window");
  const log = byId("room-log");
  const members = byId("room-members");
  const form = byId("room-form");
  const input = byId("room-text");
  const send = byId("room-send");
  const leave = byId("room-leave");
  const to = byId("room-to");
  const hint = byId("room-hint");
  let shown = null; // {session, room} whose log is on screen

  // Whom the next line goes to: everyone, or one member (a whisper).
  function renderTo(session, room) {
    const me = normalize(session.screenName);
    const others = room.memberNames.filter((name) => normalize(name) !== me);
    const chosen = to.value;
    syncChildren(
      to,
      ["", ...others],
      (name) => (name === "" ? "" : normalize(name)),
      () => h("option"),
      (option, name) => {
        option.value = name;
        setText(option, name === "" ? "everyone" : name);
      },
    );
    // Someone who left can no longer be whispered to: back to everyone.
    to.value = others.includes(chosen) ? chosen : "";
    renderHint();
  }

  function renderHint() {
    setText(
      hint,
      (to.value === "" ? "Everyone in the room sees it." : `Only ${to.value} sees it (a whisper).`) +
        " Enter sends, Shift+Enter starts a new line.",
    );
  }

  function renderTabs(session) {
    const rooms = session ? [...session.rooms.values()] : [];
    tabs.hidden = rooms.length === 0;
    syncChildren(
      tabs,
      rooms,
      (room) => room.key,
      () =>
        h(
          "button",
          { type: "button", class: "im-tab room-tab" },
          h("span", { class: "tab-kind", "aria-hidden": "true" }, "#"),
          h("span", { class: "tab-name" }),
          h("span", { class: "tab-unread" }),
        ),
      (button, room) => {
        const active = room.key === session.activeRoomKey;
        button.classList.toggle("active", active);
        if (active) button.setAttribute("aria-current", "true");
        else button.removeAttribute("aria-current");
        setText(button.querySelector(".tab-name"), room.name);
        const unread = button.querySelector(".tab-unread");
        setText(unread, room.unread ? String(room.unread) : "");
        unread.hidden = !room.unread;
        button.setAttribute(
          "aria-label",
          `Chat room ${room.name}` + (room.unread ? `, ${room.unread} unread` : ""),
        );
      },
    );
  }

  function renderMembers(session, room) {
    const names = room.memberNames;
    setText(byId("room-count"), `${names.length} ${names.length === 1 ? "person" : "people"} here`);
    const me = normalize(session.screenName);
    syncChildren(
      members,
      names,
      (name) => normalize(name),
      createMember,
      (item, name) => {
        const self = normalize(name) === me;
        item.dataset.name = name;
        item.classList.toggle("self", self);
        const button = item.firstElementChild;
        setText(button.querySelector(".member-name"), self ? `${name} (you)` : name);
        // One's own name opens nothing.
        button.disabled = self;
        button.setAttribute("aria-label", self ? `${name}, you` : `${name}: send an IM`);
      },
    );
    renderTo(session, room);
  }

  function renderLog(session, room) {
    log.setAttribute("aria-busy", "true"); // one change, not a line-by-line reading
    log.replaceChildren(...room.lines.map(createLine));
    log.scrollTop = log.scrollHeight;
    log.removeAttribute("aria-busy");
    shown = { session, room };
  }

  function render({ force = false } = {}) {
    const session = manager.current;
    renderTabs(session);
    const room = session?.activeRoom ?? null;
    window_.hidden = room === null;
    if (!room) {
      shown = null;
      log.replaceChildren();
      members.replaceChildren();
      return;
    }
    setText(byId("room-name"), room.name);
    const switched = shown?.session !== session || shown?.room !== room;
    if (switched || force) renderLog(session, room);
    if (switched) {
      input.value = room.draft;
      to.value = "";
    }
    renderMembers(session, room);
    // Lines are said only on a connection: there is no queue for them as
    // for IMs. Typing may go on while the socket comes back.
    input.disabled = !session.live;
    send.disabled = !session.live;
    to.disabled = !session.live;
    leave.disabled = !session.connected;
    input.placeholder = session.live ? `Say something in ${room.name}` : "Sign on again to join rooms";
    setText(byId("room-text-label"), `Say in ${room.name}`);
  }

  function append(line) {
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < STICK_TO_BOTTOM_PX;
    log.append(createLine(line));
    // Follow the room unless the user scrolled up to read.
    if (atBottom || line.own) log.scrollTop = log.scrollHeight;
  }

  const isShown = (session, room) => shown !== null && shown.session === session && shown.room === room;

  manager.on("room-line", (session, room, line) => {
    if (session === manager.current && isShown(session, room)) append(line);
  });
  manager.on("room-members", (session, room) => {
    if (session === manager.current && isShown(session, room)) renderMembers(session, room);
  });
  for (const type of ["rooms", "conversations", "change"]) {
    manager.on(type, (session) => {
      if (session === manager.current) render();
    });
  }
  manager.on("current", () => render());

  tabs.addEventListener("click", (event) => {
    const tab = event.target.closest(".room-tab");
    if (tab && manager.current) manager.current.activateRoom(tab.dataset.key);
  });

  members.addEventListener("click", (event) => {
    const member = event.target.closest(".room-member");
    const session = manager.current;
    if (!member || !session || event.target.closest("button")?.disabled) return;
    session.openConversation(member.dataset.name);
    byId("im-text").focus();
  });

  // --- joining ---

  // The browser's own validation says what is wrong with a name, and keeps
  // the form from being sent until it is right.
  joinName.addEventListener("input", () => {
    const problem = joinName.value === "" ? null : roomNameProblem(joinName.value);
    joinName.setCustomValidity(problem ?? "");
  });

  joinForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const session = manager.current;
    const name = joinName.value;
    if (!session || roomNameProblem(name)) return;
    joinSubmit.disabled = true; // one join at a time from the form
    try {
      const exchange = joinPublic.checked ? PUBLIC_EXCHANGE : undefined;
      await session.joinRoom(name, { exchange });
      // Only if the user has not started on another name meanwhile.
      if (joinName.value === name) joinName.value = "";
      if (session === manager.current) input.focus();
    } catch (error) {
      toast(`${session.screenName} could not join ${name.trim()}: ${error.message}`, "error");
    } finally {
      joinSubmit.disabled = false;
    }
  });

  // --- talking and leaving ---

  input.addEventListener("input", () => {
    const room = manager.current?.activeRoom;
    if (room) room.draft = input.value;
  });

  input.addEventListener("keydown", (event) => {
    // As in the IM box: Enter sends, Shift+Enter is a new line, an IME
    // composing text keeps its Enter.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const session = manager.current;
    const room = session?.activeRoom;
    const text = input.value;
    const whisperTo = to.value || undefined;
    if (!room || !text.trim()) return;
    input.value = "";
    room.draft = "";
    input.focus();
    try {
      await session.say(room.key, text, whisperTo);
    } catch (error) {
      toast(`Not said in ${room.name}: ${error.message}`, "error");
      // Give the words back rather than lose them, unless new ones came.
      if (room.draft === "") room.draft = text;
      if (isShown(session, room) && input.value === "") input.value = text;
    }
  });

  to.addEventListener("change", renderHint);

  leave.addEventListener("click", async () => {
    const session = manager.current;
    const room = session?.activeRoom;
    if (!room) return;
    leave.disabled = true;
    try {
      await session.leaveRoom(room.key);
    } catch (error) {
      toast(`${session.screenName} did not leave ${room.name}: ${error.message}`, "error");
      render();
      return;
    }
    // The focused button went with the room: keep the keyboard user near.
    if (session === manager.current) {
      (tabs.querySelector(".room-tab.active") ?? byId("room-join-name")).focus();
    }
  });

  render();
}
