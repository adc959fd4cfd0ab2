// The status page's script: it reads the node list once, then follows the
// daemon's event stream (server-sent events) and reads the list again after
// each burst of events, so the table never drifts from the daemon's view.
// No framework and no build step: what is here is what the browser runs.
"use strict";

(() => {
  // The lifecycle in order; a node counts towards the bring-up once it is
  // enrolled and stops counting when it is retired.
  const STATES = ["discovered", "enrolled", "installing", "installed", "joined", "ready", "failed", "retiring", "retired"];
  const UNCOUNTED = new Set(["discovered", "retired"]);

  const nodes = new Map(); // MAC -> node, as GET api/nodes returns it
  let selected = ""; // the MAC whose history is open
  let stream = null;
  let refreshTimer = 0;

  const $ = (sel) => document.querySelector(sel);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      e.setAttribute(k, v);
    }
    e.append(...children);
    return e;
  }

  function setLive(state, text) {
    const p = $("#live");
    p.dataset.state = state;
    p.textContent = text;
  }

  // A refusal means the session is gone (expired, or the daemon restarted):
  // say so once and stop, rather than retrying into a wall.
  function loggedOut() {
    if (stream) {
      stream.close();
      stream = null;
    }
    setLive("out", "Logged out. On the bootstrapd machine, run `bootstrapd ui` and open the new link.");
  }

  async function getJSON(path) {
    const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401 || r.status === 403) {
      loggedOut();
      throw new Error("logged out");
    }
    if (!r.ok) {
      throw new Error(`${path}: ${r.status}`);
    }
    return r.json();
  }

  // refresh reads every node and returns the event number they reflect.
  async function refresh() {
    const snap = await getJSON("api/nodes");
    nodes.clear();
    for (const n of snap.nodes || []) {
      nodes.set(n.mac, n);
    }
    render();
    return snap.seq;
  }

  // Events come in bursts (one enroll is several); one read after the
  // burst is enough.
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => refresh().catch(() => {}), 150);
  }

  function follow(since) {
    stream = new EventSource(`api/events?since=${since}`);
    stream.addEventListener("open", () => setLive("live", "Live"));
    stream.addEventListener("node", refreshSoon);
    stream.addEventListener("error", () => {
      // EventSource reconnects by itself (sending Last-Event-ID), unless
      // the answer was an error status (a refusal, or the proxy finding
      // no daemon): then it is CLOSED, and start says which and retries.
      if (stream && stream.readyState === EventSource.CLOSED) {
        stream = null;
        start();
        return;
      }
      setLive("connecting", "Reconnecting…");
    });
  }

  async function start() {
    try {
      follow(await refresh());
    } catch (e) {
      if ($("#live").dataset.state !== "out") {
        setLive("connecting", "Cannot reach bootstrapd; retrying…");
        setTimeout(start, 5000);
      }
    }
  }

  // --- rendering ---

  function lastChange(n) {
    const h = n.history || [];
    for (let i = h.length - 1; i >= 0; i--) {
      if (h[i].to) {
        return new Date(h[i].at);
      }
    }
    return new Date(n.created);
  }

  function duration(ms) {
    let s = Math.max(0, Math.floor(ms / 1000));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    s %= 60;
    if (d > 0) return `${d}d ${h}h`;
    if (h > 0) return `${h}h ${m}m`;
    if (m > 0) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function change(ev) {
    if (!ev.to) return "note";
    return `${ev.from || "–"} → ${ev.to}`;
  }

  function cause(ev) {
    return ev.cause + (ev.count > 1 ? ` (×${ev.count})` : "");
  }

  function stateBadge(n) {
    const s = el("span", { class: `state s-${n.state}` }, n.state);
    const out = [s];
    if (n.reason) out.push(" ", el("span", { class: "reason" }, n.reason));
    if (n.pending && n.pending.length) out.push(" ", el("span", { class: "pending" }, "pending: " + n.pending.join(", ")));
    if (n.alert) out.push(" ", el("strong", { class: "alert", title: n.alert }, "! " + n.alert));
    return out;
  }

  function order(a, b) {
    // Named nodes first, by name (n2 before n10), then discovered MACs.
    if (!!a.hostname !== !!b.hostname) return a.hostname ? -1 : 1;
    return (a.hostname || a.mac).localeCompare(b.hostname || b.mac, undefined, { numeric: true });
  }

  function row(n) {
    let tr = document.querySelector(`#nodes tr[data-mac="${n.mac}"]`);
    if (!tr) {
      tr = el("tr", { "data-mac": n.mac });
      const btn = el("button", { type: "button", class: "node", "aria-controls": "history", "aria-expanded": "false" });
      btn.addEventListener("click", () => showHistory(n.mac));
      tr.append(el("th", { scope: "row" }, btn));
      for (const c of ["mac", "ip", "lifecycle", "profile", "since", "last"]) {
        tr.append(el("td", { class: c }));
      }
    }
    const btn = tr.querySelector("button.node");
    btn.textContent = n.hostname || "(discovered)";
    btn.setAttribute("aria-expanded", String(selected === n.mac));
    tr.querySelector(".mac").textContent = n.mac;
    tr.querySelector(".ip").textContent = n.ip || "–";
    tr.querySelector(".lifecycle").replaceChildren(...stateBadge(n));
    tr.querySelector(".profile").textContent = n.profile || "–";
    tr.dataset.since = String(lastChange(n).getTime());
    tr.dataset.state = n.state;
    const h = n.history || [];
    const last = h[h.length - 1];
    const lastCell = tr.querySelector(".last");
    lastCell.textContent = last ? `${change(last)}: ${cause(last)}` : "–";
    lastCell.title = last ? new Date(last.at).toLocaleString() : "";
    return tr;
  }

  function render() {
    const list = [...nodes.values()].sort(order);
    const body = $("#nodes tbody");
    const rows = list.map(row);
    // Append only when the order changed: moving a row would take the
    // keyboard focus off its button.
    const same = rows.length === body.children.length && rows.every((r, i) => body.children[i] === r);
    if (!same) {
      body.replaceChildren(...rows);
    }
    $("#nodes-note").hidden = list.length > 0;
    renderProgress(list);
    tick();
    if (selected) renderHistory();
  }

  function renderProgress(list) {
    const by = {};
    for (const n of list) by[n.state] = (by[n.state] || 0) + 1;
    const total = list.filter((n) => !UNCOUNTED.has(n.state)).length;
    const ready = by.ready || 0;
    const bar = $("#progress");
    bar.max = Math.max(total, 1);
    bar.value = ready;
    $("#progress-text").textContent = `${ready} of ${total} ready`;
    $("#counts").replaceChildren(
      ...STATES.filter((s) => by[s]).map((s) => el("li", {}, el("span", { class: `state s-${s}` }, s), ` ${by[s]}`)),
    );
  }

  // tick keeps "in state" current between events.
  function tick() {
    const now = Date.now();
    for (const tr of document.querySelectorAll("#nodes tbody tr")) {
      tr.querySelector(".since").textContent = duration(now - Number(tr.dataset.since));
    }
  }

  function showHistory(mac) {
    selected = selected === mac ? "" : mac;
    render();
    $("#history").hidden = !selected;
    if (selected) $("#history").scrollIntoView({ block: "nearest" });
  }

  function renderHistory() {
    const n = nodes.get(selected);
    if (!n) {
      selected = "";
      $("#history").hidden = true;
      return;
    }
    $("#history-node").textContent = n.hostname ? `${n.hostname} (${n.mac})` : n.mac;
    const rows = [...(n.history || [])].reverse().map((ev) =>
      el("tr", {},
        el("td", {}, el("time", { datetime: ev.at }, new Date(ev.at).toLocaleString())),
        el("td", {}, change(ev)),
        el("td", {}, cause(ev)),
        el("td", {}, ev.actor || "–")));
    $("#history tbody").replaceChildren(...rows);
  }

  // --- health ---

  async function health() {
    let rep;
    try {
      rep = await getJSON("api/health");
    } catch (e) {
      return;
    }
    const rows = (rep.checks || []).map((c) =>
      el("tr", { "data-check": c.name, class: c.ok ? "ok" : "fail" },
        el("th", { scope: "row" }, c.name),
        el("td", {}, el("span", { class: c.ok ? "badge ok" : "badge fail" }, c.ok ? "OK" : "FAIL")),
        el("td", {}, c.detail, ...(c.ok ? [] : [el("br"), el("span", { class: "fix" }, "Fix: " + c.fix)]))));
    $("#health tbody").replaceChildren(...rows);
    const at = new Date(rep.checked_at).toLocaleTimeString();
    $("#health-note").textContent = rows.length
      ? `Checked at ${at}, as bootstrapd doctor checks them.`
      : "The site has no router, Vault or Nomad block: nothing to check.";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#history-close").addEventListener("click", () => showHistory(selected));
    start();
    health();
    setInterval(health, 15000);
    setInterval(tick, 1000);
  });
})();
