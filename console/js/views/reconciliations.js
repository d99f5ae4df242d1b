// Usage reconciliation runs (DESIGN.md section 10): their drift, a dry run
// of the repair, and applying it.
import { api, PAGE } from "../api.js";
import { act, el, errorBox, fields, link, notice, pager, render, status, table, time } from "../ui.js";

const hourAligned = (date) => Math.floor(date.getTime() / 3600000) * 3600;

export function list() {
  const now = new Date();
  const end = el("input", { type: "datetime-local", id: "rec-end", required: true,
                            value: new Date(hourAligned(now) * 1000).toISOString().slice(0, 16) });
  const start = el("input", { type: "datetime-local", id: "rec-start", required: true,
                              value: new Date((hourAligned(now) - 86400) * 1000).toISOString().slice(0, 16) });
  const eventName = el("input", { type: "text", id: "rec-event", name: "event_name" });
  const out = el("div", { "aria-live": "polite" });
  const asUnix = (input) => Math.floor(Date.parse(`${input.value}Z`) / 1000);
  const form = el("form", { class: "inline", onsubmit: async (e) => {
    e.preventDefault();
    const body = { start: asUnix(start), end: asUnix(end) };
    if (eventName.value.trim()) body.event_name = eventName.value.trim();
    const run = await act(out, `Start a reconciliation of ${start.value} to ${end.value} UTC? It reads Stripe's meter summaries.`,
                          () => api.post("/v1/usage/reconciliations", body), (r) => `Run ${r.id} started.`, "Start");
    if (run) location.hash = `#/reconciliations/${encodeURIComponent(run.id)}`;
  } }, el("label", { for: "rec-start" }, "Start (UTC)", start), el("label", { for: "rec-end" }, "End (UTC)", end),
       el("label", { for: "rec-event" }, "Meter event name (optional)", eventName), el("button", { class: "primary" }, "Start a run"));
  render("Reconciliation", form, out, pager((cursor) => api.get("/v1/usage/reconciliations", { limit: PAGE, cursor }),
    (rows) => table("Runs, newest first", [["Run", (r) => link(`#/reconciliations/${encodeURIComponent(r.id)}`, r.id)],
      ["Status", (r) => status(r.status)], ["From", (r) => time(r.start)], ["To", (r) => time(r.end)],
      ["Buckets", (r) => r.buckets], ["Drifted", (r) => r.drifted]], rows)));
}

function repairResult(result) {
  const actions = result.actions ?? result.data ?? null;
  if (Array.isArray(actions)) {
    return table("Repair actions", [["Action", (a) => a.action ?? a.type ?? ""], ["Customer", (a) => a.customer_id ?? ""],
      ["Event", (a) => a.event_name ?? ""], ["Bucket", (a) => time(a.start ?? a.bucket)], ["Value", (a) => a.value ?? a.difference ?? ""],
      ["Identifier", (a) => a.identifier ?? (a.identifiers || []).join(", ")], ["Outcome", (a) => a.status ?? a.reason ?? ""]], actions,
      "nothing to repair.");
  }
  return el("pre", {}, JSON.stringify(result, null, 2));
}

export async function one(id) {
  const main = render(`Reconciliation ${id}`, el("p", { class: "muted" }, "Loading…"));
  let run;
  try {
    run = await api.get(`/v1/usage/reconciliations/${encodeURIComponent(id)}`);
  } catch (err) {
    main.replaceChildren(el("h2", {}, `Reconciliation ${id}`), errorBox(err));
    return;
  }
  const out = el("div", { "aria-live": "polite", id: "repair-result" });
  const path = `/v1/usage/reconciliations/${encodeURIComponent(run.id)}/repair`;
  // A dry run sends nothing to Stripe and writes nothing: no confirmation.
  const dry = el("button", { type: "button", onclick: async () => {
    out.replaceChildren(el("p", { class: "muted" }, "Working…"));
    try {
      out.replaceChildren(notice("Dry run: nothing was sent."), repairResult(await api.post(path, { apply: false })));
    } catch (err) { out.replaceChildren(errorBox(err)); }
  } }, "Dry-run repair");
  const apply = el("button", { type: "button", class: "danger", onclick: async () => {
    const result = await act(out, `Apply the repair of run ${run.id}? Missing usage is sent to Stripe and overcounts are canceled.`,
                             () => api.post(path, { apply: true }), () => "Repair applied.", "Apply repair");
    if (result) out.append(repairResult(result));
  } }, "Apply repair");
  const drift = pager(async (cursor) => { const r = cursor ? await api.get(`/v1/usage/reconciliations/${encodeURIComponent(run.id)}`, { cursor }) : run; return { data: r.drift || [], next_cursor: r.next_cursor }; },
    (rows) => table("Drift", [["Customer", (d) => link(`#/customers/${encodeURIComponent(d.customer_id)}`, d.customer_id)],
      ["Stripe customer", (d) => d.stripe_customer_id], ["Event", (d) => d.event_name], ["From", (d) => time(d.start)],
      ["To", (d) => time(d.end)], ["Reported", (d) => d.local?.reported], ["Pending", (d) => d.local?.pending],
      ["Failed", (d) => d.local?.failed], ["Canceled", (d) => d.local?.canceled], ["Stripe", (d) => d.stripe],
      ["Difference", (d) => d.difference], ["Why", (d) => d.classification],
      ["Identifiers", (d) => (d.identifiers || []).slice(0, 5).join(", ") + ((d.identifiers || []).length > 5 ? " …" : "")]],
      rows, "no drift."));
  main.replaceChildren(el("h2", {}, `Reconciliation ${run.id}`),
    fields([["Status", status(run.status)], ["From", time(run.start)], ["To", time(run.end)], ["Buckets", run.buckets],
            ["Drifted", run.drifted]]),
    el("div", { class: "pager" }, dry, apply), out, drift);
}
