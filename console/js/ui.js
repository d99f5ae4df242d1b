// Small DOM helpers. Values from the API are only ever set as text, never
// parsed as HTML.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const view = () => document.getElementById("view");

export function render(title, ...children) {
  const main = view();
  main.replaceChildren(el("h2", {}, title), ...children);
  document.title = `${title} · Billing console`;
  return main;
}

export function errorBox(err) {
  const details = err.details && Object.keys(err.details).length ? el("pre", {}, JSON.stringify(err.details, null, 2)) : null;
  return el("div", { class: "error", role: "alert" },
    el("strong", {}, err.type ? `${err.type}: ` : "Error: "), el("span", { class: "api-message" }, err.message), details);
}

export function notice(text) {
  return el("div", { class: "notice", role: "status" }, text);
}

export function time(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toISOString().replace(".000Z", "Z");
}

export function status(value) {
  return el("span", { class: `status-${value}` }, value ?? "");
}

export function fields(pairs) {
  return el("dl", { class: "fields" }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "")]));
}

// A table: columns are [header, row => cell content].
export function table(caption, columns, rows, empty = "Nothing here.") {
  if (!rows.length) return el("p", { class: "muted" }, caption ? `${caption}: ${empty}` : empty);
  return el("div", { class: "table-wrap" }, el("table", {},
    caption ? el("caption", {}, caption) : null,
    el("thead", {}, el("tr", {}, columns.map(([h]) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((row) => el("tr", {}, columns.map(([, cell]) => el("td", {}, cell(row))))))));
}

// One page of a list at a time: `load(cursor)` answers {data, next_cursor};
// `draw(data)` makes the page's node. Earlier cursors are kept in memory
// only (a cursor can encode an index key: it stays out of the URL).
export function pager(load, draw) {
  const box = el("section", { class: "paged" });
  const stack = [];
  let current = null;
  async function show(cursor) {
    box.setAttribute("aria-busy", "true");
    try {
      const page = await load(cursor);
      current = cursor;
      const prev = el("button", { type: "button", disabled: !stack.length, onclick: () => show(stack.pop()) }, "Previous page");
      const next = el("button", { type: "button", disabled: !page.next_cursor,
                                  onclick: () => { stack.push(current); show(page.next_cursor); } }, "Next page");
      box.replaceChildren(draw(page.data || []), el("div", { class: "pager" }, prev, next));
    } catch (err) {
      box.replaceChildren(errorBox(err));
    } finally {
      box.removeAttribute("aria-busy");
    }
  }
  box.reload = () => show(current);
  show(null);
  return box;
}

// Asks before any write; resolves true only on an explicit Confirm.
export function confirmWrite(text, ok = "Confirm") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = ok;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}

// A write behind a confirmation: the outcome (the API's message as it came,
// or `done`'s text) is shown in `out`.
export async function act(out, question, call, done, ok) {
  if (!(await confirmWrite(question, ok))) return null;
  out.replaceChildren(el("p", { class: "muted" }, "Working…"));
  try {
    const result = await call();
    out.replaceChildren(notice(done(result)));
    return result;
  } catch (err) {
    out.replaceChildren(errorBox(err));
    return null;
  }
}

export function link(href, text) {
  return el("a", { href }, text);
}
