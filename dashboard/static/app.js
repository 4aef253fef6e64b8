// WanFarm dashboard: polls the REST API every second and redraws only what changed.
// Vanilla JS, no build step, nothing fetched from outside the farm.
"use strict";

const KEY_STORE = "wanfarm.apiKey";
const POLL_MS = 1000;
const STATS_EVERY_MS = 10000;
const ACTIVE_LIMIT = 50;
const FINISHED_LIMIT = 20;
const VIDEO = /\.(mp4|webm|mov|mkv)$/i;
const IMAGE = /\.(png|jpe?g|webp|gif)$/i;

let apiKey = localStorage.getItem(KEY_STORE) || "";
let needKey = false;
let polling = false;
let statsAt = 0;
const errors = { poll: null, stats: null, submit: null, action: null };
const rowHtml = new WeakMap();
let agentsHtml = "";
let autoscaleHtml = "";
let newestFinished = null;

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

// --- the API ------------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey) headers.set("Authorization", `Bearer ${apiKey}`);
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { error: text.slice(0, 300) };
  }
  if (response.status === 401) askForKey(apiKey ? "That key was refused: enter another." : "");
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function describe(error) {
  if (!(error instanceof ApiError)) return `Cannot reach the farm: ${error.message || error}`;
  const detail = error.body.detail;
  const lines = [`${error.status}: ${error.message}`];
  if (Array.isArray(detail)) lines.push(...detail.map((d) => `• ${typeof d === "string" ? d : JSON.stringify(d)}`));
  else if (detail) lines.push(`• ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  if (error.body.hint) lines.push(`Hint: ${error.body.hint}`);
  return lines.join("\n");
}

function setError(slot, message) {
  errors[slot] = message;
  const shown = Object.values(errors).filter(Boolean);
  const box = document.getElementById("errors");
  box.textContent = shown.join("\n\n");
  box.hidden = shown.length === 0;
}

// --- polling ------------------------------------------------------------------------------------

async function refresh() {
  if (polling || needKey) return;
  polling = true;
  try {
    const [running, queued, finished, agents, autoscale] = await Promise.all([
      api(`/v1/jobs?state=running&limit=${ACTIVE_LIMIT}`),
      api(`/v1/jobs?state=queued&limit=${ACTIVE_LIMIT}`),
      api(`/v1/jobs?state=succeeded&state=failed&state=canceled&limit=${FINISHED_LIMIT}`),
      api("/v1/agents"),
      api("/v1/autoscale"),
    ]);
    renderAgents(agents);
    renderAutoscale(autoscale);
    renderActive([...running.jobs, ...queued.jobs], queued.next !== null);
    renderFinished(finished.jobs);
    setError("poll", null);
    document.getElementById("live").textContent = `live · updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) setError("poll", describe(error));
    document.getElementById("live").textContent = "not updating";
  } finally {
    polling = false;
  }
  if (!needKey && Date.now() - statsAt > STATS_EVERY_MS) refreshStats();
}

async function refreshStats() {
  statsAt = Date.now();
  try {
    const stats = await api("/v1/stats?window_s=3600");
    drawBars(document.getElementById("chart-throughput"), stats.finished);
    drawLine(document.getElementById("chart-utilisation"), stats.utilisation);
    setError("stats", null);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) setError("stats", describe(error));
  }
}

// --- agents -------------------------------------------------------------------------------------

function renderAgents(agents) {
  const html = agents.length
    ? agents.map(agentCard).join("")
    : '<p class="muted">No agents yet: start one on a GPU node, or declare GPUs for a CPU node.</p>';
  if (html === agentsHtml) return;
  agentsHtml = html;
  document.getElementById("agents").innerHTML = html;
}

