// #banner: the one page-wide problem, the network. Offline wins over an
// unreachable server; with neither the banner is hidden and empty.

import { byId, setText } from "./dom.js";

export function mountBanner(manager) {
  const banner = byId("banner");
  const text = byId("banner-text"); // a live region: changes are announced
  const detail = byId("banner-detail"); // the ticking part, not announced
  const retry = byId("banner-retry");
  let ticker = null;

  function render() {
    const state = manager.bannerState;
    clearInterval(ticker);
    ticker = null;
    banner.hidden = state === null;
    banner.dataset.kind = state?.kind ?? "";
    setText(detail, "");
    if (state === null) {
      setText(text, "");
      return;
    }
    if (state.kind === "offline") {
      setText(text, "You are offline. Your sessions will reconnect when the network is back.");
      retry.hidden = true;
      return;
    }
    setText(text, "Cannot reach the server. Retrying.");
    retry.hidden = false;
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((state.nextRetryAt - Date.now()) / 1000));
      setText(detail, `Attempt ${state.attempt}` + (seconds > 0 ? `, next in ${seconds} s` : ""));
    };
    tick();
    ticker = setInterval(tick, 1000);
  }

  retry.addEventListener("click", () => manager.retryAll());
  manager.on("banner", render);
  render();
}
