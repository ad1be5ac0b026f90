// One sidebar entry: a screen name signed on through a SessionLink, with
// what the page knows of it (buddies and their presence, conversations,
// unread counts, away and idle). It turns server events into model changes
// and tells its owner through notify(type, ...args):
//
//   "change"                  sidebar fields: state, name, unread, preview
//   "buddies"                 the buddy list or someone's presence
//   "conversations"           open conversations, the active one, tab marks
//   "message" (conv, msg)     a line was added to a conversation
//   "message-updated" (conv, msg)  a sent line got its answer
//   "history" (conv)          a conversation's earlier lines were loaded
//   "typing" (conv)           the buddy's typing state
//   "rooms"                   rooms joined or left, the one in view, tab marks
//   "room-line" (room, line)  a line (or a come-and-go notice) was added to a room
//   "room-members" (room)     who is in a room changed
//   "info"                    away, idle, warning level
//   "signed-on"               a new instance is up (create_session answered)
//   "toast" (text, kind)      something the user should hear about
//   "ended" (reason)          the server ended the session
//
// No DOM here.

import { BuddyList } from "./buddies.js";
import { AUTO, Conversation, ELSEWHERE, IN, OUT, SYSTEM, SYSTEM_SENDER } from "./conversations.js";
import { htmlToText, textToHtml } from "./html.js";
import { CONNECTED, CONNECTING, ERROR, RECONNECTING } from "./link.js";
import { normalize, sameName } from "./names.js";
import { MAX_IM_LENGTH, MAX_ROOM_TEXT_LENGTH, randomId } from "./protocol.js";
import { cleanRoomName, NOTICE, Room, roomKey, SAID } from "./rooms.js";

const HISTORY_LIMIT = 200; // lines loaded per conversation from storage
const SERVER_HISTORY_LIMIT = 100; // lines asked of the server (get_history)
const MEMORY_LIMIT = 500; // lines kept in memory per conversation (and per room)
const TYPED_AFTER_MS = 3000; // a pause this long turns "typing" into "typed"
const PERSIST_DELAY_MS = 1000;
const MANUAL_IDLE_SECONDS = 60; // "show me as idle" starts the clock here

export class Session {
  visible = false; // the one in view
  unread = 0; // incoming lines while not in view
  preview = null; // {from, text} of the latest line
  buddies = new BuddyList();
  conversations = new Map(); // normalized buddy -> Conversation, in tab order
  activeKey = null; // the conversation shown (or shown again when the room in view closes)
  rooms = new Map(); // room key -> Room, in tab order; in memory only (see rooms.js)
  activeRoomKey = null; // the room shown instead of a conversation, or null
  awayMessage = null;
  idle = false; // idle by hand
  warningLevel = 0;
  info = null; // the last get_session_info result
  instanceId = null; // this instance among the screen name's (create_session, get_session_info)
  endingFromHere = false; // another session on this page is signing this one off

  #notify;
  #store;
  #persistTimer = null;
  #saving = new WeakMap(); // message -> promise of its storage id
  #inFlight = new Set(); // client_message_ids being sent from this page
  #autoIdleSeconds = 0; // how long the page has been left alone (0: in use)
  #serverIdle = false; // whether the server was last told "idle"
  #disposed = false; // removed from the sidebar: nothing more is saved
  #joining = new Set(); // keys of rooms asked for with join_room, not answered yet
  #rejoinAfterRestore = []; // rooms the page had joined before a reload