function agentCard(agent) {
  const used = agent.vram_total - agent.vram_free;
  const share = agent.vram_total ? Math.min(100, (100 * used) / agent.vram_total) : 0;
  const state = agent.busy ? '<span class="badge busy">busy</span>' : '<span class="badge idle">idle</span>';
  const declared = agent.declared ? '<span class="badge declared" title="inventory given in configuration, not probed">declared</span>' : "";
  const draining = agent.draining
    ? '<span class="badge draining" title="takes no new work; leaves once its job has stopped or ended">draining</span>'
    : "";
  const held = agent.quarantine;
  // A quarantined agent gets no new work until a probe job or an admin releases it.
  const quarantine = held
    ? `<span class="badge quarantined" title="${esc(held.reason)}">quarantined: ${esc(held.kind)}</span>`
    : "";
  const since = held ? new Date(held.since * 1000).toLocaleTimeString() : "";
  const why = held ? `<dt>Quarantine</dt><dd class="quarantine">${esc(held.reason)} (since ${esc(since)})</dd>` : "";
  // The node's name is what `wanfarm drain NODE` takes; shown when it is not the hostname.
  const node = agent.node_name && agent.node_name !== agent.hostname ? ` (${esc(agent.node_name)})` : "";
  const gpuClass = agent.gpu_class ? `<dt>Class</dt><dd class="gpu-class">${esc(agent.gpu_class)}</dd>` : "";
  return `<article class="card${held ? " quarantined" : ""}${agent.draining ? " draining" : ""}" data-agent="${esc(agent.agent_id)}">
    <h3>${esc(agent.gpu_name)} ${state} ${draining} ${declared} ${quarantine}</h3>
    <div class="muted">${esc(agent.hostname)}${node} · GPU ${agent.gpu_index} · ${esc(agent.device)}</div>
    <div class="bar" title="VRAM used"><span style="width:${share.toFixed(1)}%"></span></div>
    <dl>
      <dt>VRAM</dt><dd>${gib(used)} / ${gib(agent.vram_total)} GiB</dd>
      ${gpuClass}
      <dt>Arch</dt><dd>${esc(agent.arch)} (sm ${esc(agent.capability)})</dd>
      <dt>Hot</dt><dd>${esc(agent.hot_model || "–")}</dd>
      <dt>Cached</dt><dd>${esc(agent.cached_models.join(", ") || "–")}</dd>
      <dt>Job</dt><dd class="id">${esc(agent.current_job || "–")}</dd>
      ${why}
    </dl>
  </article>`;
}

// --- autoscaling ----------------------------------------------------------------------------------

// Shown only on a farm given GPU classes (`wanfarm up --gpu-classes`): demand per class against its agents.
function renderAutoscale(view) {
  const panel = document.getElementById("autoscale-panel");
  panel.hidden = !view.enabled;
  if (!view.enabled) return;
  const html = view.classes.map(classRow).join("");
  if (html !== autoscaleHtml) {
    autoscaleHtml = html;
    document.getElementById("autoscale-rows").innerHTML = html;
  }
  document.getElementById("autoscale-released").textContent =
    `${view.released} agent(s) released since the controller started (idle past their timeout, or drained).`;
}

function classRow(demand) {
  const short = demand.wanted > demand.busy + demand.idle ? " short" : "";
  return `<tr data-class="${esc(demand.gpu_class)}">
    <td class="id">${esc(demand.gpu_class)}</td><td>${esc(demand.gpu)}</td>
    <td class="agents">${demand.busy} / ${demand.idle}</td>
    <td class="waiting">${demand.waiting}</td>
    <td class="wanted${short}" title="GPUs asked of the cluster's autoscaler (its agents' included)">${demand.wanted} / ${demand.max_gpus}</td>
  </tr>`;
}

// --- jobs ---------------------------------------------------------------------------------------

function renderActive(jobs, more) {
  syncRows(document.getElementById("active-rows"), jobs, activeRow);
  const empty = document.getElementById("active-empty");
  empty.hidden = jobs.length > 0 && !more;
  empty.textContent = jobs.length ? `Showing the newest ${ACTIVE_LIMIT} queued jobs.` : "No pending or running jobs.";
}

function renderFinished(jobs) {
  const newest = jobs.length ? jobs[0].id : "";
  if (newest !== newestFinished) statsAt = 0; // a job just ended: redraw the charts now
  newestFinished = newest;
  syncRows(document.getElementById("finished-rows"), jobs, finishedRow);
  document.getElementById("finished-empty").hidden = jobs.length > 0;
}

