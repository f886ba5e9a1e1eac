// sidemesh dashboard: one page, four views, refreshed when the control plane says so
// (server-sent events). Every request goes to the control plane that served the page.
"use strict";

const $ = (id) => document.getElementById(id);
const views = ["graph", "workloads", "config", "traces"];
let selected = null; // {node, source} of the graph's detail panel
let lastVersion = null;
let convergedAt = null;
const BANNER_AFTER_CONVERGED_MS = 6000;

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

async function json(path) {
  const reply = await fetch(path);
  if (!reply.ok) throw new Error(`${path}: ${reply.status}`);
  return reply.json();
}

function current() {
  const name = location.hash.replace("#", "");
  return views.includes(name) ? name : "graph";
}

function show() {
  const name = current();
  for (const v of views) $(`view-${v}`).hidden = v !== name;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === name);
  refresh();
}

function refresh() {
  const name = current();
  const load = { graph: loadGraph, workloads: loadWorkloads, config: loadConfig, traces: loadTraces }[name];
  load().catch((e) => console.warn(e));
}

// --- the mesh's state, pushed ---------------------------------------------------------

function onOverview(o) {
  $("summary").textContent =
    `mesh version ${o.meshVersion} · ${o.services} services · ${o.workloads} workloads · ${o.gateways} gateways`;
  banner(o);
  const refused = $("refused");
  if (o.refusedEdit) {
    refused.hidden = false;
    refused.textContent = `last edit of ${o.refusedEdit.file} refused, the mesh keeps running version ${o.meshVersion}: ${o.refusedEdit.error}`;
  } else {
    refused.hidden = true;
  }
  refresh();
}

function banner(o) {
  const c = o.convergence;
  const el = $("banner");
  const done = c.applied === c.connected && c.rejected.length === 0;
  if (lastVersion !== null && o.meshVersion !== lastVersion) convergedAt = null;
  const changed = lastVersion !== null && o.meshVersion !== lastVersion;
  lastVersion = o.meshVersion;
  if (done && convergedAt === null && !changed && el.hidden) return;
  if (done && convergedAt === null) convergedAt = Date.now();
  if (done && Date.now() - convergedAt > BANNER_AFTER_CONVERGED_MS) {
    el.hidden = true;
    return;
  }
  let text = `version ${c.meshVersion} applied to ${c.applied}/${c.connected} proxies`;
  for (const r of c.rejected) text += `; ${r.node} rejected it (${r.type}): ${r.detail}`;
  el.textContent = done ? `${text} ✓` : text;
  el.classList.toggle("done", done);
  el.hidden = false;
}

function listen() {
  const events = new EventSource("/v1/events");
  events.addEventListener("overview", (e) => {
    $("live").classList.add("on");
    onOverview(JSON.parse(e.data));
  });
  events.onerror = () => $("live").classList.remove("on");
}

// --- graph -------------------------------------------------------------------------------

async function loadGraph() {
  const win = $("window").value;
  const by = $("by").value;
  const reply = await fetch(`/v1/dashboard/graph.svg?window=${encodeURIComponent(win)}&by=${by}`);
  $("graph-canvas").innerHTML = await reply.text();
  for (const node of document.querySelectorAll("#graph-canvas .node")) {
    node.addEventListener("click", () => select({ node: node.dataset.id, source: null }));
  }
  for (const edge of document.querySelectorAll("#graph-canvas .edge")) {
    edge.addEventListener("click", () => select({ node: edge.dataset.destination, source: edge.dataset.source }));
  }
  mark();
  if (selected) await loadDetail();
}

function mark() {
  for (const g of document.querySelectorAll("#graph-canvas .node, #graph-canvas .edge")) {
    const isNode = g.classList.contains("node");
    const hit = selected && (isNode
      ? !selected.source && g.dataset.id === selected.node
      : selected.source === g.dataset.source && selected.node === g.dataset.destination);
    g.classList.toggle("selected", Boolean(hit));
  }
}

function select(which) {
  selected = which;
  mark();
  loadDetail().catch((e) => console.warn(e));
}

