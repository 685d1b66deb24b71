// The web view: the overview at /, a workflow at /workflow/ID. Each page
// asks for its data every second and draws it again; numbers have units and
// thousands separators, times are relative.
"use strict";

const view = document.getElementById("view");
const live = document.getElementById("live");
const nodeLabel = document.getElementById("node");

const escape = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const whole = (n) => Math.round(n).toLocaleString("en-US");
function rate(r) {
  if (r >= 1e6) return (r / 1e6).toFixed(2) + " M/s";
  if (r >= 1e4) return (r / 1e3).toFixed(1) + " k/s";
  if (r >= 10) return whole(r) + " /s";
  return r.toFixed(1) + " /s";
}
function duration(s) {
  if (s < 60) return s.toFixed(0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}
const ago = (ms) => duration(Math.max(0, (Date.now() - ms) / 1000)) + " ago";
function bytes(b) {
  if (b == null) return "?";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + " " + units[i];
}
function micros(us) {
  if (us == null) return "";
  if (us < 1) return (us * 1000).toFixed(0) + " ns";
  if (us < 1000) return us.toFixed(1) + " µs";
  if (us < 1e6) return (us / 1000).toFixed(1) + " ms";
  return (us / 1e6).toFixed(1) + " s";
}
const statusClass = (s) => "status " + (s === "running" ? "running" : s.startsWith("failed") ? "failed" : "");
function lastCheckpoint(c) {
  if (!c) return "off";
  if (c.last_id == null) return "none yet";
  return "#" + c.last_id + ", " + ago(c.last_at_ms);
}

function overview(d) {
  nodeLabel.textContent = d.node.name;
  const info = d.node.info || {};
  let html = `<h1>${escape(d.node.name)}</h1><p class="facts">
    <span>mode <b>${escape(info.mode)}</b></span><span>version <b>${escape(info.version)}</b></span>
    <span>up <b>${duration(d.node.uptime)}</b></span><span>memory <b>${bytes(d.node.rss_bytes)}</b></span></p>`;
  html += `<h2>Workers (${d.workers.length})</h2>`;
  if (d.workers.length === 0) {
    html += `<p class="quiet">no workers: workflows run in this process</p>`;
  } else {
    html += `<div class="scroll"><table id="workers"><tr><th>name</th><th>address</th><th>tags</th><th class="n">slots</th>
      <th class="n">memory</th><th class="n">up</th><th>link</th></tr>`;
    for (const w of d.workers) {
      const link = w.heard == null ? "" : w.heard > 2 ? `<span class="state-full">silent for ${duration(w.heard)}</span>` : `heard ${w.heard.toFixed(1)} s ago`;
      html += `<tr><td>${escape(w.name)}</td><td>${escape(w.addr || "this process")}</td><td>${escape((w.tags || []).join(", "))}</td><td class="n">${whole(w.slots)}</td>
        <td class="n">${w.rss_bytes == null ? "" : bytes(w.rss_bytes)}</td><td class="n">${w.uptime == null ? "" : duration(w.uptime)}</td><td>${link}</td></tr>`;
    }
    html += `</table></div>`;
  }
  html += `<h2>Workflows (${d.workflows.length})</h2>`;
  if (d.workflows.length === 0) {
    html += `<p class="quiet">no workflow has run here yet</p>`;
  } else {
    html += `<div class="scroll"><table id="workflows"><tr><th>workflow</th><th>status</th><th class="n">up</th><th class="n">in</th><th class="n">out</th><th class="n">records in</th><th class="n">records out</th><th>last checkpoint</th></tr>`;
    for (const w of d.workflows) {
      const name = w.name ? `${escape(w.name)} <span class="quiet">#${w.id}</span>` : `#${w.id}`;
      html += `<tr><td><a href="/workflow/${w.id}">${name}</a></td><td class="${statusClass(w.status)}">${escape(w.status)}</td>
        <td class="n">${duration(w.elapsed)}</td><td class="n">${rate(w.in_rate)}</td><td class="n">${rate(w.out_rate)}</td>
        <td class="n">${whole(w.records_in)}</td><td class="n">${whole(w.records_out)}</td><td>${escape(lastCheckpoint(w.checkpoint))}</td></tr>`;
    }
    html += `</table></div>`;
  }
  view.innerHTML = html;
}

function workflow(d) {
  document.title = "skitter: " + (d.name || "#" + d.id);
  let html = `<p><a href="/">← overview</a></p><h1>${escape(d.name || "workflow")} <span class="quiet">#${d.id}</span></h1>
    <p class="facts"><span class="${statusClass(d.status)}">${escape(d.status)}</span><span>up <b>${duration(d.elapsed)}</b></span>
    <span>records in <b>${whole(d.records_in)}</b></span><span>records out <b>${whole(d.records_out)}</b></span>
    <span>checkpoints <b>${escape(d.checkpoint ? d.checkpoint.summary.replace(/^checkpoints: /, "") : "off")}</b></span>
    ${d.checkpoint && d.checkpoint.last_id != null ? `<span>last <b>${ago(d.checkpoint.last_at_ms)}</b></span>` : ""}
    ${d.recovery ? `<span>${escape(d.recovery)}</span>` : ""}</p>`;
  if (d.failed) {
    html += `<p class="failure" id="failure"><b>failed:</b> ${escape(d.failed)}</p>`;
  }
  if (d.actions && d.running) {
    html += `<p class="actions"><button data-act="checkpoint">Checkpoint now</button> <button data-act="stop">Stop</button>
      <button data-act="abort" class="danger">Abort</button> <span id="notice" class="quiet">${escape(notice)}</span></p>`;
  } else if (notice) {
    html += `<p id="notice" class="quiet">${escape(notice)}</p>`;
  }
  html += `<h2>Graph</h2><div class="graph-box">${d.svg}</div>`;
  html += `<h2>Operators</h2><div class="scroll"><table id="operators"><tr><th>operator</th><th class="n">in</th><th class="n">out</th>
    <th class="n">records in</th><th class="n">records out</th><th class="n">queue</th><th class="n">p99 per record</th><th class="n">errors</th><th>event time</th><th>runs on</th></tr>`;
  for (const o of d.operators) {
    const queue = o.capacity ? `<span class="state-${o.state}">${whole(o.queued)} / ${whole(o.capacity)}</span>` : "";
    const wm = o.watermark_ms != null ? ago(o.watermark_ms).replace(" ago", " behind") : "";
    html += `<tr data-operator="${escape(o.name)}"><td>${escape(o.name)}</td><td class="n in-rate">${rate(o.in_rate)}</td><td class="n out-rate">${rate(o.out_rate)}</td>
      <td class="n">${whole(o.records_in)}</td><td class="n">${whole(o.records_out)}</td><td class="n">${queue}</td>
      <td class="n">${micros(o.p99_us)}</td><td class="n">${o.errors ? `<span class="state-failed">${whole(o.errors)}</span>` : "0"}</td><td>${wm}</td>
      <td>${escape((o.runs_on || []).map(([w, n]) => (n > 1 ? `${w} ×${n}` : w)).join(", "))}</td></tr>`;
  }
  html += `</table></div>`;
  view.innerHTML = html;
}

// The token for actions: from the address's fragment (#token=..., never
// sent to the server, so in no log; taken off the address at once), else
// asked for once and kept for this tab.
let notice = "";
function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("skitter-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("skitter-token");
}
token();
view.addEventListener("click", async (e) => {
  const button = e.target.closest("button[data-act]");
  const m = location.pathname.match(/^\/workflow\/(\d+)$/);
  if (!button || !m) return;
  const what = button.dataset.act;
  if (what === "abort" && !confirm("Abort the workflow? Records in flight are dropped.")) return;
  const t = token() || prompt("The web view's token (--http-token):");
  if (!t) return;
  notice = what + "…";
  const r = await fetch(`/api/workflow/${m[1]}/${what}`, { method: "POST", headers: { Authorization: "Bearer " + t } });
  const text = (await r.text()).trim();
  if (r.status === 401) sessionStorage.removeItem("skitter-token"); else sessionStorage.setItem("skitter-token", t);
  notice = r.ok ? `${what}: ${text}` : `${what} refused: ${text}`;
  document.body.dataset.acted = String(r.status);
});

async function tick() {
  const m = location.pathname.match(/^\/workflow\/(\d+)$/);
  const url = m ? "/api/workflow/" + m[1] : "/api/overview";
  try {
    const r = await fetch(url, { cache: "no-store" });
    if (r.status === 404) {
      view.innerHTML = `<p><a href="/">← overview</a></p><p>No workflow #${escape(m && m[1])} here.</p>`;
    } else {
      const d = await r.json();
      (m ? workflow : overview)(d);
      if (!m) document.title = "skitter: " + d.node.name;
    }
    live.textContent = "live";
    live.classList.remove("stale");
    document.body.dataset.updated = String(Date.now());
  } catch (e) {
    live.textContent = "cannot reach the node";
    live.classList.add("stale");
  }
  setTimeout(tick, 1000);
}
tick();