function activeRow(job) {
  const { step, total, phase } = job.progress;
  const share = total ? (100 * step) / total : 0;
  // A preempted job waits with the steps it keeps (its checkpoint).
  const kept = job.state === "queued" && phase === "preempted" ? `${step}/${total} kept` : "–";
  const progress = job.state === "running"
    ? `${step}/${total} ${esc(phase)}<div class="bar"><span style="width:${share.toFixed(1)}%"></span></div>`
    : kept;
  // A running job's attempts count the one it runs; a queued job's, those before its next.
  const tries = job.state === "running" ? job.attempts : job.attempts + 1;
  const preempted = job.preemptions
    ? ` <span class="muted" title="stopped for a job of a higher priority, not charged">preempted ${job.preemptions}×</span>`
    : "";
  return `<td class="id" title="${esc(job.id)}">${esc(job.id)}</td>
    <td><span class="state state-${esc(job.state)}">${esc(job.state)}</span>${tries > 1 ? ` <span class="muted">try ${tries}</span>` : ""}${preempted}</td>
    <td>${esc(job.model)}</td><td>${esc(job.owner)}</td><td>${job.priority}</td>
    <td class="progress">${progress}</td><td>${eta(job.eta)}</td>
    <td class="wait">${esc(job.wait_reason || "")}</td>
    <td><button type="button" class="cancel" data-id="${esc(job.id)}">Cancel</button></td>`;
}

function finishedRow(job) {
  const output = job.outputs[0];
  let preview = '<span class="muted">–</span>';
  let link = job.error ? `<span class="muted">${esc(job.error)}</span>` : "–";
  if (output) {
    const url = esc(mediaUrl(output.url));
    if (VIDEO.test(output.name)) preview = `<video muted preload="metadata" src="${url}"></video>`;
    else if (IMAGE.test(output.name)) preview = `<img alt="${esc(output.name)}" src="${url}">`;
    link = job.outputs.map((o) => `<a class="output" href="${esc(mediaUrl(o.url))}" target="_blank" rel="noopener">${esc(o.name)}</a>`).join("<br>");
  }
  const finishedAt = job.finished_at ? new Date(job.finished_at * 1000).toLocaleTimeString() : "";
  return `<td class="preview">${preview}</td><td class="id" title="${esc(job.id)}">${esc(job.id)}</td>
    <td><span class="state state-${esc(job.state)}">${esc(job.state)}</span></td>
    <td>${esc(job.model)}</td><td>${esc(job.owner)}</td><td>${finishedAt}</td><td>${link}</td>`;
}

// Keyed update: a row is rebuilt only when its HTML changes, so previews do not reload each poll.
function syncRows(tbody, jobs, render) {
  const existing = new Map([...tbody.children].map((tr) => [tr.dataset.id, tr]));
  let previous = null;
  for (const job of jobs) {
    let tr = existing.get(job.id);
    existing.delete(job.id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.id = job.id;
    }
    const html = render(job);
    if (rowHtml.get(tr) !== html) {
      tr.innerHTML = html;
      rowHtml.set(tr, html);
    }
    tr.dataset.state = job.state;
    const expected = previous ? previous.nextSibling : tbody.firstChild;
    if (expected !== tr) tbody.insertBefore(tr, expected);
    previous = tr;
  }
  for (const tr of existing.values()) tr.remove();
}

// Local outputs are API paths behind the key; a <video src> cannot send a header, so the output
// route alone also accepts ?key=. Presigned (S3) URLs are used as they are.
function mediaUrl(url) {
  if (!apiKey || !url.startsWith("/")) return url;
  return `${url}${url.includes("?") ? "&" : "?"}key=${encodeURIComponent(apiKey)}`;
}

// --- charts -------------------------------------------------------------------------------------

const SVG_W = 300;
const SVG_H = 90;

function drawBars(host, counts) {
  const top = Math.max(1, ...counts);
  const width = SVG_W / counts.length;
  const bars = counts
    .map((n, i) => {
      const h = ((SVG_H - 14) * n) / top;
      return n ? `<rect x="${(i * width).toFixed(2)}" y="${(SVG_H - h).toFixed(2)}" width="${Math.max(width - 0.6, 0.5).toFixed(2)}" height="${h.toFixed(2)}"><title>${n} job(s), ${counts.length - i} min ago</title></rect>` : "";
    })
    .join("");
  const sum = counts.reduce((a, b) => a + b, 0);
  host.innerHTML = svg(`${bars}<text x="3" y="11">max ${top}/min · ${sum} in the hour</text>`);
}