async function loadDetail() {
  const query = new URLSearchParams({ node: selected.node });
  if (selected.source) query.set("source", selected.source);
  const d = await json(`/v1/dashboard/detail?${query}`);
  const aside = $("detail");
  aside.hidden = false;
  const pct = (v) => (v === null ? null : v * 100);
  aside.innerHTML = `<h3>${esc(d.id)}</h3>
    ${chart("requests/s", d.series.map((p) => p.rps))}
    ${chart("success %", d.series.map((p) => pct(p.successRate)))}
    ${chart("p99 ms", d.series.map((p) => p.p99Ms))}
    <div class="chart-label">routes</div><div>${d.routes.map(esc).join("<br>") || "none (every request to the service)"}</div>
    <div class="chart-label">policies</div><div>${d.policies.map(esc).join("<br>") || "none"}</div>
    <div class="chart-label">recent failed requests</div>
    <div>${d.failures.map((f) => `<div class="bad">${f.status ?? "-"} ${esc(f.url)}: ${esc(f.reason)}</div>`).join("") || "none among the traces kept"}</div>`;
}

function chart(label, values) {
  const w = 330, h = 40;
  const present = values.filter((v) => v !== null && v !== undefined);
  const last = present.length ? present[present.length - 1] : null;
  if (present.length < 2) {
    return `<div class="chart-label">${label}: ${last === null ? "no data yet" : last.toFixed(1)}</div>`;
  }
  const max = Math.max(...present), min = Math.min(0, ...present);
  const span = max - min || 1;
  const step = w / (values.length - 1);
  const points = values
    .map((v, i) => (v === null || v === undefined ? null : `${(i * step).toFixed(1)},${(h - ((v - min) / span) * (h - 4) - 2).toFixed(1)}`))
    .filter(Boolean).join(" ");
  return `<div class="chart-label">${label}: ${last.toFixed(1)} (max ${max.toFixed(1)})</div>
    <svg class="chart" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><polyline fill="none" stroke="#0969da" stroke-width="1.5" points="${points}"/></svg>`;
}

// --- workloads and proxies ---------------------------------------------------------------

async function loadWorkloads() {
  const [proxies, local] = await Promise.all([
    json("/v1/proxies"),
    fetch("/v1/local/workloads").then((r) => (r.ok ? r.json() : { workloads: [] })),
  ]);
  const processes = Object.fromEntries(local.workloads.map((w) => [w.name, w]));
  const types = ["clusters", "endpoints", "listeners", "routes"];
  const rows = proxies.proxies.map((p) => {
    const name = p.node.split("~")[1];
    const w = processes[name];
    const sync = types.map((t) => {
      const s = p.types[t];
      if (!s) return `<td class="muted">-</td>`;
      const ok = s.sentVersion === s.ackedVersion;
      return `<td class="${ok ? "ok" : "warn"}" title="sent ${esc(s.sentVersion)}, ACKed ${esc(s.ackedVersion)}">${ok ? "synced" : "pending"}</td>`;
    }).join("");
    const nack = types.map((t) => p.types[t]?.lastNack).find(Boolean);
    const cert = p.certificate;
    const restarts = w ? (w.app?.restarts ?? 0) + (w.sidecar?.restarts ?? 0) : "-";
    return `<tr data-node="${esc(p.node)}"><td>${esc(name)}</td>
      <td class="${p.connected ? "ok" : "bad"}">${p.connected ? "connected" : "gone"}</td>
      <td>${p.stateVersion}</td>${sync}
      <td class="${nack ? "bad" : "muted"}">${nack ? esc(nack.error) : "none"}</td>
      <td>${cert ? esc(cert.identity) : "-"}</td>
      <td>${cert ? `${Math.round(cert.expiresInSeconds / 60)} min` : "-"}</td>
      <td>${restarts}</td>
      <td>${w ? esc(w.app?.state ?? "gateway") : "-"}</td></tr>`;
  });
  $("workloads-table").innerHTML = `<tr><th>workload</th><th>xDS</th><th>mesh version</th>
    ${types.map((t) => `<th>${t}</th>`).join("")}<th>last NACK</th><th>identity</th>
    <th>certificate expires in</th><th>restarts</th><th>app</th></tr>${rows.join("")}`;
}

// --- config ---------------------------------------------------------------------------------

