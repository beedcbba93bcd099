// The console's Alpine components. Every read and every change goes through the REST API
// with the session cookie; changes carry the page's CSRF token and an Idempotency-Key
// (a form sent twice, by a double click or a retry, is done once).
"use strict";

const CSRF = () => document.querySelector('meta[name="csrf-token"]').content;

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code;
    this.param = problem.param;
  }
}

async function api(method, path, body, key) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = CSRF();
    headers["Idempotency-Key"] = key || crypto.randomUUID();
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    location.assign(`/console/signin?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new ApiError(401, { detail: "signed out" });
  }
  if (response.status === 204) return null;
  const parsed = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

// One change from a form component (its busy, error and key): the Idempotency-Key stays
// the same while the change may still be made (a retry after a lost answer or a 5xx) and is
// replaced once it is done or refused, so that the next send is a new request.
async function sendChange(form, method, path, body) {
  form.busy = true;
  form.error = "";
  try {
    const answer = await api(method, path, body, form.key);
    form.key = crypto.randomUUID();
    return { done: true, answer };
  } catch (error) {
    form.error = problemText(error);
    if (error.status && error.status < 500) form.key = crypto.randomUUID();
    return { done: false };
  } finally {
    form.busy = false;
  }
}

function problemText(error) {
  return error.param ? `${error.message} (${error.param})` : error.message;
}

function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== "" && value != null) query.set(name, value);
  const text = query.toString();
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

// Where a resource is shown, by its id's prefix.
const PAGES = { acc: "accounts", bal: "balances", pay: "payments", tr: "transfers", hold: "holds", we: "webhooks" };
function pageOf(id) {
  if (typeof id !== "string" || !/^[a-z]+_[A-Za-z0-9]+$/.test(id)) return null; // as the server checks it
  const prefix = id.split("_")[0];
  return PAGES[prefix] ? `/console/${PAGES[prefix]}/${id}` : null;
}

function eventSummary(event) {
  const d = event.data || {};
  const parts = [];
  if (d.amount) parts.push(`${d.amount} ${d.currency || ""}`.trim());
  if (d.email) parts.push(d.email);
  if (d.status) parts.push(d.status);
  if (d.balance_from && d.balance_to) parts.push(`${d.balance_from} → ${d.balance_to}`);
  if (d.base && d.quote) parts.push(`${d.base}/${d.quote} ${d.rate}`);
  return parts.join(" · ");
}

function feedItem(event) {
  const d = event.data || {};
  return {
    id: event.id,
    type: event.type,
    at: event.created_at,
    summary: eventSummary(event),
    subject: d.id || "",
    href: pageOf(d.id) || "#",
  };
}

document.addEventListener("alpine:init", () => {
  const Alpine = window.Alpine;

  Alpine.magic("page", () => pageOf);

  // One resource: <div x-data="resource" data-url="/v1/accounts/acc_…">, item once loaded.
  Alpine.data("resource", () => ({
    item: null,
    error: "",
    init() {
      this.url = this.$el.dataset.url;
      this.load();
      window.addEventListener("rl-reload", () => this.load());
    },
    async load() {
      try {
        this.item = await api("GET", this.url);
        this.error = "";
      } catch (error) {
        this.error = problemText(error);
      }
    },
  }));

  // The header's search: an id opens its page, an email the accounts that have it.
  Alpine.data("jump", () => ({
    go(event) {
      const field = event.target.elements.q;
      const wanted = field.value.trim();
      const page = pageOf(wanted);
      if (page) location.assign(page);
      else if (wanted.includes("@")) location.assign(withQuery("/console/accounts", { email: wanted }));
      else field.setCustomValidity("an id (acc_…, bal_…, pay_…, tr_…, hold_…, we_…) or an email");
      field.reportValidity();
      field.addEventListener("input", () => field.setCustomValidity(""), { once: true });
    },
  }));

  // A list page by page: data-url, data-cursor (what names an item in the cursor: its
  // id, another field, or "pair" for BASE/QUOTE), and a filter form calling `search`.
  Alpine.data("list", () => ({
    items: [],
    hasMore: false,
    pages: [], // the cursors of the pages before this one
    cursor: {},
    filters: {},
    error: "",
    loaded: false,
    init() {
      this.url = this.$el.dataset.url;
      this.cursorOf = this.$el.dataset.cursor || "id";
      // Filters may come in the page's address (/console/accounts?email=…), as the form's.
      const form = this.$el.querySelector("form.filters");
      for (const [name, value] of new URLSearchParams(location.search)) {
        if (form && form.elements[name]) {
          form.elements[name].value = value;
          this.filters[name] = value;
        }
      }
      this.load();
      window.addEventListener("rl-reload", () => this.load());
    },
    async load() {
      try {
        const page = await api("GET", withQuery(this.url, { ...this.filters, ...this.cursor }));
        this.items = page.data;
        this.hasMore = page.has_more;
        this.error = "";
      } catch (error) {
        this.items = [];
        this.error = problemText(error);
      }
      this.loaded = true;
    },
    search(event) {
      this.filters = Object.fromEntries(new FormData(event.target));
      this.pages = [];
      this.cursor = {};
      this.load();
    },
    next() {
      if (!this.items.length) return;
      this.pages.push(this.cursor);
      const last = this.items[this.items.length - 1];
      this.cursor = { starting_after: this.cursorOf === "pair" ? `${last.base}/${last.quote}` : last[this.cursorOf] };
      this.load();
    },
    prev() {
      this.cursor = this.pages.pop() || {};
      this.load();
    },
    get hasPrev() {
      return this.pages.length > 0;
    },
    get empty() {
      return this.loaded && !this.error && this.items.length === 0;
    },
  }));

  // A form sent to the API as JSON: data-method, data-path (its {field}s come from the
  // form), then data-go (a page, {id} from the answer) or a reload of the page's data.
  Alpine.data("apiForm", () => ({
    message: "",
    error: "",
    busy: false,
    key: crypto.randomUUID(),
    async submit(event) {
      const form = event.target;
      const body = {};
      let path = form.dataset.path;
      for (const field of form.elements) {
        if (!field.name) continue;
        let value = field.type === "checkbox" ? field.checked : field.value.trim();
        if (value === "" || (field.type === "checkbox" && !value)) continue;
        if (field.dataset.type === "int") value = Number.parseInt(value, 10);
        if (field.dataset.type === "list") value = value.split(/[\s,]+/).filter(Boolean);
        if (path.includes(`{${field.name}}`)) path = path.replace(`{${field.name}}`, encodeURIComponent(value));
        else body[field.name] = value;
      }
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
      this.message = "";
      const method = form.dataset.method || "POST";
      const sent = await sendChange(this, method, path, method === "DELETE" ? undefined : body);
      if (!sent.done) return;
      const answer = sent.answer;
      const go = form.dataset.go;
      if (go && (!go.includes("{id}") || (answer && answer.id))) {
        location.assign(go.replace("{id}", answer ? answer.id : ""));
        return;
      }
      const shown = form.dataset.show && answer ? answer[form.dataset.show] : null;
      const named = answer ? answer.id || answer.code || (answer.base && `${answer.base}/${answer.quote}`) : null;
      const what = named ? `${named}${answer.status ? ` · ${answer.status}` : ""}` : "";
      this.message = shown ? `${what} · ${form.dataset.show}: ${shown} (shown once)` : `Done${what ? `: ${what}` : "."}`;
      if (!shown) form.reset();
      window.dispatchEvent(new CustomEvent("rl-reload"));
    },
  }));

  // A transfer of several legs, all moved or none: the rows of legs grow and shrink.
  Alpine.data("transferForm", () => ({
    legs: [{ balance_from: "", balance_to: "", amount: "" }],
    description: "",
    error: "",
    busy: false,
    key: crypto.randomUUID(),
    addLeg() {
      if (this.legs.length < 16) this.legs.push({ balance_from: "", balance_to: "", amount: "" });
    },
    removeLeg(n) {
      if (this.legs.length > 1) this.legs.splice(n, 1);
    },
    async submit() {
      const body = {
        legs: this.legs.map((l) => ({
          balance_from: l.balance_from.trim(),
          balance_to: l.balance_to.trim(),
          amount: l.amount.trim(),
        })),
      };
      if (this.description.trim()) body.description = this.description.trim();
      const sent = await sendChange(this, "POST", "/v1/transfers", body);
      if (sent.done) location.assign(`/console/transfers/${sent.answer.id}`);
    },
  }));

  // Events as they happen (Server-Sent Events), newest first.
  Alpine.data("feed", () => ({
    items: [],
    state: "connecting",
    init() {
      const limit = Number.parseInt(this.$el.dataset.limit || "50", 10);  // read in init: $el is the root here
      api("GET", withQuery("/v1/events", { limit: Math.min(limit, 100) }))
        .then((page) => {
          // Events streamed meanwhile are newer than the list: they stay on top.
          const seen = new Set(this.items.map((i) => i.id));
          this.items = [...this.items, ...page.data.filter((e) => !seen.has(e.id)).map(feedItem)].slice(0, limit);
        })
        .catch(() => {});
      // After the instant the page was made: what the list above may also show is dropped
      // by id, and nothing in between is missed.
      const source = new EventSource(withQuery("/v1/events/stream", { after: this.$el.dataset.after }));
      source.onopen = () => {
        this.state = "live";
      };
      source.onerror = () => {
        if (source.readyState !== EventSource.CLOSED) {
          this.state = "reconnecting";
          return;
        }
        // Refused for good (the session ended, say): a read finds out, and signs in again.
        this.state = "closed";
        api("GET", "/v1/events?limit=1").catch(() => {});
      };
      const show = (message) => {
        const event = JSON.parse(message.data);
        if (this.items.some((i) => i.id === event.id)) return;
        this.items = [feedItem(event), ...this.items].slice(0, limit);
      };
      // Each event comes under its type's name (`event: payment.succeeded`).
      for (const type of this.$el.dataset.types.split(",")) source.addEventListener(type, show);
    },
  }));

  // Payments per minute and volume per currency over the last hour (uPlot).
  Alpine.data("charts", () => ({
    error: "",
    totals: [],
    init() {
      this.payments = this.$refs.payments;
      this.volume = this.$refs.volume;
      this.draw();
      setInterval(() => this.draw(), 15000);
    },
    async draw() {
      let activity;
      try {
        activity = await api("GET", "/console/activity.json");
        this.error = "";
      } catch (error) {
        this.error = problemText(error);
        return;
      }
      const now = Math.floor(Date.now() / 60000) * 60;
      const starts = Array.from({ length: 60 }, (_, n) => now - (59 - n) * 60);
      const byStart = new Map(activity.minutes.map((m) => [m.start, m]));
      const rows = starts.map((s) => byStart.get(s));
      const width = Math.max(260, this.payments.clientWidth);
      const opts = (series) => ({ width, height: 220, series: [{}, ...series], axes: [{}, { size: 60 }] });
      this.plot(
        "payments",
        opts([
          { label: "succeeded", stroke: "#1a7f37", width: 2 },
          { label: "failed", stroke: "#cf222e", width: 2 },
        ]),
        [starts, rows.map((m) => (m ? m.succeeded : 0)), rows.map((m) => (m ? m.failed : 0))],
      );
      const colours = ["#0969da", "#8250df", "#bf8700", "#1a7f37", "#cf222e", "#57606a"];
      // Display only: the chart's axis takes numbers; the table below shows exact amounts.
      this.plot(
        "volume",
        opts(activity.currencies.map((c, n) => ({ label: c, stroke: colours[n % colours.length], width: 2 }))),
        [starts, ...activity.currencies.map((c) => rows.map((m) => (m && m.volume[c] ? Number(m.volume[c]) : 0)))],
      );
      this.totals = activity.currencies.map((c) => ({
        currency: c,
        volume: sumDecimals(activity.minutes.map((m) => m.volume[c]).filter(Boolean)),
      }));
    },
    plot(ref, opts, data) {
      const el = this[ref];
      if (el._plot) el._plot.destroy();
      el._plot = new window.uPlot(opts, data, el);
    },
  }));
});

// Exact sums of decimal strings (BigInt in minor units): money is never a float.
function sumDecimals(values) {
  const scale = Math.max(0, ...values.map((v) => (v.split(".")[1] || "").length));
  let total = 0n;
  for (const v of values) {
    const [whole, frac = ""] = v.replace("-", "").split(".");
    const minor = BigInt(whole + frac.padEnd(scale, "0"));
    total += v.startsWith("-") ? -minor : minor;
  }
  const negative = total < 0n;
  const digits = (negative ? -total : total).toString().padStart(scale + 1, "0");
  const text = scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
  return negative ? `-${text}` : text;
}