function drawLine(host, shares) {
  const step = SVG_W / Math.max(shares.length - 1, 1);
  const segments = [];
  let current = [];
  shares.forEach((share, i) => {
    if (share === null) {
      if (current.length) segments.push(current);
      current = [];
      return;
    }
    current.push(`${(i * step).toFixed(2)},${(SVG_H - 2 - (SVG_H - 16) * share).toFixed(2)}`);
  });
  if (current.length) segments.push(current);
  const lines = segments
    .map((points) => (points.length === 1 ? [points[0], points[0].replace(/^([\d.]+)/, (x) => (Number(x) + 2).toFixed(2))] : points))
    .map((points) => `<polyline points="${points.join(" ")}"></polyline>`)
    .join("");
  const last = [...shares].reverse().find((s) => s !== null);
  const label = last === undefined ? "no samples yet" : `now ${Math.round(last * 100)}% busy`;
  host.innerHTML = svg(`${lines}<text x="3" y="11">${label}</text>`);
}

function svg(body) {
  return `<svg class="chart" viewBox="0 0 ${SVG_W} ${SVG_H}" preserveAspectRatio="none" role="img">${body}</svg>`;
}

// --- actions ------------------------------------------------------------------------------------

async function submitSettings(event) {
  event.preventDefault();
  let settings;
  try {
    settings = JSON.parse(document.getElementById("settings").value);
  } catch (error) {
    setError("submit", `The settings are not valid JSON: ${error.message}`);
    return;
  }
  const body = {
    settings,
    priority: Number(document.getElementById("priority").value || 50),
    wait_for_capacity: document.getElementById("wait-capacity").checked,
  };
  await submit(() => api("/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }));
}

async function submitQueue(event) {
  event.preventDefault();
  const file = document.getElementById("queue-file").files[0];
  if (!file) {
    setError("submit", "Choose a queue.zip first.");
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  const params = new URLSearchParams({
    priority: document.getElementById("priority").value || "50",
    wait_for_capacity: String(document.getElementById("wait-capacity").checked),
  });
  await submit(() => api(`/v1/queues?${params}`, { method: "POST", body: form }));
}

async function submit(send) {
  const result = document.getElementById("submit-result");
  try {
    const answer = await send();
    setError("submit", null);
    const ids = answer.jobs.map((j) => j.id).join(", ");
    const warnings = answer.warnings.length ? ` Warnings: ${answer.warnings.join("; ")}` : "";
    result.textContent = `Submitted ${answer.jobs.length} job(s): ${ids}.${warnings}`;
    refresh();
  } catch (error) {
    result.textContent = "";
    setError("submit", describe(error));
  }
}

async function cancelJob(event) {
  const button = event.target.closest("button.cancel");
  if (!button) return;
  button.disabled = true;
  try {
    await api(`/v1/jobs/${encodeURIComponent(button.dataset.id)}`, { method: "DELETE" });
    setError("action", null);
    refresh();
  } catch (error) {
    setError("action", describe(error));
    button.disabled = false;
  }
}

// --- the key ------------------------------------------------------------------------------------

function askForKey(message) {
  needKey = true;
  const form = document.getElementById("key-form");
  form.hidden = false;
  setError("poll", message || "This farm needs an API key: enter it above.");
  document.getElementById("key-input").focus();
}

function saveKey(event) {
  event.preventDefault();
  apiKey = document.getElementById("key-input").value.trim();
  localStorage.setItem(KEY_STORE, apiKey);
  document.getElementById("key-form").hidden = true;
  document.getElementById("forget-key").hidden = !apiKey;
  needKey = false;
  setError("poll", null);
  statsAt = 0;
  refresh();
}

function forgetKey() {
  localStorage.removeItem(KEY_STORE);
  apiKey = "";
  document.getElementById("forget-key").hidden = true;
  refresh();
}

// --- helpers ------------------------------------------------------------------------------------

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function gib(bytes) {
  return (bytes / 1024 ** 3).toFixed(1);
}

function eta(at) {
  if (!at) return "–";
  const seconds = Math.round(at - Date.now() / 1000);
  if (seconds <= 0) return "any moment";
  return seconds < 120 ? `in ${seconds} s` : `in ${Math.round(seconds / 60)} min`;
}

document.getElementById("submit-form").addEventListener("submit", submitSettings);
document.getElementById("queue-form").addEventListener("submit", submitQueue);
document.getElementById("active-rows").addEventListener("click", cancelJob);
document.getElementById("key-form").addEventListener("submit", saveKey);
document.getElementById("forget-key").addEventListener("click", forgetKey);
document.getElementById("forget-key").hidden = !apiKey;
refresh();
setInterval(refresh, POLL_MS);
