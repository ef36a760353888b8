// The control room's page: plain JavaScript over the JSON interface (GET /api/state once a second,
// GET /api/events as server-sent events, POST /api/actions), the same interface the tests drive.
"use strict";

const SPAN = 120; // seconds of timeline shown at most
const SHORTEST = 15; // seconds shown at least, so that a new run's first seconds are not stretched
const faultRows = JSON.parse(document.getElementById("fault-rows").textContent);
const cards = new Map(); // node name -> its card's elements, made once and updated in place
let buckets = new Map(); // second of the run -> {ok, bad}
let faults = new Map(); // fault id -> its last event
let shownUp = null; // whether the page last saw a cluster: the start form folds away while one runs
let clock = {t: 0, at: performance.now()}; // the run's clock, from the latest event seen

function csrfToken() {
  const found = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="));
  return found ? found.slice("csrftoken=".length) : "";
}

async function act(body) {
  const message = document.getElementById("message");
  try {
    const answer = await fetch("/api/actions", {
      method: "POST", body: JSON.stringify(body),
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrfToken()},
    });
    const data = await answer.json();
    message.textContent = answer.status === 202 ? `${body.action} sent (event ${data.id})` : data.error;
    message.className = answer.status === 202 ? "ok" : "error";
  } catch (error) {
    message.textContent = `the control room did not answer: ${error}`;
    message.className = "error";
  }
}

function upOptions(form) {
  const options = {};
  for (const input of form.querySelectorAll("input[name]")) {
    const kind = input.dataset.kind;
    if (kind === "flag") {
      if (input.checked) options[input.name] = true;
    } else if (input.value.trim() !== "") {
      const value = input.value.trim();
      if (kind === "number") options[input.name] = Number(value);
      else if (kind === "list") options[input.name] = value.split(",").map((item) => item.trim()).filter(Boolean);
      else options[input.name] = value;
    }
  }
  return options;
}

function faultButtons(container, target) {
  for (const row of faultRows.filter((r) => r.target === (target !== null))) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = row.name;
    button.className = `fault fault-${row.name}`;
    button.setAttribute("aria-label", target ? `${row.name} ${target}` : row.name);
    button.addEventListener("click", () => {
      const body = {action: row.name};
      if (target) body.target = target;
      for (const field of row.required) {
        const value = prompt(`${row.name}: ${field}?`);
        if (value === null) return;
        body[field] = row.fields[field] === "int" ? Number(value) : value;
      }
      act(body);
    });
    container.append(button);
  }
}

function card(node) {
  if (cards.has(node.name)) return cards.get(node.name);
  const box = document.createElement("article");
  box.className = `node kind-${node.kind}`;
  box.id = `node-${node.name}`;
  box.innerHTML = `<h4></h4><p class="what"><span class="state"></span> <span class="role"></span></p>
    <div class="share"><div class="bar"></div><span class="share-text"></span></div><div class="buttons"></div>`;
  box.querySelector("h4").textContent = node.name;
  if (node.kind !== "haproxy") faultButtons(box.querySelector(".buttons"), node.name);
  if (node.kind !== "instance") box.querySelector(".share").remove();
  const group = node.kind === "haproxy" ? "haproxy" : node.kind === "instance" ? "instances" : "stores";
  let row = document.getElementById(`row-${group}`);
  if (!row) {
    row = document.createElement("div");
    row.id = `row-${group}`;
    row.className = "row";
    document.getElementById("topology").append(row);
    [...document.getElementById("topology").children]
      .sort((a, b) => ["row-haproxy", "row-instances", "row-stores"].indexOf(a.id)
                    - ["row-haproxy", "row-instances", "row-stores"].indexOf(b.id))
      .forEach((child) => child.parentNode.append(child));
  }
  row.append(box);
  cards.set(node.name, box);
  return box;
}

function showNodes(nodes) {
  const names = new Set(nodes.map((node) => node.name));
  for (const [name, box] of cards) {
    if (!names.has(name)) { box.remove(); cards.delete(name); }
  }
  for (const node of nodes) {
    const box = card(node);
    box.dataset.state = node.state;
    box.querySelector(".state").textContent = node.state;
    box.querySelector(".role").textContent = node.role || "";
    if (node.share !== null) {
      box.querySelector(".bar").style.width = `${Math.round(node.share * 100)}%`;
      box.querySelector(".share-text").textContent = `${Math.round(node.share * 100)} % of requests (5 s)`;
    }
  }
}

function showLoad(load) {
  const text = (value, digits = 0) => (value === null || value === undefined ? "-" : Number(value).toFixed(digits));
  document.getElementById("users-now").textContent = load.running ? load.users : "not running";
  document.getElementById("rps").textContent = text(load.rps, 1);
  document.getElementById("latency").textContent = `${text(load.p50_ms)} / ${text(load.p99_ms)}`;
  for (const key of ["failed", "sessions_lost", "writes_acked", "writes_lost", "messages_missed",
    "messages_seen_twice", "sessions_unconfirmed", "writes_unconfirmed"]) {
    document.getElementById(key).textContent = text(load[key]);
  }
  document.getElementById("presence_accuracy").textContent =
    load.presence_accuracy === null ? "-" : `${Math.round(load.presence_accuracy * 100)} %`;
}

