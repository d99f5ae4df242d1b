// Webhook events: failed, stuck `received` and deferred deliveries; one
// event's state, error and replays; replay one or all selected.
import { api, PAGE } from "../api.js";
import { act, confirmWrite, el, errorBox, fields, link, notice, pager, render, status, table, time } from "../ui.js";

const STATUSES = [["failed", "Failed"], ["received", "Stuck (received)"], ["deferred", "Deferred"]];

function replay(id) {
  return api.post(`/v1/webhook-events/${encodeURIComponent(id)}/replay`);
}

export function list(current) {
  const tabs = el("nav", { "aria-label": "Webhook event status" }, el("ul", {}, STATUSES.map(([value, label]) =>
    el("li", {}, el("a", { href: `#/webhook-events?status=${value}`, "aria-current": value === current ? "page" : null }, label)))));
  const out = el("div", { "aria-live": "polite" });
  const selected = new Set();
  const replaySelected = el("button", { type: "button", class: "primary", disabled: true, onclick: async () => {
    const ids = [...selected];
    if (!(await confirmWrite(`Replay ${ids.length} webhook event(s)? Each is run again from the stored body.`, "Replay"))) return;
    const results = [];
    for (const id of ids) {
      try { await replay(id); results.push([id, "replay requested"]); } catch (err) { results.push([id, `${err.type}: ${err.message}`]); }
    }
    out.replaceChildren(notice(`Replayed ${results.filter(([, r]) => r === "replay requested").length} of ${ids.length}.`),
                        table("Replays", [["Event", ([id]) => id], ["Result", ([, r]) => r]], results));
    selected.clear();
    page.reload();
    window.refreshCounts?.();
  } }, "Replay selected");
  const sync = () => {
    replaySelected.disabled = selected.size === 0;
    replaySelected.textContent = selected.size ? `Replay selected (${selected.size})` : "Replay selected";
  };
  const page = pager((cursor) => api.get("/v1/webhook-events", { status: current, limit: PAGE, cursor }), (rows) => {
    selected.clear(); sync();
    const all = el("input", { type: "checkbox", "aria-label": "Select all on this page", onchange: (e) => {
      for (const box of e.target.closest("table").querySelectorAll("tbody input[type=checkbox]")) {
        box.checked = e.target.checked; box.dispatchEvent(new Event("change"));
      }
    } });
    const node = table(null, [
      [all, (r) => el("input", { type: "checkbox", value: r.id, "aria-label": `Select ${r.id}`, onchange: (e) => {
        if (e.target.checked) selected.add(r.id); else selected.delete(r.id); sync(); } })],
      ["Event", (r) => link(`#/webhook-events/${encodeURIComponent(r.id)}`, r.id)], ["Type", (r) => r.type],
      ["Status", (r) => status(r.status)], ["Attempts", (r) => r.attempts], ["Replays", (r) => r.replays],
      ["Received", (r) => time(r.received_at)], ["Error", (r) => (r.error ? `${r.error.type}: ${r.error.message}` : "")],
    ], rows, `no ${current} events.`);
    return node;
  });
  render("Webhook events", tabs, el("div", { class: "pager" }, replaySelected), out, page);
}

export async function one(id) {
  const main = render(`Webhook event ${id}`, el("p", { class: "muted" }, "Loading…"));
  let e;
  try {
    e = await api.get(`/v1/webhook-events/${encodeURIComponent(id)}`);
  } catch (err) {
    main.replaceChildren(el("h2", {}, `Webhook event ${id}`), errorBox(err));
    return;
  }
  const out = el("div", { "aria-live": "polite" });
  const button = el("button", { type: "button", class: "primary", onclick: async () => {
    const done = await act(out, `Replay ${e.id} (${e.type})? It is run again from the stored body.`, () => replay(e.id),
                           (r) => `Replay requested: the event is ${r.status} (replays: ${r.replays}).`, "Replay");
    if (done) { window.refreshCounts?.(); setTimeout(() => one(id).then(() => {}), 1500); }
  } }, "Replay");
  main.replaceChildren(el("h2", {}, `Webhook event ${e.id}`),
    fields([["Type", e.type], ["Status", status(e.status)], ["Created (Stripe)", time(e.created)], ["Object", e.object_id],
            ["Attempts", e.attempts], ["Replays", e.replays], ["Received", `${time(e.received_at)} via ${e.received_via ?? "?"}`],
            ["Updated", time(e.updated_at)], ["Processed", time(e.processed_at)], ["Next attempt", time(e.next_attempt_at)],
            ["Live mode", e.livemode === null ? "" : String(e.livemode)]]),
    el("h3", {}, "Error"), e.error ? el("pre", {}, `${e.error.type}${e.error.code ? ` (${e.error.code})` : ""}: ${e.error.message}`)
                                   : el("p", { class: "muted" }, "None."),
    el("p", { class: "muted" }, "The event's body is not served by the API (it carries the customer's personal data); "
                               + "Stripe keeps every event, retrievable by its id."),
    el("div", { class: "pager" }, button), out);
}