  constructor({ key, screenName, link, store, notify, tabId = null, createdAt, lastUsed }) {
    this.key = key;
    this.tabId = tabId; // the tab whose sidebar this is (tabs.js)
    this.screenName = screenName;
    this.link = link;
    this.#store = store;
    this.#notify = notify;
    this.createdAt = createdAt ?? Date.now();
    this.lastUsed = lastUsed ?? this.createdAt;

    link.on("change", () => {
      // A stopped link has no instance, and so no rooms: the server took
      // them with it.
      if (!this.live && this.rooms.size > 0) this.#dropRooms();
      this.#notify("change");
    });
    link.on("signed-up", (name) => this.#toast(`Account ${name} created.`, "info"));
    link.on("signed-on", (result) => this.#signedOn(result));
    link.on("restored", () => this.#restored());
    link.on("failed", (error) => {
      this.#toast(`${this.screenName} could not sign on: ${error.message}`, "error");
      this.persist();
    });
    link.on("lost", (error) => {
      this.#toast(
        `${this.screenName} was signed off: the session could not be restored (${error.message}).`,
        "error",
      );
      this.persist();
    });
    link.on("ended", (reason) => this.#notify("ended", reason));
    link.on("event", (event) => this.#onEvent(event));
  }

  // What the sidebar shows: connected, active, reconnecting, disconnected
  // or error.
  get uiState() {
    switch (this.link.state) {
      case CONNECTED:
        return this.link.busy > 0 ? "active" : "connected";
      case CONNECTING:
        return "active";
      case RECONNECTING:
        return "reconnecting";
      case ERROR:
        return "error";
      default:
        return "disconnected";
    }
  }

  get live() {
    return this.link.live;
  }

  get connected() {
    return this.link.state === CONNECTED;
  }

  // The conversation in view: none while a room is.
  get activeConversation() {
    if (this.activeRoomKey !== null) return null;
    return this.conversations.get(this.activeKey) ?? null;
  }

  get activeRoom() {
    return this.rooms.get(this.activeRoomKey) ?? null;
  }

  // --- signing on and off -------------------------------------------------

  // signUp: make the account first (when server_info says the server may).
  signOn(password, { signUp = false } = {}) {
    this.awayMessage = null;
    this.idle = false;
    this.lastUsed = Date.now();
    this.link.signOn(this.screenName, password, { signUp });
    this.persist();
  }

  // After a reload: take the instance the record names over (at once: its
  // resume window is running), bring back the conversations that were open,
  // then send again whatever was still being sent when the page went.
  async restore(record) {
    if (record.sessionId && record.resumeToken) {
      // The instance is still in the rooms the page before the reload
      // joined: once restored, it asks for each again, which joins nothing
      // and answers who is there (rooms.js).
      this.#rejoinAfterRestore = record.rooms ?? [];
      this.link.resume({
        sessionId: record.sessionId,
        resumeToken: record.resumeToken,
        lastSeq: record.lastSeq ?? 0,
      });
    }
    const names = record.conversations ?? [];
    await Promise.all(names.map((name) => this.#openQuietly(name).loaded));
    if (this.conversations.has(record.activeBuddy)) this.activeKey = record.activeBuddy;
    let latest = null;
    for (const conversation of this.conversations.values()) {
      for (const message of conversation.messages) {
        if (!latest || message.time >= latest.time) latest = message;
        if (message.kind !== OUT || message.status !== "pending") continue;
        if (this.live) this.#deliver(message);
        else this.#settle(message, "failed", "the session had ended");
      }
    }
    if (latest && !this.preview) this.preview = { from: latest.from, text: htmlToText(latest.text) };
    this.#notify("conversations");
    this.#notify("change");
  }

  // The entry leaves the sidebar: a late timer or event must not write its
  // record back after the manager deleted it.
  dispose() {
    this.#disposed = true;
    clearTimeout(this.#persistTimer);
    this.#persistTimer = null;
    for (const conversation of this.conversations.values()) clearTimeout(conversation.typingTimer);
  }

  async signOff() {
    for (const conversation of this.conversations.values()) clearTimeout(conversation.typingTimer);
    await this.link.close();
    this.persist();
  }

  // --- what the sidebar and storage keep ----------------------------------

  toRecord() {
    return {
      key: this.key,
      tabId: this.tabId,
      screenName: this.screenName,
      sessionId: this.link.sessionId,
      resumeToken: this.link.resumeToken,
      lastSeq: this.link.lastSeq,
      createdAt: this.createdAt,
      lastUsed: this.lastUsed,
      conversations: [...this.conversations.values()].map((c) => c.name),
      activeBuddy: this.activeKey,
      // Rooms to take back after a reload (those of the page before it too,
      // until they are back).
      rooms: [...this.#rejoinAfterRestore, ...[...this.rooms.values()].map((room) => room.name)],
    };
  }

  persist() {
    clearTimeout(this.#persistTimer);
    this.#persistTimer = null;
    if (this.#disposed) return;
    this.#store.saveSession(this.toRecord()).catch((error) => console.warn("not saved", error));
  }

  #persistSoon() {
    if (this.#persistTimer === null && !this.#disposed) {
      this.#persistTimer = setTimeout(() => this.persist(), PERSIST_DELAY_MS);
    }
  }

  // The user looked at this session (or used it): nothing is unread and it
  // is the last one to give up at the session limit.
  markSeen() {
    this.lastUsed = Date.now();
    this.unread = 0;
    const active = this.activeConversation ?? this.activeRoom;
    if (active) active.unread = 0;
    this.#notify("change");
    this.#notify("conversations");
    this.#notify("rooms");
    this.#persistSoon();
  }

  // --- buddies -----------------------------------------------------------------

  // Shorthands for the views.
  get groups() {
    return this.buddies.groups;
  }

  buddy(name) {
    return this.buddies.get(name);
  }

  isBuddy(name) {
    return this.buddies.has(name);
  }

  async refreshBuddyList() {
    this.#setBuddyList(await this.link.request("get_buddy_list", {}, { quiet: true }));
  }

  // The answer carries the new list (the user's other sessions get a
  // buddy_list event instead); a server that leaves it out is asked.
  async addBuddy(name, group) {
    const parameters = group ? { name, group } : { name };
    this.#editedList(await this.link.request("add_buddy", parameters));
  }

  async removeBuddy(name) {
    this.#editedList(await this.link.request("remove_buddy", { name }));
  }

  #editedList(result) {
    if (result?.buddy_list) this.#setBuddyList(result.buddy_list);
    else this.refreshBuddyList().catch(() => {});
  }

  // Resolves with the buddy's new warning level.
  async warn(name, anonymous) {
    const result = await this.link.request("warn", { name, anonymous: Boolean(anonymous) });
    this.lastUsed = Date.now();
    return result.warning_level;
  }

  #setBuddyList(list) {
    this.buddies.setList(list);
    this.#notify("buddies");
  }

  // --- away and idle ---------------------------------------------------------

  // message: the away message, or null to come back.
  async setAway(message) {
    await this.link.request("update_session_state", { away_message: message });
    this.awayMessage = message;
    this.lastUsed = Date.now();
    this.#notify("info");
    this.#notify("change");
  }

  async setIdle(idle) {
    const seconds = idle ? Math.max(MANUAL_IDLE_SECONDS, this.#autoIdleSeconds) : 0;
    await this.link.request("update_session_state", { idle_seconds: seconds });
    this.idle = idle;
    this.#serverIdle = idle;
    this.#notify("info");
    if (!idle) this.#syncIdle(); // the page may itself be idle
  }

  // The page noticed the user has been away from the keyboard (seconds > 0)
  // or is back (0). Idle set by hand wins.
  setAutoIdle(seconds) {
    this.#autoIdleSeconds = seconds;
    this.#syncIdle();
  }

  // Tell the server only when idle starts or ends, and only when connected;
  // called again after every sign-on and restore, so a change made while
  // the socket was down is not lost.
  #syncIdle() {
    const idle = this.#autoIdleSeconds > 0;
    if (this.idle || !this.connected || idle === this.#serverIdle) return;
    this.#serverIdle = idle;
    this.link
      .request("update_session_state", { idle_seconds: this.#autoIdleSeconds }, { quiet: true })
      .catch(() => {
        this.#serverIdle = !idle; // try again next time
      });
  }

  async refreshInfo() {
    this.info = await this.link.request("get_session_info", {}, { quiet: true });
    this.instanceId = this.info.instance_id ?? this.instanceId; // after a reload, only from here
    this.awayMessage = this.info.away_message ?? null;
    this.warningLevel = this.info.warning_level ?? this.warningLevel;
    this.#notify("info");
  }

  listLocations() {
    return this.link.request("list_client_sessions").then((result) => result.sessions ?? []);
  }

  // Close another session of this screen name (one of listLocations()).
  async signOffLocation(instanceId) {
    await this.link.request("sign_off_location", { instance_id: instanceId });
  }

  // --- conversations ---------------------------------------------------------

  // Open (or bring forward) the conversation with `name` and show it.
  openConversation(name) {
    const conversation = this.#openQuietly(name).conversation;
    this.activate(conversation.key);
    return conversation;
  }

  activate(key) {
    if (!this.conversations.has(key)) return;
    this.activeKey = key;
    this.activeRoomKey = null;
    this.conversations.get(key).unread = 0;
    this.#notify("conversations");
    this.#persistSoon();
  }

  closeConversation(key) {
    const conversation = this.conversations.get(key);
    if (!conversation) return;
    clearTimeout(conversation.typingTimer);
    this.#sendTyping(conversation, "none");
    this.conversations.delete(key);
    if (this.activeKey === key) this.activeKey = [...this.conversations.keys()].pop() ?? null;
    this.#notify("conversations");
    this.#persistSoon();
  }

  // Returns false when nothing was sent (empty, too long, no conversation).
  sendIm(key, text) {
    const conversation = this.conversations.get(key);
    if (!conversation || !text.trim()) return false;
    const html = textToHtml(text);
    if (html.length > MAX_IM_LENGTH) {
      this.#toast(`That message is too long (${html.length} of ${MAX_IM_LENGTH} characters).`, "error");
      return false;
    }
    // The IM itself ends the buddy's "typing" display; no typing event needed.
    clearTimeout(conversation.typingTimer);
    conversation.sentTyping = "none";
    conversation.draft = "";
    this.lastUsed = Date.now();
    const message = this.#append(
      conversation,
      {
        kind: OUT,
        from: this.screenName,
        text: html,
        time: Date.now(),
        clientMessageId: randomId(),
        status: "pending",
      },
      false,
    );
    this.#deliver(message);
    return true;
  }

  // Called on every edit of the message box: "typing" while keys come,
  // "typed" after a pause with text left, "none" when the box is emptied.
  // Only changes are sent.
  typed(key, text) {
    const conversation = this.conversations.get(key);
    if (!conversation) return;
    conversation.draft = text;
    clearTimeout(conversation.typingTimer);
    if (text.trim() === "") {
      this.#sendTyping(conversation, "none");
      return;
    }
    this.#sendTyping(conversation, "typing");
    conversation.typingTimer = setTimeout(
      () => this.#sendTyping(conversation, "typed"),
      TYPED_AFTER_MS,
    );
  }

  #sendTyping(conversation, state) {
    if (conversation.sentTyping === state) return;
    conversation.sentTyping = state;
    if (!this.connected) return;
    // Typing is a hint: an offline buddy's refusal is not worth a word.
    this.link
      .request("typing", { to: conversation.name, state }, { quiet: true })
      .catch(() => {});
  }

  // The conversation, created (with its stored lines loading) if new.
  // `loaded` settles when the stored lines are in.
  #openQuietly(name) {
    const key = normalize(name);
    let conversation = this.conversations.get(key);
    if (conversation) return { conversation, loaded: Promise.resolve() };
    conversation = new Conversation(name);
    this.conversations.set(key, conversation);
    conversation.loaded = this.#loadHistory(conversation);
    conversation.loaded.then(() => this.#fetchServerHistory(conversation));
    const loaded = conversation.loaded;
    this.#notify("conversations");
    this.#persistSoon();
    return { conversation, loaded };
  }

  async #loadHistory(conversation) {
    let rows;
    try {
      rows = await this.#store.recentMessages(this.key, conversation.key, HISTORY_LIMIT);
    } catch (error) {
      console.warn("history not loaded", error);
      return;
    }
    if (rows.length === 0) return;
    // Lines that arrived while loading may already be among the rows (their
    // write came first): keep each once.
    const have = new Set(conversation.messages.map((m) => m.id).filter((id) => id !== undefined));
    conversation.messages = rows.filter((row) => !have.has(row.id)).concat(conversation.messages);
    this.#notify("history", conversation);
  }

  // The server keeps the screen name's recent IMs (get_history), so a new
  // session shows what was said before it existed. Only lines older than
  // the oldest this page has are taken: from there on the page has them
  // all. They are shown, not stored: the server keeps them. Asked once per
  // conversation, when connected (after a reload: once restored).
  async #fetchServerHistory(conversation) {
    if (conversation.serverHistory || !this.connected) return;
    conversation.serverHistory = "asked";
    await conversation.loaded; // "older than the oldest line here" needs them all here
    let result;
    try {
      result = await this.link.request(
        "get_history",
        { with: conversation.name, limit: SERVER_HISTORY_LIMIT },
        { quiet: true },
      );
    } catch (error) {
      // An older server, or history off: nothing to add. A lost socket: ask
      // again after the restore.
      if (error.transient) conversation.serverHistory = null;
      return;
    }
    if (this.conversations.get(conversation.key) !== conversation) return; // closed meanwhile
    const oldest = conversation.messages[0]?.time ?? Infinity;
    const earlier = (result.messages ?? [])
      .filter((line) => line.at * 1000 < oldest - 1000) // `at` is in whole seconds
      .map((line) => ({
        sessionKey: this.key,
        buddy: conversation.key,
        buddyName: conversation.name,
        kind: line.outgoing ? OUT : IN,
        from: line.outgoing ? this.screenName : line.with || conversation.name,
        text: line.text ?? "",
        time: line.at * 1000,
        status: line.outgoing ? "sent" : undefined,
        earlier: true,
      }));
    if (earlier.length === 0) return;
    conversation.messages = earlier.concat(conversation.messages);
    this.#notify("history", conversation);
  }

  #append(conversation, fields, incoming) {
    const message = {
      sessionKey: this.key,
      buddy: conversation.key,
      buddyName: conversation.name,
      ...fields,
    };
    conversation.messages.push(message);
    if (conversation.messages.length > MEMORY_LIMIT) conversation.messages.shift();
    this.preview = { from: fields.from, text: htmlToText(fields.text) };
    // An incoming IM opens its window when none is open.
    if (this.activeKey === null) this.activeKey = conversation.key;
    if (incoming) {
      if (!this.visible) this.unread += 1;
      if (!this.visible || this.activeConversation !== conversation) conversation.unread += 1;
    }
    this.#save(message);
    this.#notify("message", conversation, message);
    this.#notify("conversations");
    this.#notify("change");
    return message;
  }

  #deliver(message) {
    this.#inFlight.add(message.clientMessageId);
    this.link
      .sendIm({ to: message.buddyName, text: message.text, client_message_id: message.clientMessageId })
      .then(
        (result) => this.#settle(message, result.delivered === false ? "stored" : "sent"),
        (error) => {
          this.#settle(message, "failed", error.message);
          this.#toast(`${this.screenName}: not sent to ${message.buddyName}: ${error.message}`, "error");
        },
      )
      .finally(() => this.#inFlight.delete(message.clientMessageId));
  }

  #settle(message, status, error) {
    message.status = status;
    if (error) message.error = error;
    const saved = this.#saving.get(message) ?? Promise.resolve();
    saved
      .then(() => message.id !== undefined && !this.#disposed && this.#store.updateMessage({ ...message }))
      .catch((e) => console.warn("not saved", e));
    this.#notify("message-updated", this.conversations.get(message.buddy) ?? null, message);
  }

  // The line and the seq that brought it, stored together (see store.js).
  #save(message) {
    if (this.#disposed) return;
    const saved = this.#store.addMessage({ ...message }, this.toRecord()).then(
      (id) => {
        message.id = id;
      },
      (error) => console.warn("not saved", error),
    );
    this.#saving.set(message, saved);
  }

  // --- chat rooms --------------------------------------------------------------

  // Join (or, when already in it, just show) the room `name`; resolves with
  // the Room, shown. exchange: 5 for an admin's public room, else the
  // default (users' rooms). The roster comes as a room_joined event, before
  // the answer.
  async joinRoom(name, { exchange } = {}) {
    const wanted = cleanRoomName(name);
    const key = roomKey(wanted);
    if (this.rooms.has(key)) {
      this.activateRoom(key);
      return this.rooms.get(key);
    }
    const parameters = exchange ? { room: wanted, exchange } : { room: wanted };
    this.#joining.add(key);
    let result;
    try {
      result = await this.link.request("join_room", parameters);
    } finally {
      this.#joining.delete(key);
    }
    const spelled = result?.room || wanted;
    const room = this.rooms.get(roomKey(spelled)) ?? this.#addRoom(spelled);
    room.name = spelled;
    this.lastUsed = Date.now();
    this.activateRoom(room.key);
    this.persist(); // now: a reload right after must know to leave it
    return room;
  }

  // A room the instance is in from before a reload: its tab comes back,
  // with who is there now; what was said before the reload is not.
  async #rejoinRoom(name) {
    const key = roomKey(name);
    if (this.rooms.has(key)) return;
    this.#joining.add(key);
    let result;
    try {
      result = await this.link.request("join_room", { room: name }, { quiet: true });
    } catch {
      return; // gone meanwhile (another session took the place, or the room closed)
    } finally {
      this.#joining.delete(key);
    }
    const spelled = result?.room || name;
    const room = this.rooms.get(roomKey(spelled)) ?? this.#addRoom(spelled);
    room.name = spelled;
    for (const member of result?.members ?? []) room.members.set(normalize(member), member);
    room.rosterKnown = true;
    this.#notify("room-members", room);
    this.persist();
  }

  activateRoom(key) {
    const room = this.rooms.get(key);
    if (!room) return;
    this.activeRoomKey = key;
    room.unread = 0;
    this.#notify("rooms");
    this.#notify("conversations"); // the IM window gives way
  }

  // Leave on purpose. A room the server says this session is not in any
  // more (SessionError) is closed all the same.
  async leaveRoom(key) {
    const room = this.rooms.get(key);
    if (!room) return;
    try {
      await this.link.request("leave_room", { room: room.name });
    } catch (error) {
      if (error.type !== "SessionError") throw error;
    }
    this.#closeRoom(key);
  }

  // Say `text` (plain text, as typed) in the room, to everyone or, with `to`,
  // to that member alone (a whisper). Resolves once the server
  // took it; the line itself comes back as a room_message, in order with
  // everyone else's, so nothing is drawn here.
  async say(key, text, to) {
    const room = this.rooms.get(key);
    if (!room) throw new Error("not in that room");
    const html = textToHtml(text);
    if (html.length > MAX_ROOM_TEXT_LENGTH) {
      throw new Error(`too long (${html.length} of ${MAX_ROOM_TEXT_LENGTH} characters)`);
    }
    this.lastUsed = Date.now();
    await this.link.request("say", to ? { room: room.name, text: html, to } : { room: room.name, text: html });
  }

  #addRoom(name) {
    const room = new Room(name);
    // Whether or not the roster names this session, it is in the room.
    room.members.set(normalize(this.screenName), this.screenName);
    this.rooms.set(room.key, room);
    this.#notify("rooms");
    return room;
  }

  #closeRoom(key) {
    if (!this.rooms.delete(key)) return;
    if (this.activeRoomKey === key) this.activeRoomKey = [...this.rooms.keys()].pop() ?? null;
    this.#notify("rooms");
    this.#notify("conversations"); // the IM window may be back
    this.#notify("change"); // the sidebar's unread count may have had lines of it
    this.persist();
  }

  // The instance is gone (signed off, ended, lost) or replaced by a new one.
  #dropRooms() {
    this.rooms.clear();
    this.activeRoomKey = null;
    this.#notify("rooms");
    this.#notify("conversations");
    this.#persistSoon();
  }