function showRun(run) {
  const line = document.getElementById("run-line");
  if (!run) { line.textContent = "No run."; return; }
  const verdict = run.verdict ? (run.verdict.held ? "the hypothesis held" : "the hypothesis did NOT hold") : null;
  line.textContent = `Run ${run.id} (${run.experiment}, started ${run.started}): `
    + (verdict || (run.experiment === "control" ? "recording" : "running or ended without a verdict"));
  if (run.verdict) {
    const link = document.createElement("a");
    link.href = `/runs/${run.id}/report.html`;
    link.textContent = "its report";
    line.append(" ", link);
  }
}

async function poll() {
  try {
    const state = await (await fetch("/api/state")).json();
    const cluster = state.cluster;
    const form = document.querySelector("#up-form details");
    if (Boolean(cluster) !== shownUp) { shownUp = Boolean(cluster); form.open = !cluster; }
    document.getElementById("cluster-line").textContent = cluster
      ? `${cluster.url}: ${cluster.instances} instances (${cluster.lb}), sessions ${cluster.sessions}, `
        + `presence ${cluster.presence}, database ${cluster.db}`
      : "No cluster.";
    showNodes(state.nodes);
    showRun(state.run);
    showLoad(state.load);
  } catch (error) {
    document.getElementById("cluster-line").textContent = `the control room did not answer: ${error}`;
  }
  draw();
}

function seen(event) {
  if (event.type === "header") { buckets = new Map(); faults = new Map(); clock = {t: 0, at: performance.now()}; }
  const t = event.completed ?? event.at ?? event.ended ?? event.effect ?? event.sent ?? 0;
  if (t > clock.t) clock = {t, at: performance.now()};
  if (event.type === "op" && event.completed !== null) {
    const second = Math.floor(event.completed);
    const bucket = buckets.get(second) || {ok: 0, bad: 0};
    bucket[event.outcome === "ok" ? "ok" : "bad"] += 1;
    buckets.set(second, bucket);
  } else if (event.type === "fault") {
    faults.set(event.id, event);
  } else if (event.type === "sample" && event.error) {
    const message = document.getElementById("message");
    message.textContent = `${event.action} failed: ${event.error}`;
    message.className = "error";
  }
}

function draw() {
  const canvas = document.getElementById("timeline");
  const g = canvas.getContext("2d");
  const now = clock.t + (performance.now() - clock.at) / 1000;
  const first = Math.min(now, ...buckets.keys());
  const span = Math.min(SPAN, Math.max(SHORTEST, now - first + 2));
  const start = now - span;
  const x = (t) => ((t - start) / span) * canvas.width;
  let top = 1;
  for (const [second, b] of buckets) {
    if (second < start - 1) buckets.delete(second); else top = Math.max(top, b.ok + b.bad);
  }
  g.clearRect(0, 0, canvas.width, canvas.height);
  const list = document.getElementById("fault-list");
  list.replaceChildren();
  for (const fault of faults.values()) {
    const end = fault.ended ?? now;
    if (end >= start) {
      g.fillStyle = "rgba(220, 60, 40, 0.18)";
      g.fillRect(x(fault.sent), 0, Math.max(2, x(end) - x(fault.sent)), canvas.height);
      if (fault.effect !== null) { // when it took effect: a line across the band
        g.fillStyle = "rgba(160, 32, 16, 0.6)";
        g.fillRect(x(fault.effect), 0, 2, canvas.height);
      }
      g.fillStyle = "#a02010";
      g.fillText(`${fault.action} ${fault.target ?? ""}`, Math.min(x(fault.sent) + 3, canvas.width - 70), 12);
    }
    const item = document.createElement("li");
    const at = (value) => (value === null ? "-" : `${value.toFixed(1)} s`);
    item.textContent = `${fault.action} ${fault.target ?? ""}: sent ${at(fault.sent)}, took effect `
      + `${at(fault.effect)}, ended ${at(fault.ended)}` + (fault.error ? ` (refused: ${fault.error})` : "");
    list.append(item);
  }
  const height = canvas.height - 16;
  for (const [second, b] of buckets) {
    const w = Math.max(1, canvas.width / span - 1);
    const okH = (b.ok / top) * height;
    const badH = (b.bad / top) * height;
    g.fillStyle = "#2a7ab0";
    g.fillRect(x(second), canvas.height - okH, w, okH);
    g.fillStyle = "#d08000";
    g.fillRect(x(second), canvas.height - okH - badH, w, badH);
  }
  g.fillStyle = "#333";
  g.fillText(`${top} requests/s (blue ok, orange not); last ${Math.round(span)} s`, 4, canvas.height - 4);
}

document.getElementById("up-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act({action: "up", options: upOptions(event.target)});
});
document.getElementById("down-button").addEventListener("click", () => act({action: "down"}));
document.getElementById("load-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act({action: "load", users: Number(document.getElementById("users").value)});
});
for (const form of document.querySelectorAll(".experiment-form")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act({action: "run", experiment: form.dataset.experiment, args: upOptions(form)});
  });
}
document.getElementById("load-stop").addEventListener("click", () => act({action: "load", users: 0}));
faultButtons(document.getElementById("global-faults"), null);

new EventSource("/api/events").onmessage = (message) => seen(JSON.parse(message.data));
poll();
setInterval(poll, 1000);
