// The simulator's dashboard: reads /_sim/events (state) and drives the control API. No build step.
// The control token comes from the URL fragment (#token=...) or the sign-in form, lives in sessionStorage,
// and travels only in the X-Sim-Control-Token header. Every value from the server is set as textContent.
"use strict";

const HEADER = "X-Sim-Control-Token";
const STORE = "convai-sim-control-token";
const TOXIC_FIELDS = ["id", "kind", "session_id", "direction", "probability", "seed", "holding"];
let catalog = null;
let streamAbort = null;

function token() { return sessionStorage.getItem(STORE); }

function takeTokenFromFragment() {
  const match = /^#token=(.+)$/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(STORE, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);  // the token leaves the address bar and history
  }
}

function byId(id) { return document.getElementById(id); }

function setStatus(text) { byId("status").textContent = text; }

function showResult(text, failed) {
  const result = byId("result");
  result.textContent = text;
  result.className = failed ? "result error" : "result";
}

async function api(method, path, body) {
  const options = { method, headers: { [HEADER]: token() } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const answer = await response.json().catch(() => ({}));
  if (response.status === 401) { signOut("the token was refused"); }
  if (!response.ok) { throw new Error(answer.detail || `HTTP ${response.status}`); }
  return answer;
}

function signOut(why) {
  sessionStorage.removeItem(STORE);
  if (streamAbort) { streamAbort.abort(); streamAbort = null; }
  byId("board").hidden = true;
  byId("login").hidden = false;
  setStatus(why);
}

function row(tbody, cells, attributes) {
  const tr = document.createElement("tr");
  for (const [name, value] of Object.entries(attributes || {})) { tr.setAttribute(name, value); }
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) { td.appendChild(cell); } else { td.textContent = cell === null ? "" : String(cell); }
    tr.appendChild(td);
  }
  tbody.appendChild(tr);
}

function fill(tableId, rows) {
  const tbody = byId(tableId).tBodies[0];
  tbody.replaceChildren();
  rows.forEach((r) => row(tbody, r.cells, r.attributes));
}

function render(state) {
  fill("sessions", state.sessions.map((s) => ({
    cells: [s.session_id, s.state, s.transport, s.age.toFixed(1), s.key, s.turns, s.received, s.worker || "this one"],
    attributes: { "data-session-id": s.session_id, "data-state": s.state },
  })));
  fill("ended", state.ended_sessions.slice().reverse().map((s) => ({
    cells: [s.session_id, s.transport, s.close_code, s.disconnect_reason || "", s.close_reason],
    attributes: { "data-session-id": s.session_id, "data-close-reason": s.close_reason || "" },
  })));
  fill("keys", state.keys.map((k) => ({
    cells: [k.key, k.slots_in_use, k.concurrency_limit ?? "none", k.interactions, k.quota_left ?? "unlimited"],
  })));
  fill("toxics", state.toxics.map((t) => {
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "remove";
    remove.addEventListener("click", () => act(() => api("POST", "/_sim/toxics/remove", { id: t.id }),
                                               `removed ${t.id}`));
    const params = Object.entries(t).filter(([name]) => !TOXIC_FIELDS.includes(name))
      .map(([name, value]) => `${name}=${value}`).join(", ");
    return { cells: [t.id, params, t.session_id || "every session", t.direction, t.probability, t.seed,
                     t.holding, remove],
             attributes: { "data-toxic-id": t.id } };
  }));
  const queued = byId("queued");
  queued.replaceChildren();
  for (const f of state.faults.connect) {
    const li = document.createElement("li");
    li.textContent = `next ${f.times} connect(s): ${f.code}`;
    queued.appendChild(li);
  }
  const target = byId("target");
  const live = state.sessions.filter((s) => s.state === "open").map((s) => s.session_id);
  const listed = Array.from(target.options).slice(1).map((o) => o.value);
  if (listed.join() !== live.join()) {  // rebuilt only when the sessions change: an open list stays open
    const chosen = target.value;
    target.replaceChildren(new Option("every live session", ""));
    for (const id of live) { target.appendChild(new Option(id, id)); }
    target.value = live.includes(chosen) ? chosen : "";
  }
  setStatus(`live: ${live.length} session(s), ${state.slots.in_use} slot(s) in use; updated ` +
            new Date().toLocaleTimeString());
}

function fillFaults() {
  const select = byId("fault");
  const groups = [
    ["Disconnect reasons", catalog.disconnect_reasons.map((r) => [`reason:${r}`, r])],
    ["Error codes", catalog.error_codes.map((c) => [`code:${c}`, c])],
    ["Network faults", Object.entries(catalog.toxics).map(([kind, info]) => [
      `toxic:${kind}`, `${kind}${info.livekit_only ? " (LiveKit)" : ""}` +
        (Object.keys(info.params).length ? ` [${Object.keys(info.params).join(", ")}]` : "")])],
  ];
  select.replaceChildren();
  for (const [label, options] of groups) {
    const group = document.createElement("optgroup");
    group.label = label;
    for (const [value, text] of options) { group.appendChild(new Option(text, value)); }
    select.appendChild(group);
  }
}

function parseParams(text) {
  const params = {};
  for (const item of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const at = item.indexOf("=");
    if (at < 1) { throw new Error(`parameter ${item} is not name=value`); }
    const raw = item.slice(at + 1).trim();
    const number = Number(raw);
    params[item.slice(0, at).trim()] = raw !== "" && !Number.isNaN(number) ? number : raw;
  }
  return params;
}

async function act(call, done) {
  try {
    await call();
    showResult(done, false);
  } catch (error) {
    showResult(error.message, true);
  }
}

function inject() {
  const [kind, name] = byId("fault").value.split(/:(.*)/s);
  const session = byId("target").value || undefined;
  if (kind === "toxic") {
    return act(() => api("POST", "/_sim/toxics", { kind: name, session_id: session,
                                                   ...parseParams(byId("params").value) }),
               `network fault ${name} switched on`);
  }
  return act(() => api("POST", "/_sim/inject", { code: name, session_id: session }),
             `injected ${name} into ${session || "every live session"}`);
}

async function stream() {
  streamAbort = new AbortController();
  try {
    const response = await fetch("/_sim/events", { headers: { [HEADER]: token() }, signal: streamAbort.signal });
    if (response.status === 401) { signOut("the token was refused"); return; }
    if (!response.ok) { throw new Error(`HTTP ${response.status}`); }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) { break; }
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) { render(JSON.parse(data)); }
      }
    }
    setStatus("the simulator closed the stream; reconnecting");
  } catch (error) {
    if (streamAbort && streamAbort.signal.aborted) { return; }
    setStatus(`stream lost (${error.message}); reconnecting`);
  }
  setTimeout(() => { if (token()) { stream(); } }, 2000);
}

async function start() {
  byId("login").hidden = true;
  byId("board").hidden = false;
  try {
    catalog = await api("GET", "/_sim/catalog");
  } catch (error) {
    if (token()) { setStatus(error.message); }
    return;
  }
  fillFaults();
  stream();
}

document.addEventListener("DOMContentLoaded", () => {
  takeTokenFromFragment();
  byId("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(STORE, byId("token").value);
    byId("token").value = "";
    start();
  });
  byId("inject").addEventListener("click", inject);
  byId("reset").addEventListener("click", () => act(() => api("POST", "/_sim/reset"), "simulator reset"));
  if (token()) { start(); } else { signOut("sign in with the control token"); }
});
