// The first contact with the server, before anyone signs on: one socket
// asks server_info (may the page offer sign-up? how many sessions per
// screen name?) and closes. While no socket opens, the page says the
// server is unreachable and tries again with the sessions' backoff.

import { backoffDelay } from "./backoff.js";
import { RpcSocket } from "./socket.js";

// onState({reachable, attempt, nextRetryAt}) on every try; onInfo(info)
// once, with {} from a server that predates server_info. Returns a
// function that tries again at once.
export function probeServer(url, { onState, onInfo }, WebSocketImpl = globalThis.WebSocket) {
  let attempt = 0;
  let timer = null;
  let done = false;
  let sock = null;

  function connect() {
    timer = null;
    sock = new RpcSocket(
      url,
      {
        onOpen: async () => {
          onState({ reachable: true, attempt: 0, nextRetryAt: 0 });
          let info = {};
          try {
            info = await sock.request("server_info");
          } catch {
            // unknown command on an older server: assume the defaults
          }
          done = true;
          sock.abort(1000, "");
          onInfo(info);
        },
        onClose: ({ opened }) => {
          if (done || opened) return;
          attempt += 1;
          const delay = backoffDelay(attempt);
          onState({ reachable: false, attempt, nextRetryAt: Date.now() + delay });
          timer = setTimeout(connect, delay);
        },
      },
      WebSocketImpl,
    );
  }

  connect();
  return function retryNow() {
    if (done || timer === null) return;
    clearTimeout(timer);
    connect();
  };
}
