// Conversations and the sidebar, kept in IndexedDB so a reload finds them.
//
// Schema of database "aimserver-web":
//   version 1  "messages": auto-increment key "id"; index "conversation"
//              on [sessionKey, buddy]. sessionKey is the sidebar entry's
//              key, "<normalized screen name>:<random id>": each screen
//              name's data is its own, and so is each of its sessions'.
//   version 2  adds "sessions": keyPath "key", one record per sidebar entry
//              (screen name, session_id, resume_token, last_seq, open
//              conversations; never the password), and an index "session"
//              on messages.sessionKey to drop a removed entry's messages.
//
// upgrade() brings any older database up in place, keeping its data. When
// IndexedDB cannot be opened (some private modes, blocked storage) the page
// falls back to MemoryStore and keeps working without history.

export const DB_NAME = "aimserver-web";
export const DB_VERSION = 2;

// Runs inside onupgradeneeded, one step per version, so a database at any
// older version walks the same path as a new one.
export function upgrade(db, transaction, oldVersion) {
  if (oldVersion < 1) {
    const messages = db.createObjectStore("messages", { keyPath: "id", autoIncrement: true });
    messages.createIndex("conversation", ["sessionKey", "buddy"]);
  }
  if (oldVersion < 2) {
    db.createObjectStore("sessions", { keyPath: "key" });
    // The version-1 store already exists: reach it through the upgrade
    // transaction rather than create it again.
    transaction.objectStore("messages").createIndex("session", "sessionKey");
  }
}

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function done(transaction) {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => resolve();
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error ?? new Error("transaction aborted"));
  });
}

export class IdbStore {
  #db;

  constructor(db) {
    this.#db = db;
  }

  static open(indexedDB = globalThis.indexedDB, name = DB_NAME) {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(name, DB_VERSION);
      request.onupgradeneeded = (event) =>
        upgrade(request.result, request.transaction, event.oldVersion);
      request.onsuccess = () => {
        const db = request.result;
        // Another tab with a newer version of the page wants to upgrade:
        // step aside instead of blocking it.
        db.onversionchange = () => db.close();
        resolve(new IdbStore(db));
      };
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error("IndexedDB upgrade blocked by another tab"));
    });
  }

  async listSessions() {
    const tx = this.#db.transaction("sessions", "readonly");
    return promised(tx.objectStore("sessions").getAll());
  }

  async saveSession(record) {
    const tx = this.#db.transaction("sessions", "readwrite");
    tx.objectStore("sessions").put(record);
    return done(tx);
  }

  // The entry and every message it had.
  async deleteSession(key) {
    const tx = this.#db.transaction(["sessions", "messages"], "readwrite");
    tx.objectStore("sessions").delete(key);
    const messages = tx.objectStore("messages");
    // Deleted from the request's own callback, while the transaction is
    // certainly still active.
    const request = messages.index("session").getAllKeys(IDBKeyRange.only(key));
    request.onsuccess = () => {
      for (const id of request.result) messages.delete(id);
    };
    return done(tx);
  }

  // A message and its session's record (with the seq that brought it) in
  // one transaction: after a reload, last_seq never runs ahead of or behind
  // the messages kept, so a replay neither loses nor doubles one.
  async addMessage(message, sessionRecord) {
    const stores = sessionRecord ? ["messages", "sessions"] : ["messages"];
    const tx = this.#db.transaction(stores, "readwrite");
    const { id, ...fields } = message; // a new record: let the store number it
    const added = promised(tx.objectStore("messages").add(fields));
    if (sessionRecord) tx.objectStore("sessions").put(sessionRecord);
    const [newId] = await Promise.all([added, done(tx)]);
    return newId;
  }

  async updateMessage(message) {
    const tx = this.#db.transaction("messages", "readwrite");
    tx.objectStore("messages").put(message);
    return done(tx);
  }

  // The latest `limit` messages of one conversation, oldest first.
  async recentMessages(sessionKey, buddy, limit) {
    const tx = this.#db.transaction("messages", "readonly");
    const index = tx.objectStore("messages").index("conversation");
    const request = index.openCursor(IDBKeyRange.only([sessionKey, buddy]), "prev");
    const rows = [];
    await new Promise((resolve, reject) => {
      request.onsuccess = () => {
        const cursor = request.result;
        if (cursor && rows.length < limit) {
          rows.push(cursor.value);
          cursor.continue();
        } else {
          resolve();
        }
      };
      request.onerror = () => reject(request.error);
    });
    return rows.reverse();
  }
}

// The same interface, in memory only.
export class MemoryStore {
  #sessions = new Map();
  #messages = new Map();
  #nextId = 1;

  async listSessions() {
    return [...this.#sessions.values()].map((record) => structuredClone(record));
  }

  async saveSession(record) {
    this.#sessions.set(record.key, structuredClone(record));
  }

  async deleteSession(key) {
    this.#sessions.delete(key);
    for (const [id, message] of this.#messages) {
      if (message.sessionKey === key) this.#messages.delete(id);
    }
  }

  async addMessage(message, sessionRecord) {
    const id = this.#nextId++;
    this.#messages.set(id, { ...structuredClone(message), id });
    if (sessionRecord) await this.saveSession(sessionRecord);
    return id;
  }

  async updateMessage(message) {
    if (this.#messages.has(message.id)) this.#messages.set(message.id, structuredClone(message));
  }

  async recentMessages(sessionKey, buddy, limit) {
    const rows = [...this.#messages.values()].filter(
      (m) => m.sessionKey === sessionKey && m.buddy === buddy,
    );
    return rows.slice(-limit).map((m) => structuredClone(m));
  }
}

const OPEN_TIMEOUT_MS = 5000;

export async function openStore() {
  try {
    if (!globalThis.indexedDB) throw new Error("no IndexedDB");
    // The page waits for this before it signs anyone on: it must not hang
    // on a database that never answers.
    const late = new Promise((_, reject) =>
      setTimeout(() => reject(new Error("IndexedDB did not open in time")), OPEN_TIMEOUT_MS),
    );
    return await Promise.race([IdbStore.open(), late]);
  } catch (error) {
    console.warn("conversation history is not kept:", error);
    return new MemoryStore();
  }
}
