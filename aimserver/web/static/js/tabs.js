// Which saved sessions belong to this tab. Every tab of the page saves its
// sidebar in the same IndexedDB, so a reload must restore only its own
// sessions: restoring another open tab's would take its sockets over.
//
// A tab keeps an id in sessionStorage (it survives a reload) and holds a
// Web Lock named after it for as long as it lives. A saved session is this
// tab's when it carries this tab's id, or when the tab that saved it holds
// no lock any more (it was closed: its sessions may be adopted).

import { randomId } from "./protocol.js";

const KEY = "aimserver-tab";
const LOCK_PREFIX = "aimserver-tab:";
const RELOAD_GRACE_MS = 1500; // the page being reloaded may hold the lock a moment longer

// Resolves with true once the lock is ours (kept until the page goes), or
// false when another tab holds it past the grace period.
function hold(locks, name) {
  return new Promise((resolve) => {
    locks
      .request(name, { signal: AbortSignal.timeout(RELOAD_GRACE_MS) }, () => {
        resolve(true);
        return new Promise(() => {}); // never settles: held while the page lives
      })
      .catch(() => resolve(false));
  });
}

export async function claimTab(storage = globalThis.sessionStorage, locks = globalThis.navigator?.locks) {
  if (!locks || !storage) return { tabId: null, owns: () => true }; // one tab is all we can assume
  let tabId = storage.getItem(KEY);
  // A duplicated tab starts with a copy of the original's sessionStorage,
  // id included: when the id is taken, take another.
  if (!tabId || !(await hold(locks, LOCK_PREFIX + tabId))) {
    tabId = randomId();
    await hold(locks, LOCK_PREFIX + tabId);
  }
  storage.setItem(KEY, tabId);
  const held = new Set((await locks.query()).held.map((lock) => lock.name));
  return {
    tabId,
    owns: (record) => !record.tabId || record.tabId === tabId || !held.has(LOCK_PREFIX + record.tabId),
  };
}
