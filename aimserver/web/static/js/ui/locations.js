// The Locations panel: every live session of the screen name in view
// (list_client_sessions), browser and classic alike, this one marked.
// Asked for when opened and on Refresh; not polled.

import { byId, dateTime, duration, h, setText } from "./dom.js";

function statusOf(place) {
  const parts = [];
  if (place.away) parts.push("away");
  if (place.idle_seconds > 0) parts.push(`idle ${duration(place.idle_seconds)}`);
  return parts.length ? parts.join(", ") : "active";
}

export function mountLocations(manager, toast) {
  const toggle = byId("locations-toggle");
  const panel = byId("locations-panel");
  const body = byId("locations").tBodies[0];
  const note = byId("locations-note");

  function show(open) {
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    syncToggle();
    if (open) refresh();
  }

  async function refresh() {
    const session = manager.current;
    if (!session) return;
    setText(note, "Loading…");
    let places;
    try {
      places = await session.listLocations();
    } catch (error) {
      setText(note, "");
      toast(`Locations not listed: ${error.message}`, "error");
      return;
    }
    if (session !== manager.current) return; // switched meanwhile
    body.replaceChildren(
      ...places.map((place) =>
        h(
          "tr",
          { class: place.this ? "this" : null, dataset: { instance: String(place.instance_id) } },
          h(
            "td",
            {},
            place.client || "AIM client",
            place.this ? h("strong", { class: "this-mark" }, " (this one)") : null,
          ),
          h("td", {}, place.address ?? ""),
          h("td", {}, place.since ? dateTime(place.since * 1000) : ""),
          h("td", {}, statusOf(place)),
          h(
            "td",
            {},
            place.this
              ? null
              : h(
                  "button",
                  {
                    type: "button",
                    class: "location-signoff",
                    dataset: { instance: String(place.instance_id) },
                    "aria-label": `Sign off ${place.client || "this location"} at ${place.address ?? "?"}`,
                  },
                  "Sign off",
                ),
          ),
        ),
      ),
    );
    setText(note, `${places.length} location${places.length === 1 ? "" : "s"}.`);
  }

  // Only a signed-on session can be asked; an open panel can always close.
  function syncToggle() {
    const session = manager.current;
    toggle.disabled = panel.hidden && !session?.connected;
  }

  toggle.addEventListener("click", () => show(panel.hidden));
  byId("locations-refresh").addEventListener("click", refresh);

  // Sign another location of this screen name off (sign_off_location).
  body.addEventListener("click", async (event) => {
    const button = event.target.closest(".location-signoff");
    const session = manager.current;
    if (!button || !session) return;
    button.disabled = true;
    try {
      await manager.signOffLocation(session, Number(button.dataset.instance));
      toast("That location was signed off.", "info");
    } catch (error) {
      toast(`Not signed off: ${error.message}`, "error");
    }
    refresh();
  });
  manager.on("current", () => {
    body.replaceChildren();
    setText(note, "");
    show(false);
    syncToggle();
  });
  manager.on("change", (session) => {
    if (session === manager.current) syncToggle();
  });
}
