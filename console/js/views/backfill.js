// Backfill runs (DESIGN.md section 8): start one, watch its progress live.
// The API has no list of runs: the ids this browser started or opened are
// remembered here (ids only, no personal data).
import { api } from "../api.js";
import { act, el, errorBox, fields, link, render, status, table, time } from "../ui.js";

const KEY = "billing-console.backfill-runs";
const remembered = () => JSON.parse(localStorage.getItem(KEY) || "[]");
function remember(id) {
  localStorage.setItem(KEY, JSON.stringify([id, ...remembered().filter((r) => r !== id)].slice(0, 20)));
}

export function list() {
  const out = el("div", { "aria-live": "polite" });
  const start = el("button", { type: "button", class: "primary", onclick: async () => {
    const run = await act(out, "Start importing the whole Stripe account (every object type)?", () => api.post("/v1/sync/backfill", {}),
                          (r) => `Backfill ${r.id} started.`, "Start backfill");
    if (run) { remember(run.id); location.hash = `#/backfill/${encodeURIComponent(run.id)}`; }
  } }, "Start a backfill");
  const input = el("input", { type: "text", id: "bf-id", required: true, pattern: "bf_[A-Za-z0-9]+" });
  const open = el("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); location.hash = `#/backfill/${encodeURIComponent(input.value.trim())}`; } },
    el("label", { for: "bf-id" }, "Open a run by id (bf_…)", input), el("button", {}, "Open"));
  const runs = remembered();
  render("Backfill", el("div", { class: "pager" }, start), out, open,
    runs.length ? el("section", {}, el("h3", {}, "Runs opened in this browser"), el("ul", {}, runs.map((id) => el("li", {}, link(`#/backfill/${encodeURIComponent(id)}`, id)))))
                : el("p", { class: "muted" }, "No run opened in this browser yet."));
}

function progress(t) {
  // Stripe gives no total up front: a type shows its count, and full once done.
  return el("span", {}, el("progress", { max: 1, value: t.done ? 1 : null, "aria-label": `${t.type} ${t.done ? "done" : "importing"}` }), ` ${t.seen}`);
}

export async function one(id) {
  let timer = null;
  window.stopPolling = () => { clearTimeout(timer); window.stopPolling = null; };
  const main = render(`Backfill ${id}`, el("p", { class: "muted" }, "Loading…"));
  const out = el("div", { "aria-live": "polite" });
  async function draw() {
    let run;
    try {
      run = await api.get(`/v1/sync/backfill/${encodeURIComponent(id)}`);
    } catch (err) {
      main.replaceChildren(el("h2", {}, `Backfill ${id}`), errorBox(err));
      return;
    }
    remember(run.id);
    const resume = el("button", { type: "button", disabled: run.status !== "running", onclick: () => act(out,
      `Run backfill ${run.id}'s checkpoint again (for a run that stalled)?`, () => api.post(`/v1/sync/backfill/${encodeURIComponent(run.id)}/resume`),
      () => "Resumed.", "Resume") }, "Resume a stalled run");
    main.replaceChildren(el("h2", {}, `Backfill ${run.id}`),
      fields([["Status", status(run.status)], ["Importing", run.current_type ?? ""], ["Checkpoints", run.checkpoints],
              ["Seen", run.totals.seen], ["Applied", run.totals.applied], ["Unchanged", run.totals.unchanged],
              ["Stale", run.totals.stale], ["Failed", run.totals.failed], ["Started", time(run.started_at)],
              ["Updated", time(run.updated_at)], ["Finished", time(run.finished_at)]]),
      el("div", { class: "pager" }, resume), out,
      table("Per object type", [["Type", (t) => t.type], ["Progress", progress], ["Applied", (t) => t.applied],
        ["Unchanged", (t) => t.unchanged], ["Stale", (t) => t.stale], ["Failed", (t) => t.failed], ["Pages", (t) => t.pages],
        ["Last error", (t) => (t.last_error ? `${t.last_error.type}: ${t.last_error.message}` : "")]], run.types));
    if (run.status === "running") timer = setTimeout(draw, 2000);
  }
  await draw();
}