  #addRoomLine(room, fields) {
    const line = { time: Date.now(), ...fields };
    room.lines.push(line);
    if (room.lines.length > MEMORY_LIMIT) room.lines.shift();
    this.#notify("room-line", room, line);
    return line;
  }

  // First the whole roster (no notices), then each newcomer.
  #roomJoined(event) {
    const key = roomKey(event.room);
    let room = this.rooms.get(key);
    if (!room) {
      // A room left already, or one joined before a reload: not shown.
      if (!this.#joining.has(key)) return;
      room = this.#addRoom(event.room);
    }
    const time = event.timestamp || Date.now();
    for (const name of event.names ?? []) {
      const member = normalize(name);
      if (room.rosterKnown && !room.members.has(member)) {
        this.#addRoomLine(room, { kind: NOTICE, from: name, text: `${name} joined the room.`, time });
      }
      room.members.set(member, name);
    }
    room.rosterKnown = true;
    this.#notify("room-members", room);
  }

  #roomLeft(event) {
    const room = this.rooms.get(roomKey(event.room));
    if (!room) return;
    if (event.you) {
      // Not asked for: most likely another session of this screen name
      // joined the room (one session of a user per room), or the server
      // closed it.
      this.#closeRoom(room.key);
      this.#toast(
        `${this.screenName} is no longer in the room ${room.name} ` +
          "(another session of this screen name may have joined it).",
        "warning",
      );
      return;
    }
    const time = event.timestamp || Date.now();
    for (const name of event.names ?? []) {
      if (!room.members.delete(normalize(name))) continue;
      this.#addRoomLine(room, { kind: NOTICE, from: name, text: `${name} left the room.`, time });
    }
    this.#notify("room-members", room);
  }

  // A line counts as unread as an IM does: for the sidebar while the
  // session is not in view, for its tab while the room is not. This
  // session's own lines come back too (the server reflects them) and
  // count for nothing.
  #roomMessage(event) {
    const room = this.rooms.get(roomKey(event.room));
    if (!room) return;
    const from = event.from || "";
    const own = sameName(from, this.screenName);
    const text = event.text ?? "";
    const line = this.#addRoomLine(room, {
      kind: SAID,
      own,
      from,
      text,
      whisper: event.whisper === true,
      time: event.timestamp || Date.now(),
    });
    this.preview = { from: `${from} in ${room.name}`, text: htmlToText(line.text) };
    if (!own) {
      if (!this.visible) this.unread += 1;
      if (!this.visible || this.activeRoomKey !== room.key) room.unread += 1;
    }
    this.#notify("rooms");
    this.#notify("change");
  }

  // --- server events ---------------------------------------------------------

  #signedOn(result) {
    this.screenName = result.screen_name || this.screenName;
    this.#rejoinAfterRestore = [];
    if (this.rooms.size > 0) this.#dropRooms(); // a new instance is in no room
    this.instanceId = result.instance_id;
    this.resumeSeconds = result.resume_seconds;
    this.#setBuddyList(result.buddy_list);
    this.#serverIdle = false; // a new instance starts active
    this.#syncIdle();
    for (const conversation of this.conversations.values()) this.#fetchServerHistory(conversation);
    this.persist();
    this.#notify("signed-on");
    this.#notify("change");
    this.refreshInfo().catch(() => {});
  }

  #restored() {
    for (const name of this.#rejoinAfterRestore.splice(0)) this.#rejoinRoom(name);
    this.persist(); // the new resume_token
    this.#syncIdle();
    // After a reload the page knows no buddies yet; after a drop, asking
    // again costs one request.
    this.refreshBuddyList().catch(() => {});
    this.refreshInfo().catch(() => {});
    for (const conversation of this.conversations.values()) this.#fetchServerHistory(conversation);
  }

  #onEvent(event) {
    switch (event.event) {
      case "im":
        this.#incoming(event);
        break;
      case "im_sent":
        this.#sentElsewhere(event);
        break;
      case "buddy_online":
        this.buddies.setPresence(event.name, event);
        this.#notify("buddies");
        break;
      case "buddy_offline":
        this.buddies.setPresence(event.name, { online: false });
        this.#notify("buddies");
        break;
      case "buddy_list":
        this.#setBuddyList(event);
        break;
      case "typing":
        this.#buddyTyping(event);
        break;
      case "room_joined":
        this.#roomJoined(event);
        break;
      case "room_left":
        this.#roomLeft(event);
        break;
      case "room_message":
        this.#roomMessage(event);
        break;
      case "warned":
        this.warningLevel = event.level;
        this.#toast(
          `${this.screenName} was warned ${event.by ? `by ${event.by}` : "anonymously"}; ` +
            `warning level now ${event.level}%.`,
          "warning",
        );
        this.#notify("info");
        break;
      default:
        // An event this page does not know yet: newer server, older page.
        break;
    }
    this.#persistSoon(); // last_seq moved
  }

  #incoming(event) {
    const system = event.system === true;
    const from = event.from || SYSTEM_SENDER;
    const conversation = this.#openQuietly(from).conversation;
    if (!system) conversation.name = from; // the account's own spelling
    if (conversation.typing !== "none") {
      conversation.typing = "none";
      this.#notify("typing", conversation);
    }
    let kind = IN;
    if (system) kind = SYSTEM;
    else if (event.auto_response) kind = AUTO;
    this.#append(
      conversation,
      { kind, from, text: event.text ?? "", time: event.timestamp || Date.now() },
      true,
    );
  }

  // This screen name sent an IM from another browser session: it belongs
  // in the conversation, in order, marked as sent from elsewhere.
  #sentElsewhere(event) {
    if (this.#inFlight.has(event.client_message_id)) return; // our own, echoed
    const conversation = this.#openQuietly(event.to).conversation;
    this.#append(
      conversation,
      {
        kind: ELSEWHERE,
        from: this.screenName,
        text: event.text ?? "",
        time: event.timestamp || Date.now(),
        clientMessageId: event.client_message_id,
      },
      false,
    );
  }

  #buddyTyping(event) {
    const conversation = this.conversations.get(normalize(event.from));
    if (!conversation) return; // no window open: nothing to show it in
    conversation.typing = event.state;
    this.#notify("typing", conversation);
    this.#notify("conversations");
  }

  #toast(text, kind = "info") {
    this.#notify("toast", text, kind);
  }
}
