// The status page's one script: polls /stats and /stats/history with the
// API's bearer token and fills in the page. No build step, no libraries.
"use strict";

const REFRESH_MS = 2000;
const HOUR_S = 3600;
const TOKEN_KEY = "aimserver-api-token";

// The token comes from the address's fragment (#token=...), which browsers
// never send to the server, or from the form; it is kept for this tab only.
let token = new URLSearchParams(location.hash.slice(1)).get("token");
if (token !== null) {
  sessionStorage.setItem(TOKEN_KEY, token);
  history.replaceState(null, "", location.pathname + location.search);
} else {
  token = sessionStorage.getItem(TOKEN_KEY) || "";
}

const $ = (id) => document.getElementById(id);
const number = (n) => Number(n).toLocaleString("en-US");

class NeedToken extends Error {}

async function api(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) throw new NeedToken();
  if (!response.ok) throw new Error(path + " answered " + response.status);
  return response.json();
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  return m + "m " + s + "s";
}

// points: [[unix time, value], ...] drawn from `start` (at most an hour
// ago) to `now`, across the whole width.
function sparkline(id, points, start, now) {
  const svg = $(id);
  const box = svg.viewBox.baseVal;
  const span = Math.max(now - start, 1);
  const top = Math.max(1, ...points.map((p) => p[1]));
  const drawn = points
    .filter((p) => p[0] >= start)
    .map((p) => {
      const x = ((p[0] - start) / span) * box.width;
      const y = box.height - 2 - (p[1] / top) * (box.height - 4);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
  svg.querySelector("polyline").setAttribute("points", drawn.join(" "));
  svg.dataset.points = String(drawn.length);
}

function showStats(stats) {
  for (const field of ["users_online", "sessions", "signons", "messages_routed",
                       "chat_rooms", "chat_members"]) {
    $(field).textContent = number(stats[field]);
  }
  $("reactor_lag_ms").textContent = Number(stats.reactor_lag_ms).toFixed(1);
  $("uptime").textContent = duration(stats.uptime_seconds);
  const perUser = Object.entries(stats.sessions_per_user)
    .map(([n, users]) => "with " + n + ": " + number(users));
  $("sessions_per_user").textContent = perUser.length ? "users " + perUser.join(" · ") : "";
  const reasons = Object.entries(stats.refusals);
  $("refusals").textContent = number(reasons.reduce((sum, [, n]) => sum + n, 0));
  $("refusal_reasons").textContent = reasons.map(([why, n]) => why + " " + number(n)).join(", ");
}

function showHistory(history) {
  const rows = history.samples.map((row) =>
    Object.fromEntries(history.fields.map((name, i) => [name, row[i]])));
  if (!rows.length) return;
  const now = rows[rows.length - 1].time;
  const start = Math.max(rows[0].time, now - HOUR_S);
  for (const field of ["users_online", "sessions", "reactor_lag_ms"]) {
    sparkline("spark-" + field, rows.map((r) => [r.time, r[field]]), start, now);
  }
  // A rate from consecutive totals: a missed sample only widens one step.
  const rates = [];
  for (let i = 1; i < rows.length; i++) {
    const seconds = rows[i].time - rows[i - 1].time;
    if (seconds > 0) {
      const sent = Math.max(0, rows[i].messages_routed - rows[i - 1].messages_routed);
      rates.push([rows[i].time, sent / seconds]);
    }
  }
  sparkline("spark-ims_per_second", rates, start, now);
  // The number: over the last full interval (the last point is taken now,
  // maybe a moment after a sample, too short a span for a rate of its own).
  let latest = 0;
  for (let i = rows.length - 2; i >= 0; i--) {
    const seconds = now - rows[i].time;
    if (seconds >= history.interval_seconds || i === 0) {
      const sent = rows[rows.length - 1].messages_routed - rows[i].messages_routed;
      latest = seconds > 0 ? Math.max(0, sent) / seconds : 0;
      break;
    }
  }
  $("ims_per_second").textContent = latest >= 10 ? number(Math.round(latest)) : latest.toFixed(1);
}

async function refresh() {
  try {
    const [stats, history] = await Promise.all([api("/stats"), api("/stats/history")]);
    showStats(stats);
    showHistory(history);
    $("updated").textContent = new Date().toLocaleTimeString("en-GB");
    $("problem").textContent = "";
    $("token-form").hidden = true;
  } catch (error) {
    if (error instanceof NeedToken) {
      $("problem").textContent = token ? "The API refused this token." : "The API needs its token.";
      $("token-form").hidden = false;
    } else {
      $("problem").textContent = "Cannot reach the server: " + error.message;
    }
  }
  setTimeout(refresh, REFRESH_MS);
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("problem").textContent = "";
});

refresh();