async function loadConfig() {
  const [state, proxies] = await Promise.all([json("/v1/state"), json("/v1/proxies")]);
  const source = state.source;
  $("config-source").innerHTML = source
    ? `<p>from <code>${esc(source.file)}</code>, mesh version ${state.version}; ${source.rejectedEdits} edits refused${source.lastError ? `; the last: <span class="bad">${esc(source.lastError)}</span>` : ""}</p>`
    : `<p>mesh version ${state.version}</p>`;
  $("services-table").innerHTML = `<tr><th>service</th><th>ports</th><th>mTLS</th><th>workloads</th><th>policies</th></tr>` +
    state.services.map((s) => `<tr><td>${esc(s.name)}.${esc(s.namespace)}</td>
      <td>${s.ports.map((p) => `${p.port}/${esc(p.protocol)}`).join(", ")}</td><td>${esc(s.mtlsMode)}</td>
      <td>${s.workloads.map(esc).join(", ")}</td>
      <td>${[...s.authorizationPolicies, ...s.requestAuthentications].map(esc).join(", ") || "none"}</td></tr>`).join("");
  $("policies").textContent = state.policies.length ? JSON.stringify(state.policies, null, 2) : "none";
  const select = $("proxy-select");
  const chosen = select.value;
  select.innerHTML = `<option value="">a proxy…</option>` + proxies.proxies.map((p) => `<option>${esc(p.node)}</option>`).join("");
  select.value = chosen;
  if (chosen) {
    const sent = await json(`/v1/proxies/${encodeURIComponent(chosen)}/config`);
    $("proxy-config").textContent = JSON.stringify(sent, null, 2);
  }
}

// --- traces ---------------------------------------------------------------------------------

async function loadTraces() {
  const data = await json("/v1/traces?limit=25");
  $("traces-table").innerHTML = `<tr><th>trace</th><th>root</th><th>duration</th><th>spans</th><th>services</th><th></th></tr>` +
    data.traces.map((t) => `<tr class="clickable" data-trace="${esc(t.traceId)}"><td><code>${esc(t.traceId)}</code></td>
      <td>${esc(t.rootService)}: ${esc(t.rootName)}</td><td>${t.durationMs.toFixed(1)} ms</td><td>${t.spans}</td>
      <td>${t.services.map(esc).join(", ")}</td><td class="bad">${t.error ? "error" : ""}</td></tr>`).join("");
  for (const row of document.querySelectorAll("#traces-table tr[data-trace]")) {
    row.addEventListener("click", () => loadWaterfall(row.dataset.trace));
  }
}

async function loadWaterfall(id) {
  const t = await json(`/v1/traces/${encodeURIComponent(id)}`);
  const byParent = {};
  const ids = new Set(t.spans.map((s) => s.spanId));
  for (const s of t.spans) (byParent[ids.has(s.parentSpanId) ? s.parentSpanId : ""] ??= []).push(s);
  const rows = [];
  const walk = (parent, depth) => {
    for (const s of (byParent[parent] ?? []).sort((a, b) => a.startTimeUnixNano - b.startTimeUnixNano)) {
      const left = ((s.startTimeUnixNano - t.startTimeUnixNano) / 1e6 / t.durationMs) * 100;
      const width = Math.max((s.durationMs / t.durationMs) * 100, 0.5);
      rows.push(`<div class="span-row"><div class="span-name" style="padding-left:${depth}rem">${esc(s.service)} ${esc(s.kind)}: ${esc(s.name)}</div>
        <div class="span-track"><div class="span-bar ${s.error ? "error" : s.kind}" style="left:${left}%;width:${width}%"></div></div>
        <div>${s.durationMs.toFixed(1)} ms ${s.statusCode ?? ""}</div></div>`);
      walk(s.spanId, depth + 1);
    }
  };
  walk("", 0);
  $("waterfall").innerHTML = `<div class="waterfall"><b>trace ${esc(t.traceId)}</b>: ${t.durationMs.toFixed(1)} ms, ${t.spans.length} spans${rows.join("")}</div>`;
}

window.addEventListener("hashchange", show);
$("window").addEventListener("change", refresh);
$("by").addEventListener("change", refresh);
$("proxy-select").addEventListener("change", refresh);
show();
listen();
