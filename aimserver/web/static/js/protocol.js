// What the client takes from docs/web-protocol.md: its limits, its error
// kinds, and the few values every request needs. No DOM here.

export const MAX_SESSIONS = 10; // MAX_CONCURRENT_CONNECTIONS: live sessions on one page
export const MAX_FRAME_BYTES = 65536; // a bigger frame makes the server close the socket (1009)
export const MAX_IM_LENGTH = 4000; // send_im `text`, counted as the server counts it
export const MAX_NAME_LENGTH = 64; // screen_name, client, client_message_id
export const MAX_AWAY_LENGTH = 1024;
export const MAX_ROOM_NAME_LENGTH = 48; // join_room `room`
export const MAX_ROOM_TEXT_LENGTH = 1024; // say `text`, counted as the server counts it
export const PUBLIC_EXCHANGE = 5; // join_room `exchange`: rooms an admin made (4, users' rooms, is the default)
export const ACK_INTERVAL_MS = 500; // acks are batched: at most one per interval
export const REQUEST_TIMEOUT_MS = 20000; // an answer this late means a dead socket
export const MAX_IN_FLIGHT = 24; // the server closes a socket with more than 32 waiting (1008)
export const OPEN_TIMEOUT_MS = 10000; // a socket that neither opens nor fails

// Error types the client makes up itself, beside the server's error_type
// values (ValidationError, Unauthorized, SessionError, SessionNotFound,
// RateLimited).
export const CONNECTION_LOST = "ConnectionLost"; // the socket went while waiting
export const NOT_CONNECTED = "NotConnected"; // asked while no session is up
export const SIGNED_OFF = "SignedOff"; // the session ended before it could be sent

// A transient error is the socket's fault, not the request's: the request
// may be tried again on the next socket.
const TRANSIENT = new Set([CONNECTION_LOST, NOT_CONNECTED]);

export class RequestError extends Error {
  constructor(message, type) {
    super(message);
    this.name = "RequestError";
    this.type = type;
  }

  get transient() {
    return TRANSIENT.has(this.type);
  }
}

// Same origin: the page and its socket come from one listener.
export function socketUrl(loc = globalThis.location) {
  return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/ws";
}

// A random id for client_message_id and for sidebar entries.
// crypto.randomUUID exists only in secure contexts; a plain-http page on a
// LAN address is not one, and getRandomValues works everywhere.
export function randomId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// This browser's device id (docs/web-protocol.md, "Devices"): made once and
// kept, so the server knows which sessions one browser holds. It lets
// whoever has it list and close those sessions, so it is long and random.
const DEVICE_KEY = "aimserver-device-id";
export function deviceId(storage = globalThis.localStorage) {
  try {
    let id = storage?.getItem(DEVICE_KEY);
    if (!id || !/^[A-Za-z0-9_-]{16,64}$/.test(id)) {
      id = randomId().replaceAll("-", "");
      storage?.setItem(DEVICE_KEY, id);
    }
    return id;
  } catch {
    return null; // storage refused (private mode): sign on without one
  }
}

// What list_client_sessions shows for this page ("client", at most 64).
export function clientLabel(userAgent = globalThis.navigator?.userAgent ?? "") {
  const browsers = [
    [/Edg\/(\d+)/, "Edge"],
    [/Firefox\/(\d+)/, "Firefox"],
    [/Chrom(?:e|ium)\/(\d+)/, "Chromium"],
    [/Version\/(\d+).*Safari/, "Safari"],
  ];
  for (const [pattern, name] of browsers) {
    const match = pattern.exec(userAgent);
    if (match) return `aimserver web (${name} ${match[1]})`;
  }
  return "aimserver web";
}
