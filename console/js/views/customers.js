// Customers: find one (email, owner, customer id or Stripe id), and one
// customer with everything support asks about.
import { api, PAGE } from "../api.js";
import { act, el, errorBox, fields, link, pager, render, status, table, time } from "../ui.js";

const HINT = "An email, an owner as type:id (User:42), a customer id (cust_…) or a Stripe id (cus_…).";

// What the operator typed decides the filter; nothing else goes into the URL.
export function queryFor(q) {
  if (q.includes("@")) return { email: q };
  if (q.startsWith("cus_")) return { processor_id: q };
  if (q.startsWith("cust_")) return { id: q };
  const owner = q.match(/^([^:/\s]+)[:/](.+)$/);
  if (owner) return { owner_type: owner[1], owner_id: owner[2] };
  return null;
}

function customerRows(rows) {
  return table("Customers", [
    ["Customer", (c) => link(`#/customers/${encodeURIComponent(c.id)}`, c.id)],
    ["Email", (c) => c.email], ["Owner", (c) => (c.owner_type ? `${c.owner_type}:${c.owner_id}` : "none")],
    ["Stripe", (c) => c.processor_id], ["Deleted", (c) => time(c.deleted_at)],
  ], rows, "no customer matches.");
}

export function search(q) {
  const input = el("input", { type: "search", id: "q", name: "q", value: q, required: true, "aria-describedby": "q-hint" });
  const form = el("form", { class: "inline", role: "search", onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/customers?q=${encodeURIComponent(input.value.trim())}`;
  } }, el("label", { for: "q" }, "Find a customer", input), el("button", { class: "primary" }, "Search"));
  const results = el("div", { id: "results" });
  render("Customers", form, el("p", { id: "q-hint", class: "muted" }, HINT), results);
  if (!q) return;
  const filter = queryFor(q);
  if (!filter) {
    results.replaceChildren(errorBox({ type: "unrecognised", message: `Cannot tell what "${q}" is. ${HINT}` }));
    return;
  }
  if (filter.id) {
    api.get(`/v1/customers/${encodeURIComponent(filter.id)}`)
      .then((c) => results.replaceChildren(customerRows([c])))
      .catch((err) => results.replaceChildren(errorBox(err)));
    return;
  }
  results.replaceChildren(pager((cursor) => api.get("/v1/customers", { ...filter, include_deleted: true, limit: PAGE, cursor }),
                                customerRows));
}

function money(amount, currency) {
  if (amount === null || amount === undefined) return "";
  return `${(amount / 100).toFixed(2)} ${String(currency || "").toUpperCase()}`;
}

function section(title, node) {
  return el("section", { "aria-labelledby": `h-${title}` }, el("h3", { id: `h-${title}` }, title), node);
}

export async function one(id) {
  const main = render(`Customer ${id}`, el("p", { class: "muted" }, "Loading…"));
  let c;
  try {
    c = await api.get(`/v1/customers/${encodeURIComponent(id)}`, { include: "payment_methods,subscriptions,invoices,charges" });
  } catch (err) {
    main.replaceChildren(el("h2", {}, `Customer ${id}`), errorBox(err));
    return;
  }
  const out = el("div", { "aria-live": "polite" });
  const sync = el("button", { type: "button", onclick: () => act(out,
    `Re-fetch customer ${c.id}, its payment methods and subscriptions from Stripe and apply them?`,
    () => api.post(`/v1/customers/${encodeURIComponent(c.id)}/sync`), () => "Synced from Stripe.", "Re-sync") }, "Re-sync from Stripe");
  const entitlements = el("div", {}, c.owner_type ? "Loading…" : el("p", { class: "muted" }, "No owner: no entitlements."));
  if (c.owner_type) {
    api.get(`/v1/owners/${encodeURIComponent(c.owner_type)}/${encodeURIComponent(c.owner_id)}/entitlements`)
      .then((e) => entitlements.replaceChildren(e.features.length ? el("ul", {}, e.features.map((f) => el("li", {}, f)))
                                                                 : el("p", { class: "muted" }, "No active features.")))
      .catch((err) => entitlements.replaceChildren(errorBox(err)));
  }
  const usageCols = [["Identifier", (u) => u.identifier], ["Event", (u) => u.event_name], ["Value", (u) => u.value],
                     ["Occurred", (u) => time(u.occurred_at)], ["Status", (u) => status(u.stripe_status)],
                     ["Stripe error", (u) => (u.stripe_error ? u.stripe_error.message : "")]];
  main.replaceChildren(
    el("h2", {}, `Customer ${c.id}`),
    fields([["Email", c.email], ["Name", c.name], ["Owner", c.owner_type ? `${c.owner_type}:${c.owner_id}` : "none"],
            ["Stripe", c.processor_id], ["Currency", c.currency], ["Default payment method", c.default_payment_method_id],
            ["Last Stripe event", c.last_stripe_event_id ? `${c.last_stripe_event_id} (${time(c.last_stripe_event_ts)})` : ""],
            ["Created", time(c.inserted_at)], ["Updated", time(c.updated_at)], ["Deleted", time(c.deleted_at)]]),
    el("div", { class: "pager" }, sync), out,
    section("Subscriptions", table(null, [["Subscription", (s) => s.id], ["Status", (s) => status(s.status)],
      ["Stripe", (s) => s.processor_id], ["Price", (s) => s.price_id], ["Quantity", (s) => s.quantity],
      ["Period end", (s) => time(s.current_period_end)], ["Cancels at period end", (s) => (s.cancel_at_period_end ? "yes" : "no")]],
      c.subscriptions || [])),
    section("Entitlements", entitlements),
    section("Invoices", table(null, [["Invoice", (i) => i.id], ["Status", (i) => status(i.status)],
      ["Stripe", (i) => i.processor_id], ["Due", (i) => money(i.amount_due, i.currency)],
      ["Paid", (i) => money(i.amount_paid, i.currency)], ["Reason", (i) => i.billing_reason]], c.invoices || [])),
    section("Charges", table(null, [["Charge", (ch) => ch.id], ["Status", (ch) => status(ch.status)],
      ["Stripe", (ch) => ch.processor_id], ["Amount", (ch) => money(ch.amount, ch.currency)], ["Invoice", (ch) => ch.invoice_id]], c.charges || [])),
    section("Payment methods", table(null, [["Payment method", (p) => p.id], ["Type", (p) => p.type],
      ["Stripe", (p) => p.processor_id], ["Card", (p) => (p.brand ? `${p.brand} •••• ${p.last4} (${p.exp_month}/${p.exp_year})` : "")],
      ["Detached", (p) => time(p.detached_at)],
      ["Default", (p) => ([p.id, p.processor_id].includes(c.default_payment_method_id) ? "yes" : "")]], c.payment_methods || [])),
    section("Ledger", pager((cursor) => api.get(`/v1/customers/${encodeURIComponent(c.id)}/events`, { limit: PAGE, cursor }),
      (rows) => table(null, [["When", (r) => time(r.inserted_at)], ["Event", (r) => r.type],
        ["Subject", (r) => `${r.subject_type} ${r.subject_id}`], ["Actor", (r) => `${r.actor_type}${r.actor_id ? ` ${r.actor_id}` : ""}`],
        ["Webhook event", (r) => (r.caused_by_webhook_event_id
          ? link(`#/webhook-events/${encodeURIComponent(r.caused_by_webhook_event_id)}`, r.caused_by_webhook_event_id) : "")]], rows))),
    section("Usage", pager((cursor) => api.get("/v1/usage", { customer_id: c.id, limit: PAGE, cursor }),
      (rows) => table(null, usageCols, rows))),
    section("Failed usage", pager((cursor) => api.get("/v1/usage", { customer_id: c.id, status: "failed", limit: PAGE, cursor }),
      (rows) => table(null, usageCols, rows, "none failed."))),
  );
}
