// One chat room a session is in: who is there and what was said since this
// page joined it. No DOM here.
//
// Rooms live in memory only, not in storage: after a reload the page asks
// for each room the instance is in again (join_room joins nothing then, and
// answers who is there; see Session.restore), so its tabs come back with
// their members but not with what was said before. A dropped socket loses
// nothing: the resumed instance is still in them and replays their events.

import { normalize } from "./names.js";
import { MAX_ROOM_NAME_LENGTH } from "./protocol.js";

export const SAID = "said"; // a line someone said (room_message)
export const NOTICE = "notice"; // someone came or went: the page's own words

// What the server does to a typed name (runs of spaces made one, ends
// trimmed); rooms differing only in case are one room.
export function cleanRoomName(name) {
  return String(name ?? "").replace(/ +/g, " ").trim();
}

export function roomKey(name) {
  return cleanRoomName(name).toLowerCase();
}

// Why `name` cannot be a room's name, or null: at most 48 printable ASCII
// characters and no "%" (docs/web-protocol.md, join_room).
export function roomNameProblem(name) {
  const clean = cleanRoomName(name);
  if (clean === "") return "Type the room's name.";
  if (clean.length > MAX_ROOM_NAME_LENGTH) return `A room's name has at most ${MAX_ROOM_NAME_LENGTH} characters.`;
  if (!/^[\x20-\x24\x26-\x7e]+$/.test(clean)) return "A room's name has plain letters, digits and punctuation only, and no %.";
  return null;
}

export class Room {
  constructor(name) {
    this.name = name; // as the room's maker spelled it, once join_room answered
    this.key = roomKey(name);
    this.members = new Map(); // normalized screen name -> display name
    this.rosterKnown = false; // the first room_joined (everyone already there) came
    this.lines = []; // {kind, from, text, whisper, time}, oldest first
    this.unread = 0;
    this.draft = ""; // unsent text, kept while something else is shown
  }

  // Display names, sorted the way a person looks one up.
  get memberNames() {
    return [...this.members.values()].sort((a, b) =>
      normalize(a).localeCompare(normalize(b)),
    );
  }
}
