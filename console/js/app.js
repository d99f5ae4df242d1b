// Hash router: every view is a link to share (DESIGN.md section 12).
import { api } from "./api.js";
import { view } from "./ui.js";
import * as customers from "./views/customers.js";
import * as webhooks from "./views/webhooks.js";
import * as usage from "./views/usage.js";
import * as reconciliations from "./views/reconciliations.js";
import * as backfill from "./views/backfill.js";

const routes = [
  [/^\/customers\/([^/]+)$/, "customers", (m) => customers.one(decodeURIComponent(m[1]))],
  [/^\/customers$/, "customers", (m, q) => customers.search(q.get("q") || "")],
  [/^\/webhook-events\/([^/]+)$/, "webhook-events", (m) => webhooks.one(decodeURIComponent(m[1]))],
  [/^\/webhook-events$/, "webhook-events", (m, q) => webhooks.list(q.get("status") || "failed")],
  [/^\/usage$/, "usage", (m, q) => usage.list(q.get("status") || "failed")],
  [/^\/reconciliations\/([^/]+)$/, "reconciliations", (m) => reconciliations.one(decodeURIComponent(m[1]))],
  [/^\/reconciliations$/, "reconciliations", () => reconciliations.list()],
  [/^\/backfill\/([^/]+)$/, "backfill", (m) => backfill.one(decodeURIComponent(m[1]))],
  [/^\/backfill$/, "backfill", () => backfill.list()],
];

function route() {
  const hash = location.hash.replace(/^#/, "") || "/customers";
  const [path, queryString] = hash.split("?");
  const query = new URLSearchParams(queryString || "");
  for (const [pattern, section, show] of routes) {
    const m = path.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.section === section) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    if (window.stopPolling) window.stopPolling();
    show(m, query);
    view().focus();
    refreshCounts();
    return;
  }
  location.hash = "#/customers";
}

// What needs attention, in the navigation: one page (at most 100) of each
// list; "100+" when there are more. A list the API does not serve shows no badge.
async function count(name, path, query) {
  const badge = document.querySelector(`[data-count="${name}"]`);
  try {
    const page = await api.get(path, { ...query, limit: 100 });
    const n = page.data.length;
    badge.textContent = page.next_cursor ? `${n}+` : String(n);
    badge.hidden = n === 0;
  } catch {
    badge.hidden = true;
  }
}

export function refreshCounts() {
  count("webhooks-failed", "/v1/webhook-events", { status: "failed" });
  count("webhooks-received", "/v1/webhook-events", { status: "received" });
  count("usage-failed", "/v1/usage", { status: "failed" });
}
window.refreshCounts = refreshCounts;

window.addEventListener("hashchange", route);
route();
