// A minimal event emitter, so models can tell the UI what changed without
// knowing anything about it.

export class Emitter {
  #handlers = new Map();

  // Returns a function that unsubscribes.
  on(type, handler) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(handler);
    return () => this.#handlers.get(type)?.delete(handler);
  }

  emit(type, ...args) {
    for (const handler of [...(this.#handlers.get(type) ?? [])]) {
      // One failing listener must not starve the others (or the socket
      // code that emitted).
      try {
        handler(...args);
      } catch (error) {
        console.error(`listener for "${type}" failed`, error);
      }
    }
  }
}
