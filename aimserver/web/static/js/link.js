// The life of one server session instance across however many sockets it
// takes: sign on (create_session), keep it up (restore_session after a
// drop, with backoff), count the events (seq), ack them, and make sure a
// send_im whose answer was lost is sent again with the same
// client_message_id. No DOM and no storage: the Session above decides what
// events mean and what to keep.
//
// Emits:
//   "change"              state, attempt, busy or reachable changed
//   "signed-up" (name)    sign_up made the account (signOn with signUp)
//   "signed-on" (result)  create_session succeeded: a new instance
//   "restored" (result)   restore_session succeeded: the same instance
//   "failed" (error)      create_session was refused; the link stops (ERROR)
//   "lost" (error)        restore_session was refused; the link stops
//   "ended" (reason)      the server ended the session (session_ended)
//   "event" (event)       a server event, once, in seq order

import { backoffDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import {
  ACK_INTERVAL_MS,
  deviceId,
  NOT_CONNECTED,
  RequestError,
  SIGNED_OFF,
} from "./protocol.js";
import { RpcSocket } from "./socket.js";

export const IDLE = "idle"; // never started
export const CONNECTING = "connecting"; // first attempt: socket opening, signing on or restoring
export const CONNECTED = "connected";
export const RECONNECTING = "reconnecting"; // waiting for, or making, a further attempt
export const DISCONNECTED = "disconnected"; // stopped: signed off, ended, expired
export const ERROR = "error"; // stopped: sign-on refused

const CLOSE_TIMEOUT_MS = 3000;

export class SessionLink extends Emitter {
  state = IDLE;
  attempt = 0; // failed attempts since the last success, shown in the sidebar
  busy = 0; // requests in flight that the user is waiting for
  reachable = true; // false while the last socket never opened
  nextRetryAt = 0;
  error = null; // the RequestError that stopped the link, if any
  sessionId = null;
  resumeToken = null;
  lastSeq = 0; // the highest event seq handed on

  #url;
  #client;
  #WebSocket;
  #sock = null;
  #stopped = true;
  #screenName = null;
  #password = null; // held only until create_session is answered
  #signUp = false; // make the account first (sign_up), once
  #retryTimer = null;
  #ackTimer = null;
  #acked = 0;
  #outbox = []; // send_im requests not answered yet, in order

  constructor({ url, client, WebSocketImpl = globalThis.WebSocket }) {
    super();
    this.#url = url;
    this.#client = client;
    this.#WebSocket = WebSocketImpl;
  }

  get live() {
    return this.state === CONNECTING || this.state === CONNECTED || this.state === RECONNECTING;
  }

  // send_im requests waiting for an answer or for a socket.
  get queued() {
    return this.#outbox.length;
  }

  // A new session instance. The password lives here only until the server
  // has answered (a drop before that means create_session again). With
  // signUp the account is made first, on the same socket.
  signOn(screenName, password, { signUp = false } = {}) {
    this.#halt();
    this.#screenName = screenName;
    this.#password = password;
    this.#signUp = signUp;
    this.sessionId = null;
    this.resumeToken = null;
    this.#start();
  }

  // Take over an instance that outlived its socket (e.g. a page reload).
  resume({ sessionId, resumeToken, lastSeq }) {
    this.#halt();
    this.#password = null;
    this.sessionId = sessionId;
    this.resumeToken = resumeToken;
    this.lastSeq = lastSeq || 0;
    this.#start();
  }

  // Any command but send_im: fails at once when no session is up, and with
  // CONNECTION_LOST when the socket drops before the answer. `quiet`
  // requests (ack, typing) do not make the sidebar show "active".
  request(command, parameters = {}, { quiet = false } = {}) {
    const sock = this.#sock;
    if (this.state !== CONNECTED || !sock) {
      return Promise.reject(new RequestError("not connected", NOT_CONNECTED));
    }
    const answer = sock.request(command, parameters);
    if (!quiet) {
      this.#setBusy(+1);
      answer.then(
        () => this.#setBusy(-1),
        () => this.#setBusy(-1),
      );
    }
    return answer;
  }

  // send_im survives drops: it waits in the outbox until it is answered,
  // and after a restore it is sent again as it was, client_message_id
  // included, so the server answers it once and delivers it once.
  sendIm(parameters) {
    if (this.#stopped) {
      return Promise.reject(new RequestError("not signed on", SIGNED_OFF));
    }
    return new Promise((resolve, reject) => {
      const item = { parameters, resolve, reject, inFlight: false };
      this.#outbox.push(item);
      if (this.state === CONNECTED) this.#sendItem(item);
    });
  }

  // The network went away: drop the socket now rather than wait for it to
  // time out, and show the session as reconnecting.
  dropForOffline() {
    if (this.#stopped) return;
    if (this.#sock) this.#sock.abort(4000, "offline");
    else if (this.state !== RECONNECTING) this.#scheduleRetry();
  }

  // The network is back (or the user asked): try now instead of waiting out
  // the backoff. A socket still trying to open is replaced too, since it was
  // probably started while offline.
  retryNow() {
    if (this.#stopped || this.state === CONNECTED) return;
    if (this.#sock?.opened) return; // signing on or restoring right now
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const stale = this.#sock;
    this.#sock = null;
    stale?.abort(4000, "retrying");
    this.#connect();
  }

  // Sign off on purpose: close_session when there is a session to close,
  // then stop without reconnecting.
  async close() {
    if (this.#stopped) return;
    const sock = this.#sock;
    const connected = this.state === CONNECTED;
    this.#stopped = true; // the socket's close must not start a reconnect
    if (connected && sock) {
      try {
        await sock.request("close_session", {}, CLOSE_TIMEOUT_MS);
      } catch {
        // gone already, or too slow: it signs off when its window ends
      }
    }
    this.#stop(DISCONNECTED, null);
  }

  #start() {
    this.#stopped = false;
    this.attempt = 0;
    this.error = null;
    this.reachable = true;
    this.#setState(CONNECTING);
    this.#connect();
  }

  #connect() {
    this.#retryTimer = null;
    let sock;
    const handlers = {
      onOpen: () => this.#opened(sock),
      onEvent: (event) => {
        if (sock === this.#sock && !this.#stopped) this.#receive(event);
      },
      onClose: (info) => this.#closed(sock, info),
    };
    try {
      sock = new RpcSocket(this.#url, handlers, this.#WebSocket);
    } catch (error) {
      // A malformed URL or a refused scheme: count it as a failed attempt.
      console.warn("could not open a WebSocket", error);
      this.reachable = false;
      this.#scheduleRetry();
      return;
    }
    this.#sock = sock;
  }

  async #opened(sock) {
    if (sock !== this.#sock || this.#stopped) return;
    if (!this.reachable) {
      this.reachable = true;
      this.emit("change");
    }
    const creating = this.sessionId === null;
    try {
      if (creating) {
        // A new instance numbers its events from 1.
        this.lastSeq = 0;
        this.#acked = 0;
        if (this.#signUp) {
          const created = await sock.request("sign_up", {
            screen_name: this.#screenName,
            password: this.#password,
          });
          if (sock !== this.#sock || this.#stopped) return;
          this.#signUp = false; // made: a drop from here on must not make it again
          this.#screenName = created.screen_name || this.#screenName;
          this.emit("signed-up", this.#screenName);
        }
        const parameters = { screen_name: this.#screenName, password: this.#password };
        if (this.#client) parameters.client = this.#client;
        const device = deviceId();
        if (device) parameters.device_id = device;
        const result = await sock.request("create_session", parameters);
        if (sock !== this.#sock || this.#stopped) return;
        this.#password = null;
        this.sessionId = result.session_id;
        this.resumeToken = result.resume_token;
        this.#up();
        this.emit("signed-on", result);
      } else {
        const result = await sock.request("restore_session", {
          session_id: this.sessionId,
          resume_token: this.resumeToken,
          last_seq: this.lastSeq,
        });
        if (sock !== this.#sock || this.#stopped) return;
        this.resumeToken = result.resume_token ?? this.resumeToken;
        if (result.session_id) this.sessionId = result.session_id;
        this.#acked = this.lastSeq; // last_seq acked everything up to it
        this.#up();
        this.emit("restored", result);
      }
    } catch (error) {
      if (sock !== this.#sock || this.#stopped) return;
      if (error.transient) return; // the socket closed: #closed retries
      if (error.type === "RateLimited" && !creating) {
        // The session is still there; the server wants fewer requests.
        // (A refused login or sign-up is the user's to retry.)
        sock.abort(4003, "rate limited");
        return;
      }
      this.#stop(creating ? ERROR : DISCONNECTED, error);
      this.emit(creating ? "failed" : "lost", error);
    }
  }

  #up() {
    this.attempt = 0;
    this.error = null;
    this.#setState(CONNECTED);
    // What waited for the socket goes first, in the order it was written.
    for (const item of this.#outbox) if (!item.inFlight) this.#sendItem(item);
    if (this.lastSeq > this.#acked) this.#scheduleAck();
  }

  #closed(sock, { opened }) {
    if (sock !== this.#sock) return;
    this.#sock = null;
    if (this.#stopped) return;
    if (!opened) this.reachable = false;
    this.#scheduleRetry();
  }

  #scheduleRetry() {
    clearTimeout(this.#retryTimer);
    this.attempt += 1;
    const delay = backoffDelay(this.attempt);
    this.nextRetryAt = Date.now() + delay;
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
    this.#setState(RECONNECTING);
  }

  #receive(event) {
    if (Number.isInteger(event.seq)) {
      // A replay after restore can repeat what this page already showed.
      if (event.seq <= this.lastSeq) return;
      this.lastSeq = event.seq;
    }
    if (event.event === "session_ended") {
      this.#stop(DISCONNECTED, null);
      this.emit("ended", event.reason);
      return;
    }
    this.emit("event", event);
    this.#scheduleAck();
  }

  // Acks are batched: one timer per interval carries the highest seq handed
  // on by then. A lost ack costs nothing: restore_session's last_seq says
  // the same.
  #scheduleAck() {
    if (this.#ackTimer !== null) return;
    this.#ackTimer = setTimeout(() => {
      this.#ackTimer = null;
      if (this.state !== CONNECTED || this.lastSeq <= this.#acked) return;
      const seq = this.lastSeq;
      this.#acked = seq;
      this.request("ack", { seq }, { quiet: true }).catch(() => {});
    }, ACK_INTERVAL_MS);
  }

  #sendItem(item) {
    item.inFlight = true;
    this.#setBusy(+1);
    this.#sock.request("send_im", item.parameters).then(
      (result) => {
        this.#dequeue(item);
        item.resolve(result);
      },
      (error) => {
        if (error.transient && !this.#stopped) {
          item.inFlight = false; // stays queued: sent again after restore
        } else {
          this.#dequeue(item);
          item.reject(error);
        }
      },
    ).finally(() => this.#setBusy(-1));
  }

  #dequeue(item) {
    const index = this.#outbox.indexOf(item);
    if (index >= 0) this.#outbox.splice(index, 1);
  }

  // Stop for good (until the next signOn/resume): no socket, no timers,
  // nothing queued.
  #stop(state, error) {
    this.#halt();
    this.error = error;
    this.sessionId = null;
    this.resumeToken = null;
    const why = error?.message || "signed off";
    for (const item of this.#outbox.splice(0)) item.reject(new RequestError(why, SIGNED_OFF));
    this.#setState(state);
  }

  #halt() {
    this.#stopped = true;
    this.#password = null;
    this.#signUp = false;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#ackTimer);
    this.#retryTimer = null;
    this.#ackTimer = null;
    const sock = this.#sock;
    this.#sock = null;
    sock?.abort(1000, "");
  }

  #setBusy(delta) {
    this.busy = Math.max(0, this.busy + delta);
    this.emit("change");
  }

  #setState(state) {
    this.state = state;
    this.emit("change");
  }
}
