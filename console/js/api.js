// The console's one door: the REST API under /v1, on the page's own origin
// (`make run`'s gateway, or `make console`'s signing proxy). Nothing else is
// ever called; in particular nothing calls Stripe.

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.type = error.type || "error";
    this.details = error.details || {};
  }
}

function idempotencyKey() {
  if (crypto.randomUUID) return `console-${crypto.randomUUID()}`;
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "console-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function request(method, path, { query, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = { Accept: "application/json" };
  // Every write carries a fresh key: a retried request (the browser's or the
  // proxy's) replays the first answer instead of acting twice.
  if (method !== "GET") headers["Idempotency-Key"] = idempotencyKey();
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const resp = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    // The API's own error shape; API Gateway's answers ({"message": ...}) too.
    const error = (data && data.error) || { type: `http_${resp.status}`, message: (data && data.message) || text || resp.statusText };
    throw new ApiError(resp.status, error);
  }
  return data;
}

export const api = {
  get: (path, query) => request("GET", path, { query }),
  post: (path, body) => request("POST", path, { body }),
};

export const PAGE = 20;
