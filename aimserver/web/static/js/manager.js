// The sessions of this page: which exist, which one is in view, the limit
// of MAX_SESSIONS live ones, the network as a whole (offline/online), and
// the saved sidebar. Every Session's notifications are re-emitted here with
// the session first, so the UI subscribes once:
//
//   manager.on("message", (session, conversation, message) => ...)
//
// and, of its own:
//   "list"            sessions were added or removed
//   "current"         another session is in view (or none)
//   "banner"          the network or server reachability changed
//   "server-info"     server_info arrived (sign-up offered? sessions per name)
//   "toast" (session, text, kind, data?)

import { Emitter } from "./emitter.js";
import { SessionLink } from "./link.js";
import { normalize, sameName } from "./names.js";
import { MAX_SESSIONS, randomId } from "./protocol.js";
import { Session } from "./session.js";

const END_REASONS = {
  signed_on_elsewhere: "it signed on from another location",
  closed: "the session was closed",
  deleted: "the account was deleted",
  kicked: "an administrator or the server ended it",
  rate_limited: "it sent far too much too fast",
  server_stopping: "the server is restarting; sign on again in a moment",
};
// Reasons after which the entry stays (disconnected) for the user to sign
// on again, instead of going away.
const KEEP_AFTER = new Set(["server_stopping"]);

export class SessionManager extends Emitter {
  sessions = []; // in sidebar order (oldest first)
  current = null;
  online = true; // the browser's idea of the network
  serverInfo = null; // server_info's answer, once it came
  #probe = { reachable: true, attempt: 0, nextRetryAt: 0 }; // see probe.js
  #retryProbe = () => {};

  #store;
  #tab;
  #url;
  #client;
  #WebSocket;

  // tab: from claimTab() (tabs.js): this tab's id and which saved sessions
  // are its own.
  constructor({
    store,
    url,
    client,
    tab = { tabId: null, owns: () => true },
    WebSocketImpl = globalThis.WebSocket,
  }) {
    super();
    this.#store = store;
    this.#tab = tab;
    this.#url = url;
    this.#client = client;
    this.#WebSocket = WebSocketImpl;
  }

  get liveCount() {
    return this.sessions.filter((s) => s.live).length;
  }

