// One WebSocket and the request/answer bookkeeping on it. It knows the
// envelopes of docs/web-protocol.md and nothing about sessions: whoever
// owns it decides what to send and what a closed socket means.

import {
  CONNECTION_LOST,
  MAX_FRAME_BYTES,
  MAX_IN_FLIGHT,
  NOT_CONNECTED,
  OPEN_TIMEOUT_MS,
  REQUEST_TIMEOUT_MS,
  RequestError,
} from "./protocol.js";

const encoder = new TextEncoder();

export class RpcSocket {
  #ws;
  #handlers;
  #pending = new Map(); // id -> {resolve, reject, timer}: sent, not answered
  #held = []; // {id, frame, timeoutMs, resolve, reject}: not sent yet (see MAX_IN_FLIGHT)
  #nextId = 1;
  #closed = false;
  #openTimer;
  opened = false;

  // handlers: onOpen(), onEvent(event), onClose({opened, code, reason, byUs}).
  // onClose is called exactly once, whoever closed.
  constructor(url, handlers, WebSocketImpl = globalThis.WebSocket) {
    this.#handlers = handlers;
    const ws = new WebSocketImpl(url);
    this.#ws = ws;
    // A connection attempt into a black hole can hang for minutes before
    // the browser gives up; the reconnect loop should not wait that long.
    this.#openTimer = setTimeout(() => this.abort(4002, "open timed out"), OPEN_TIMEOUT_MS);
    ws.onopen = () => {
      if (this.#closed) return;
      clearTimeout(this.#openTimer);
      this.opened = true;
      this.#handlers.onOpen?.();
    };
    ws.onmessage = (message) => this.#receive(message.data);
    ws.onerror = () => {}; // always followed by close, which says more
    ws.onclose = (event) => this.#finish(event.code, event.reason, false);
  }

  // Resolves with the answer's `result`, rejects with a RequestError that
  // carries the answer's error_type (or CONNECTION_LOST).
  request(command, parameters = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (this.#closed || !this.opened) {
      return Promise.reject(new RequestError("not connected", NOT_CONNECTED));
    }
    const id = String(this.#nextId++);
    const frame = JSON.stringify({ id, command, parameters });
    // Checked here because the server would answer an oversize frame by
    // closing the socket, taking every other request down with it.
    if (encoder.encode(frame).length > MAX_FRAME_BYTES) {
      return Promise.reject(new RequestError("message too large", "ValidationError"));
    }
    return new Promise((resolve, reject) => {
      this.#held.push({ id, frame, timeoutMs, resolve, reject });
      this.#sendHeld();
    });
  }

  // Past MAX_IN_FLIGHT unanswered requests the rest wait here, in order,
  // rather than make the server close the socket.
  #sendHeld() {
    while (this.#held.length > 0 && this.#pending.size < MAX_IN_FLIGHT) {
      const { id, frame, timeoutMs, resolve, reject } = this.#held.shift();
      // No answer in time: the connection is dead without the browser
      // having noticed. Closing it lets the owner reconnect.
      const timer = setTimeout(() => this.abort(4001, "request timed out"), timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#ws.send(frame);
    }
  }

  // Close now, without waiting for the closing handshake: when the network
  // is gone that handshake can take as long as a TCP timeout.
  abort(code = 1000, reason = "") {
    try {
      this.#ws.close(code, reason);
    } catch {
      // already closing, or the browser refused the code: closed either way
    }
    this.#finish(code, reason, true);
  }

  #receive(data) {
    if (this.#closed) return;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      console.warn("ignoring a frame that is not JSON", data);
      return;
    }
    if (message === null || typeof message !== "object") return;
    if (typeof message.event === "string") {
      this.#handlers.onEvent?.(message);
      return;
    }
    const entry = this.#pending.get(String(message.id));
    if (!entry) return;
    this.#pending.delete(String(message.id));
    clearTimeout(entry.timer);
    if (message.status === "success") entry.resolve(message.result ?? {});
    else entry.reject(new RequestError(message.error || "request failed", message.error_type || "Error"));
    this.#sendHeld();
  }

  #finish(code, reason, byUs) {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#openTimer);
    for (const entry of [...this.#pending.values(), ...this.#held]) {
      clearTimeout(entry.timer);
      entry.reject(new RequestError("connection lost", CONNECTION_LOST));
    }
    this.#pending.clear();
    this.#held = [];
    this.#handlers.onClose?.({ opened: this.opened, code, reason, byUs });
  }
}
