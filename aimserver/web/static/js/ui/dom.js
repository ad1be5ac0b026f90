// Small DOM helpers shared by the views. Elements are built with the DOM
// API, never from HTML strings: the page's Content-Security-Policy forbids
// inline styles and scripts, and text from the network stays text.

export const byId = (id) => document.getElementById(id);

// h("button", {class: "x", type: "button", dataset: {name: "bob"}}, "Bob")
// Attributes with null/false values are left out; `true` sets an empty one.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

// Make `container`'s children match `items`, reusing the element of each key
// (its data-key) so that focus and scroll survive re-renders. `create(item)`
// makes a new element; `update(element, item)` refreshes one.
export function syncChildren(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const child of container.children) existing.set(child.dataset.key, child);
  let cursor = container.firstElementChild;
  for (const item of items) {
    const key = keyOf(item);
    let element = existing.get(key);
    if (element) {
      existing.delete(key);
    } else {
      element = create(item);
      element.dataset.key = key;
    }
    update(element, item);
    // Move only what is out of place: moving a focused element blurs it.
    if (element === cursor) cursor = cursor.nextElementSibling;
    else container.insertBefore(element, cursor);
  }
  for (const stale of existing.values()) stale.remove();
}

// Set text only when it changed, so screen readers are not told twice.
export function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

export function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function dateTime(ms) {
  return new Date(ms).toLocaleString([], {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

// 42 -> "42s", 3700 -> "1h 1m"
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m`;
  return `${s}s`;
}
