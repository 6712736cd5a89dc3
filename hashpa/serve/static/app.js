// The page of hashpa serve: one query, every search mode of the index in its own column.
"use strict";

const state = { indexes: [], current: null };
const $ = (id) => document.getElementById(id);

// Paths and names come from the indexed folder: never trust them as HTML.
function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function fmt(value, digits) { return value === null || value === undefined ? "-" : Number(value).toFixed(digits); }

function showFacts(facts) {
  const bytes = facts.bytes_per_item;
  let html = `<table><tr><th colspan="2">${esc(facts.name)}: ${facts.items.toLocaleString()} items</th></tr>` +
    `<tr><td>codes</td><td>${facts.bits} bits (${facts.code_source})</td></tr>` +
    `<tr><td>floats</td><td>${facts.dim}-d</td></tr>` +
    `<tr><td>bytes per item</td><td>${Object.entries(bytes).map(([mode, size]) => `${mode} ${size}`).join(", ")}</td></tr>` +
    `<tr><td>classes</td><td>${facts.labels ? facts.classes : "no labels"}</td></tr>` +
    `<tr><td>model</td><td title="${esc(facts.model)}">${esc(facts.fingerprint)}</td></tr></table>`;
  if (facts.compare) {
    html += `<table><tr><th>compare</th><th>R@1</th><th>q/s</th><th>B/item</th></tr>` +
      facts.compare.map((m) => `<tr><td>${esc(m.method)}</td><td>${fmt(m["recall@1"], 3)}</td><td>${fmt(m.queries_per_second, 0)}</td>` +
                               `<td>${fmt(m.bytes_per_image, 1)}</td></tr>`).join("") + "</table>";
  }
  $("facts").innerHTML = html;
  $("summary").textContent = `${facts.items.toLocaleString()} items, ${facts.bits}-bit codes against ${facts.dim}-d floats; modes: ${facts.modes.join(", ")}`;
  $("gallery").innerHTML = facts.sample_rows.map((row) => `<img src="/thumb/${encodeURIComponent(facts.name)}/${row}" data-row="${row}" alt="row ${row}">`).join("");
  document.querySelectorAll("#gallery img").forEach((img) => img.addEventListener("click", () => queryRow(Number(img.dataset.row))));
}

async function loadIndexes() {
  const response = await fetch("/index");
  state.indexes = (await response.json()).indexes;
  $("index").innerHTML = state.indexes.map((f) => `<option>${esc(f.name)}</option>`).join("");
  state.current = state.indexes[0];
  showFacts(state.current);
}

function form() {
  const data = new FormData();
  data.append("index", state.current.name);
  data.append("k", $("k").value);
  if ($("shortlist").value) data.append("shortlist", $("shortlist").value);
  data.append("modes", state.current.modes.join(","));
  return data;
}

async function send(data, preview) {
  document.body.dataset.ready = "no";
  $("error").textContent = "";
  $("query").innerHTML = preview;
  const response = await fetch("/search", { method: "POST", body: data });
  const answer = await response.json();
  if (!response.ok) { $("error").textContent = answer.error; $("columns").innerHTML = ""; return; }
  render(answer);
}

function queryRow(row) {
  const data = form();
  data.append("row", String(row));
  send(data, `<img src="/thumb/${encodeURIComponent(state.current.name)}/${row}" alt="query">`);
}

function queryFile(file) {
  const data = form();
  data.append("image", file);
  send(data, `<img src="${URL.createObjectURL(file)}" alt="query">`);
}

function mark(hit) { return hit.correct === null ? "unknown" : hit.correct ? "right" : "wrong"; }

function render(answer) {
  $("bits").textContent = answer.query.code.length;
  $("strip").innerHTML = [...answer.query.code].map((bit) => `<span class="b${bit}"></span>`).join("");
  $("columns").innerHTML = Object.entries(answer.results).map(([mode, result]) => `
    <div class="column" data-mode="${mode}">
      <h2>${mode}</h2>
      <div class="meta">${fmt(result.ms, 2)} ms, ${result.score}</div>
      ${result.hits.map((hit) => `
        <div class="hit ${mark(hit)}" data-row="${hit.row}" data-mark="${mark(hit)}">
          <img src="/thumb/${encodeURIComponent(answer.index)}/${hit.row}" alt="${esc(hit.path)}" data-row="${hit.row}">
          <div><div class="score">${hit.rank}. ${fmt(hit.score, mode === "binary" ? 0 : 4)}</div>
          <div class="path">${esc(hit.path)}</div></div>
        </div>`).join("")}
    </div>`).join("");
  document.querySelectorAll(".hit img").forEach((img) => img.addEventListener("click", () => queryRow(Number(img.dataset.row))));
  document.body.dataset.ready = "yes";
}

$("drop").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", (event) => { if (event.target.files.length) queryFile(event.target.files[0]); });
$("drop").addEventListener("dragover", (event) => { event.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (event) => {
  event.preventDefault(); $("drop").classList.remove("over");
  if (event.dataTransfer.files.length) queryFile(event.dataTransfer.files[0]);
});
$("index").addEventListener("change", () => { state.current = state.indexes.find((f) => f.name === $("index").value); showFacts(state.current); });
loadIndexes();
