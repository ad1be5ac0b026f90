// Reconnect delays: exponential from 0.5 s, capped at 30 s, with jitter so
// that ten sessions dropped by the same hiccup do not all knock at once.

export const BACKOFF_START_MS = 500;
export const BACKOFF_CAP_MS = 30000;

// attempt counts from 1. The delay is drawn from the upper half of the
// exponential step ("equal jitter"): never zero, never above the cap.
export function backoffDelay(attempt, random = Math.random) {
  const step = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(step / 2 + (random() * step) / 2);
}
