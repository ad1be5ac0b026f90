// Toasts: short notices in #toasts, an aria-live region, so screen readers
// hear them without focus moving. Each disappears on its own (errors stay
// longer) or with its close button; the oldest go when too many pile up.

import { h } from "./dom.js";

const MAX_TOASTS = 5;
const TIMEOUT_MS = { info: 6000, warning: 9000, error: 12000 };

export function createToaster(container) {
  const shown = new Map(); // text -> {element, count, arm}: a repeat is counted, not stacked

  // kind: "info", "warning" or "error"; data: extra data-* attributes
  // (e.g. the session_ended reason).
  return function toast(text, kind = "info", data = {}) {
    const same = shown.get(text);
    if (same && same.element.isConnected) {
      // Two sessions of one screen name hear the same news (a warning, say).
      same.count += 1;
      same.element.querySelector(".toast-count").textContent = ` (×${same.count})`;
      same.arm();
      return same.element;
    }
    const close = h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
    const element = h(
      "div",
      { class: `toast toast-${kind}`, dataset: { kind, ...data } },
      h("span", { class: "toast-text" }, text, h("span", { class: "toast-count" })),
      close,
    );
    let timer = null;
    const dismiss = () => {
      clearTimeout(timer);
      element.remove();
      if (shown.get(text)?.element === element) shown.delete(text);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(dismiss, TIMEOUT_MS[kind] ?? TIMEOUT_MS.info);
    };
    close.addEventListener("click", dismiss);
    // Someone reading it (pointer over it, or tabbed into it) keeps it.
    element.addEventListener("mouseenter", () => clearTimeout(timer));
    element.addEventListener("mouseleave", arm);
    element.addEventListener("focusin", () => clearTimeout(timer));
    element.addEventListener("focusout", arm);
    container.append(element);
    shown.set(text, { element, count: 1, arm });
    while (container.children.length > MAX_TOASTS) {
      const oldest = container.firstElementChild;
      oldest.remove();
      for (const [key, entry] of shown) if (entry.element === oldest) shown.delete(key);
    }
    arm();
    return element;
  };
}
