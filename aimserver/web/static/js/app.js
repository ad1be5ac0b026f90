// The page's entry point, and the only module that touches the DOM when
// imported: it opens storage, makes the session manager, mounts the views
// and connects the browser's network events.

import { watchIdle } from "./activity.js";
import { SessionManager } from "./manager.js";
import { probeServer } from "./probe.js";
import { clientLabel, socketUrl } from "./protocol.js";
import { openStore } from "./store.js";
import { claimTab } from "./tabs.js";
import { mountBanner } from "./ui/banner.js";
import { mountBuddyList } from "./ui/buddylist.js";
import { mountConversation } from "./ui/conversation.js";
import { byId } from "./ui/dom.js";
import { mountLocations } from "./ui/locations.js";
import { mountRooms } from "./ui/rooms.js";
import { mountSessionView } from "./ui/sessionview.js";
import { mountSidebar } from "./ui/sidebar.js";
import { mountSignOn } from "./ui/signon.js";
import { createToaster } from "./ui/toasts.js";

const toast = createToaster(byId("toasts"));
const [store, tab] = await Promise.all([openStore(), claimTab()]);
const manager = new SessionManager({ store, tab, url: socketUrl(), client: clientLabel() });

manager.on("toast", (session, text, kind, data) => toast(text, kind, data));

mountBanner(manager);
mountSidebar(manager);
mountSignOn(manager, toast);
mountSessionView(manager, toast);
mountLocations(manager, toast);
mountBuddyList(manager, toast);
mountConversation(manager, toast);
mountRooms(manager, toast);

// The sign-on buttons were disabled in the markup until the handlers above
// were on: a submit before that would have been a plain form post.
for (const button of document.querySelectorAll("button[data-needs-script]")) button.disabled = false;

// The sockets would notice a lost network late (a TCP timeout); the
// browser says it at once. Back online, every session retries now instead
// of waiting out its backoff.
window.addEventListener("offline", () => manager.setNetwork(false));
window.addEventListener("online", () => manager.setNetwork(true));

// Whether the server may make accounts, and whether it is there at all
// (the page may have come from a cache, or the server may have gone since).
const retryProbe = probeServer(socketUrl(), {
  onState: (state) => manager.setProbe(state, retryProbe),
  onInfo: (info) => manager.setServerInfo(info),
});

await manager.restoreSaved();
if (!navigator.onLine) manager.setNetwork(false);

watchIdle(document, (seconds) => manager.setAutoIdle(seconds));

document.documentElement.dataset.ready = "true"; // for tests: the page is wired up
