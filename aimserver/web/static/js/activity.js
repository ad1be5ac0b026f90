// Page-wide idle detection, for AIM's idle time: no keyboard or pointer
// input for a while and the sessions report idle; the next input makes
// them active again. One watcher for the page, since one person sits at it.

const IDLE_AFTER_MS = 10 * 60 * 1000;
const CHECK_EVERY_MS = 15000;
const INPUTS = ["keydown", "pointerdown", "pointermove", "wheel", "touchstart"];

// onChange(seconds): seconds idle when it starts, 0 when the user is back.
export function watchIdle(target, onChange, idleAfterMs = IDLE_AFTER_MS) {
  let lastInput = Date.now();
  let idle = false;
  const active = () => {
    lastInput = Date.now();
    if (idle) {
      idle = false;
      onChange(0);
    }
  };
  for (const type of INPUTS) target.addEventListener(type, active, { capture: true, passive: true });
  setInterval(() => {
    const quiet = Date.now() - lastInput;
    if (!idle && quiet >= idleAfterMs) {
      idle = true;
      onChange(Math.floor(quiet / 1000));
    }
  }, CHECK_EVERY_MS);
}