  // Bring back the sidebar saved before a reload; sessions whose instance
  // may still be alive on the server are restored.
  async restoreSaved() {
    let records;
    try {
      records = await this.#store.listSessions();
    } catch (error) {
      console.warn("saved sessions not read", error);
      return;
    }
    records = records.filter((record) => this.#tab.owns(record));
    records.sort((a, b) => a.createdAt - b.createdAt);
    // At most MAX_SESSIONS come back to life: the most recently used.
    const resumable = records
      .filter((r) => r.sessionId && r.resumeToken)
      .sort((a, b) => b.lastUsed - a.lastUsed)
      .slice(0, MAX_SESSIONS);
    for (const record of records) {
      const session = this.#create(record.key, record.screenName, record);
      const keep = resumable.includes(record) ? record : { ...record, sessionId: null };
      await session.restore(keep);
    }
    const latest = [...this.sessions].sort((a, b) => b.lastUsed - a.lastUsed)[0];
    if (latest) this.select(latest);
  }

  // Sign on another session: another screen name, or the same one again.
  // Room is made once it is signed on (see #relay): a mistyped password at
  // the limit should not cost another session its connection.
  // signUp: make the account first (only offered when server_info allows).
  add(screenName, password, { signUp = false } = {}) {
    // The key of the entry's stored data: the screen name first, so every
    // screen name's data is its own, then what tells its sessions apart.
    const session = this.#create(`${normalize(screenName)}:${randomId()}`, screenName);
    session.signOn(password, { signUp });
    this.select(session);
    return session;
  }

  // A stopped entry signs on again, keeping its conversations.
  signOnAgain(session, password) {
    session.signOn(password);
  }

  select(session) {
    if (this.current && this.current !== session) this.current.visible = false;
    this.current = session;
    if (session) {
      session.visible = true;
      session.markSeen();
    }
    this.emit("current", session);
  }

  // Sign off (if still on) and take the entry out of the sidebar, with its
  // stored conversations.
  async remove(session, { signOff = true } = {}) {
    const index = this.sessions.indexOf(session);
    if (index < 0) return;
    this.sessions.splice(index, 1);
    if (this.current === session) {
      this.select(this.sessions[index] ?? this.sessions[index - 1] ?? null);
    }
    this.emit("list");
    this.emit("banner");
    if (signOff) await session.signOff();
    session.dispose();
    this.#store.deleteSession(session.key).catch((error) => console.warn("not deleted", error));
  }

  // Close another session of `session`'s screen name from its Locations
  // panel. When that session is on this page too, its end is no surprise.
  async signOffLocation(session, instanceId) {
    const sibling = this.sessions.find(
      (s) => s !== session && sameName(s.screenName, session.screenName) && s.instanceId === instanceId,
    );
    if (sibling) sibling.endingFromHere = true;
    try {
      await session.signOffLocation(instanceId);
    } catch (error) {
      if (sibling) sibling.endingFromHere = false;
      throw error;
    }
  }

  // navigator.onLine and the online/offline events.
  setNetwork(online) {
    this.online = online;
    for (const session of this.sessions) {
      if (online) session.link.retryNow();
      else session.link.dropForOffline();
    }
    this.emit("banner");
  }

  retryAll() {
    this.#retryProbe();
    for (const session of this.sessions) session.link.retryNow();
  }

  // From probeServer (probe.js): the first contact, before any session.
  setProbe(state, retry) {
    this.#probe = state;
    if (retry) this.#retryProbe = retry;
    this.emit("banner");
  }

  setServerInfo(info) {
    this.serverInfo = info;
    this.emit("server-info", info);
  }

  // The page has been left alone for `seconds` (0: the user is back).
  setAutoIdle(seconds) {
    for (const session of this.sessions) session.setAutoIdle(seconds);
  }

  // What the banner should say: {kind: "offline"} while the browser is
  // offline, {kind: "unreachable", attempt} while sessions are trying and no
  // socket opens, else null.
  get bannerState() {
    if (!this.online) return { kind: "offline" };
    const stuck = this.sessions
      .filter((s) => s.live && !s.link.reachable)
      .map((s) => ({ attempt: s.link.attempt, nextRetryAt: s.link.nextRetryAt }));
    if (!this.#probe.reachable) stuck.push(this.#probe);
    if (stuck.length === 0) return null;
    return {
      kind: "unreachable",
      attempt: Math.max(...stuck.map((s) => s.attempt)),
      nextRetryAt: Math.min(...stuck.map((s) => s.nextRetryAt)),
    };
  }

  #create(key, screenName, record = {}) {
    const link = new SessionLink({ url: this.#url, client: this.#client, WebSocketImpl: this.#WebSocket });
    let session = null;
    session = new Session({
      key,
      screenName,
      link,
      store: this.#store,
      tabId: this.#tab.tabId,
      createdAt: record.createdAt,
      lastUsed: record.lastUsed,
      notify: (type, ...args) => this.#relay(session, type, args),
    });
    link.on("change", () => this.emit("banner"));
    this.sessions.push(session);
    this.emit("list");
    return session;
  }

  #relay(session, type, args) {
    if (type === "toast") {
      this.emit("toast", session, ...args);
      return;
    }
    if (type === "signed-on") this.#makeRoom(session);
    if (type === "ended") {
      const reason = args[0];
      const why = session.endingFromHere
        ? "another of its sessions on this page signed it off"
        : (END_REASONS[reason] ?? `the server ended it (${reason})`);
      this.emit("toast", session, `${session.screenName} was signed off: ${why}.`, "warning", { reason });
      if (KEEP_AFTER.has(reason)) {
        this.emit("changed", session);
        return;
      }
      this.remove(session, { signOff: false });
      return;
    }
    this.emit(type, session, ...args);
  }

  // Past the limit, the least recently used live session that is not in
  // view and not busy gives up its connection (busy ones only if none is
  // idle).
  #makeRoom(newcomer) {
    const others = this.sessions.filter((s) => s !== newcomer && s.live);
    if (others.length < MAX_SESSIONS) return;
    const candidates = others
      .filter((s) => s !== this.current)
      .sort((a, b) => {
        const idleA = a.link.busy === 0 && a.link.queued === 0;
        const idleB = b.link.busy === 0 && b.link.queued === 0;
        if (idleA !== idleB) return idleA ? -1 : 1;
        return a.lastUsed - b.lastUsed;
      });
    const victim = candidates[0] ?? others[0];
    victim.signOff();
    this.emit(
      "toast",
      victim,
      `${victim.screenName} was signed off to make room: at most ${MAX_SESSIONS} sessions at once ` +
        `(it was the least recently used).`,
      "warning",
    );
  }
}
