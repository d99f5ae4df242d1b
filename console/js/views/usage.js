// Usage: the dead-letter view (failed, with Stripe's error), retry and cancel.
import { api, PAGE } from "../api.js";
import { act, el, link, pager, render, status, table, time } from "../ui.js";

const STATUSES = [["failed", "Failed"], ["pending", "Pending"], ["reported", "Reported"], ["canceled", "Canceled"]];

export function list(current) {
  const tabs = el("nav", { "aria-label": "Usage status" }, el("ul", {}, STATUSES.map(([value, label]) =>
    el("li", {}, el("a", { href: `#/usage?status=${value}`, "aria-current": value === current ? "page" : null }, label)))));
  const out = el("div", { "aria-live": "polite" });
  const after = (result) => { page.reload(); window.refreshCounts?.(); return result; };
  const retry = (u) => act(out, `Send usage event ${u.identifier} (${u.event_name}, value ${u.value}) to Stripe again?`,
    () => api.post(`/v1/usage/${encodeURIComponent(u.identifier)}/retry`).then(after),
    (r) => `${r.identifier} is ${r.stripe_status} again.`, "Retry");
  const cancel = (u) => act(out, `Cancel usage event ${u.identifier} (${u.event_name}, value ${u.value})? It is not billed.`,
    () => api.post(`/v1/usage/${encodeURIComponent(u.identifier)}/cancel`).then(after),
    (r) => `${r.identifier} is ${r.stripe_status}.`, "Cancel usage");
  const page = pager((cursor) => api.get("/v1/usage", { status: current, limit: PAGE, cursor }), (rows) => table(null, [
    ["Identifier", (u) => u.identifier], ["Customer", (u) => link(`#/customers/${encodeURIComponent(u.customer_id)}`, u.customer_id)],
    ["Event", (u) => u.event_name], ["Value", (u) => u.value], ["Occurred", (u) => time(u.occurred_at)],
    ["Status", (u) => status(u.stripe_status)], ["Attempts", (u) => u.attempts],
    ["Stripe error", (u) => (u.stripe_error ? `${u.stripe_error.code ?? u.stripe_error.type}: ${u.stripe_error.message}` : "")],
    ["Actions", (u) => el("span", { class: "pager" },
      u.stripe_status === "failed" ? el("button", { type: "button", "aria-label": `Retry ${u.identifier}`, onclick: () => retry(u) }, "Retry") : null,
      ["failed", "pending", "reported"].includes(u.stripe_status)
        ? el("button", { type: "button", "aria-label": `Cancel ${u.identifier}`, onclick: () => cancel(u) }, "Cancel") : null)],
  ], rows, `no ${current} usage.`));
  render("Usage", tabs, out, page);
}
