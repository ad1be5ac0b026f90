// A session's buddy list and what it knows of each buddy's presence. Filled
// from get_buddy_list / create_session's buddy_list and the buddy_list
// event (the whole list), kept current by buddy_online and buddy_offline.
// No DOM here.

import { normalize } from "./names.js";

export class BuddyList {
  groups = []; // [{name, buddies: [display name]}], in the server's order
  #presence = new Map(); // normalized name -> presence

  // list: {groups: [{name, buddies: [{name, online, away, idle_seconds, warning_level}]}]}
  setList(list) {
    const groups = Array.isArray(list?.groups) ? list.groups : [];
    this.groups = groups.map((group) => ({
      name: String(group.name ?? ""),
      buddies: (group.buddies ?? []).map((buddy) => buddy.name),
    }));
    // The list carries everyone's presence: whoever is not on it any more
    // is unknown again.
    this.#presence.clear();
    for (const group of groups) {
      for (const buddy of group.buddies ?? []) this.setPresence(buddy.name, buddy);
    }
  }

  // fields: a list entry, a buddy_online event, or {online: false}.
  setPresence(name, fields) {
    const key = normalize(name);
    const before = this.#presence.get(key) ?? {};
    const online = Boolean(fields.online ?? true); // buddy_online has no `online` field
    const idle = Number(fields.idle_seconds) || 0;
    this.#presence.set(key, {
      name,
      known: true,
      online,
      away: online && Boolean(fields.away),
      // idle_seconds was true when the event was made; keeping the start
      // lets the list show it growing.
      idleSince: online && idle > 0 ? Date.now() - idle * 1000 : null,
      warningLevel: fields.warning_level ?? before.warningLevel ?? 0,
      signedOnAt: online ? (fields.signed_on_at ?? before.signedOnAt ?? null) : null,
    });
  }

  get(name) {
    return (
      this.#presence.get(normalize(name)) ?? {
        name,
        known: false, // not on the list: the server tells nothing of them
        online: false,
        away: false,
        idleSince: null,
        warningLevel: 0,
        signedOnAt: null,
      }
    );
  }

  has(name) {
    const key = normalize(name);
    return this.groups.some((group) => group.buddies.some((buddy) => normalize(buddy) === key));
  }
}
