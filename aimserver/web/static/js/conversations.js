// One IM window's worth of state, and the kinds of lines it holds (kept in
// storage as they are). No DOM here.

import { normalize } from "./names.js";

export const IN = "in"; // from the buddy
export const AUTO = "auto"; // the buddy's away auto-response
export const OUT = "out"; // sent from this page
export const ELSEWHERE = "elsewhere"; // sent by this screen name from another browser session
export const SYSTEM = "system"; // from the server itself

export const SYSTEM_SENDER = "AOL System Msg"; // the server's own IMs, when `from` is missing

export class Conversation {
  constructor(name) {
    this.name = name; // display form, as last seen
    this.key = normalize(name);
    this.messages = []; // oldest first
    this.unread = 0;
    this.typing = "none"; // what the buddy is doing
    this.draft = ""; // unsent text, kept while another conversation is shown
    this.sentTyping = "none"; // what we last told the buddy
    this.typingTimer = null;
    this.serverHistory = null; // get_history: null, then "asked"
    this.loaded = Promise.resolve(); // the stored lines are in (see Session)
  }

  // The server's own notices come from a name nobody can answer.
  get system() {
    return this.messages.some((message) => message.kind === SYSTEM);
  }
}
