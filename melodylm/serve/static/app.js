// The playground page: fills the form from the API, posts it, draws each sample's piano roll at once
// and shows audio and sheet music as the server finishes rendering them.
"use strict";

const $ = (id) => document.getElementById(id);
const NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
const state = { continued: null, polling: 0, canFill: false };

function showError(msg) {
  $("error").textContent = msg || "";
  $("error").hidden = !msg;
}

async function api(url, options) {
  const resp = await fetch(url, options);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) throw new Error((body && body.error) || `${resp.status} ${resp.statusText}`);
  return body;
}

async function loadCheckpoints() {
  const { checkpoints } = await api("/api/checkpoints");
  const sel = $("checkpoint");
  sel.replaceChildren(...checkpoints.map((c) => new Option(`${c.name} (${c.run}/${c.file})`, c.name, c.default, c.default)));
  if (!checkpoints.length) showError("no checkpoint: train one (`melodylm train`) or start the server with --checkpoint");
  else await loadControls();
}

// Key, meter and style offer the values the chosen model was trained with; a model without them
// (or without infill tokens) has the control disabled and says why in one line.
async function loadControls() {
  const c = await api(`/api/controls?checkpoint=${encodeURIComponent($("checkpoint").value)}`);
  const kinds = ["key", "meter", "style"];
  const shared = kinds.every((k) => c.reasons[k] && c.reasons[k] === c.reasons.key);  // a model without controls
  for (const kind of kinds) {
    const sel = $(kind), values = c.values[kind] || [];
    sel.replaceChildren(new Option("any", ""), ...values.map((v) => new Option(v, v)));
    sel.disabled = !values.length;
    showReason(kind, shared ? "" : c.reasons[kind]);
  }
  showReason("controls", shared ? c.reasons.key : "");
  state.canFill = c.fill;
  showReason("fill", c.reasons.fill);
  onSource();
}

function showReason(kind, text) {
  $(`${kind}-reason`).textContent = text || "";
  $(`${kind}-reason`).hidden = !text;
}

function onFill() {
  const filling = !$("fill").disabled && $("fill").value.trim() !== "";
  $("max_bars").disabled = filling;  // a fill writes bars A..B of the prompt: no bars to add
}

let tuneTimer = 0;
async function searchTunes() {
  const { tunes } = await api(`/api/tunes?q=${encodeURIComponent($("tune-search").value)}&limit=100`);
  $("tune").replaceChildren(...tunes.map((t) => new Option(`${t.title} (${t.notes} notes)`, t.file)));
  if (tunes.length) $("tune").selectedIndex = 0;
}

function source() { return document.querySelector("input[name=source]:checked").value; }

function onSource() {
  $("tune-box").hidden = source() !== "tune";
  $("upload-box").hidden = source() !== "upload";
  if (source() === "tune" && !$("tune").options.length) searchTunes().catch((e) => showError(e.message));
  $("fill").disabled = !state.canFill || source() === "none";
  if (state.canFill && source() === "none") showReason("fill", "fill rewrites bars of a prompt: start from a tune, a file or a sample");
  else if (state.canFill) showReason("fill", "");
  onFill();
}

function formData() {
  const fd = new FormData();
  for (const k of ["n", "temperature", "top_p", "seed", "checkpoint"]) fd.append(k, $(k).value);
  for (const k of ["max_bars", "fill", "key", "meter", "style", "guidance"]) if (!$(k).disabled && $(k).value.trim()) fd.append(k, $(k).value.trim());
  const src = source();
  if (src !== "none" && $("prompt_bars").value) fd.append("prompt_bars", $("prompt_bars").value);
  if (src === "tune") {
    if (!$("tune").value) throw new Error("tune: pick a tune from the list (or start from nothing)");
    fd.append("tune", $("tune").value);
  } else if (src === "upload") {
    const f = $("prompt").files[0];
    if (!f) throw new Error("prompt: choose a MIDI file (or start from nothing)");
    fd.append("prompt", f, f.name);
  } else if (src === "sample") {
    fd.append("prompt", state.continued.blob, state.continued.name);
  }
  return fd;
}

function svgEl(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Piano roll: note names on the pitch axis, bar lines with bar numbers, prompt and continuation in two colours.
function pianoRoll(s) {
  const notes = s.notes;
  const end = Math.max(4, ...notes.map((n) => n[0] + n[1]));
  const lo = Math.min(...notes.map((n) => n[2]), 60) - 1, hi = Math.max(...notes.map((n) => n[2]), 72) + 1;
  const barBeats = (s.time_signature[0] * 4) / s.time_signature[1];
  const px = 20, row = 7, left = 34, top = 28, w = left + end * px + 4, h = top + (hi - lo + 1) * row + 4;
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": "piano roll", class: "pianoroll" });
  for (let p = lo; p <= hi; p++) {
    const y = top + (hi - p) * row;
    if (NAMES[p % 12].includes("#")) svg.append(svgEl("rect", { x: left, y, width: end * px, height: row, fill: "#f1f3f7" }));
    if (p % 12 === 0) svg.append(svgEl("text", { x: 2, y: y + row, "font-size": 9 }, `C${Math.floor(p / 12) - 1}`));
  }
  for (let b = 0, k = 1; b <= end; b += barBeats, k++) {
    const x = left + b * px;
    svg.append(svgEl("line", { x1: x, x2: x, y1: top - 4, y2: h, stroke: "#99a", "stroke-width": 1 }));
    if (b < end) svg.append(svgEl("text", { x: x + 2, y: top - 5, "font-size": 9, fill: "#556" }, String(k)));
  }
  const split = s.has_prompt ? s.continuation_start_beat : -1;
  const fillEnd = s.fill_beats ? s.fill_beats[1] : Infinity;  // a fill's bars end where the prompt resumes
  for (const [t, d, p] of notes) {
    const prompt = s.has_prompt && (t < split || t >= fillEnd);
    svg.append(svgEl("rect", { x: left + t * px, y: top + (hi - p) * row, width: Math.max(2, d * px - 1), height: row - 1,
      rx: 1, fill: prompt ? "#8a8fa0" : "#e0662d", class: prompt ? "note prompt" : "note continuation" }));
  }
  if (s.has_prompt) {
    const x = left + split * px;
    svg.append(svgEl("line", { x1: x, x2: x, y1: top, y2: h, stroke: "#23395b", "stroke-width": 2, "stroke-dasharray": "4 2" }));
  }
  if (s.fill_beats) {
    const x = left + fillEnd * px;
    svg.append(svgEl("line", { x1: x, x2: x, y1: top, y2: h, stroke: "#23395b", "stroke-width": 2, "stroke-dasharray": "4 2" }));
  }
  const legend = svgEl("g", { "font-size": 9 });
  legend.append(svgEl("rect", { x: left, y: 2, width: 8, height: 8, fill: "#8a8fa0" }), svgEl("text", { x: left + 11, y: 10 }, "prompt"),
    svgEl("rect", { x: left + 55, y: 2, width: 8, height: 8, fill: "#e0662d" }), svgEl("text", { x: left + 66, y: 10 }, s.fill_beats ? "filled bars" : "continuation"));
  svg.append(legend);
  return svg;
}

function card(s, i) {
  const el = $("sample-card").content.firstElementChild.cloneNode(true);
  const notes = s.n_notes === 1 ? "note" : "notes";
  el.querySelector("h2").textContent = `Sample ${i + 1}: ${s.n_notes} ${notes} (${s.new_notes} new, stopped at ${s.stop})`;
  el.querySelector(".roll").append(pianoRoll(s));
  el.querySelector(".dl-midi").href = s.midi;
  const audio = el.querySelector("audio");
  el.querySelector(".play").onclick = () => { document.querySelectorAll("audio").forEach((a) => a !== audio && a.pause()); audio.play(); };
  el.querySelector(".stop").onclick = () => { audio.pause(); audio.currentTime = 0; };
  el.querySelector(".continue").onclick = () => continueFrom(s, i).catch((e) => showError(e.message));
  return el;
}

function fileState(el, s, files) {
  const name = (url) => url.split("/").pop();
  const errors = new Set();
  const wav = files[name(s.audio)], svg = files[name(s.score)], xml = files[name(s.musicxml)];
  if (wav === "ready" && !el.querySelector("audio").src) {
    el.querySelector("audio").src = s.audio;
    el.querySelector(".dl-wav").href = s.audio;
    el.querySelector(".dl-wav").hidden = false;
    el.querySelector(".play").disabled = el.querySelector(".stop").disabled = false;
    el.querySelector(".audio-state").textContent = "";
  }
  if (svg === "ready" && !el.querySelector(".score img")) {
    const img = new Image();
    img.alt = "sheet music";
    img.src = s.score;
    el.querySelector(".score").replaceChildren(img);
  }
  if (xml === "ready") { el.querySelector(".dl-xml").href = s.musicxml; el.querySelector(".dl-xml").hidden = false; }
  for (const v of [wav, svg, xml]) if (v && v.startsWith("error")) errors.add(v.replace(/^error: /, ""));
  if (wav && wav.startsWith("error")) el.querySelector(".audio-state").textContent = "no audio";
  if (svg && svg.startsWith("error")) el.querySelector(".score").replaceChildren();
  const p = el.querySelector(".file-error");
  p.textContent = [...errors].join("; ");
  p.hidden = !errors.size;
  return [wav, svg, xml].some((v) => v === "pending" || v === undefined);
}

async function poll(result, cards, token) {
  while (token === state.polling) {
    const { files } = await api(result.status);
    const pending = result.samples.map((s, i) => fileState(cards[i], s, files)).some(Boolean);
    const renders = Object.entries(files).filter(([k]) => !/\.(mid|json)$/.test(k)).map(([, v]) => v);
    const done = renders.filter((v) => v !== "pending").length;
    $("progress-text").textContent = `rendering audio and sheet music… ${done}/${renders.length} files`;
    if (!pending) break;
    await new Promise((r) => setTimeout(r, 150));
  }
  if (token === state.polling) $("progress").hidden = true;
}

async function generate(ev) {
  if (ev) ev.preventDefault();
  showError("");
  let fd;
  try { fd = formData(); } catch (e) { showError(e.message); return; }
  const token = ++state.polling;
  $("generate").disabled = true;
  $("progress").hidden = false;
  $("progress-text").textContent = "generating…";
  try {
    const t0 = performance.now();
    const result = await api("/api/sample", { method: "POST", body: fd });
    $("signature").textContent = result.signature;
    const cards = result.samples.map(card);
    $("samples").replaceChildren(...cards);
    document.body.dataset.generatedMs = String(Math.round(performance.now() - t0));
    $("generate").disabled = false;
    await poll(result, cards, token);
  } catch (e) {
    showError(e.message);
    $("progress").hidden = true;
  } finally {
    $("generate").disabled = false;
  }
}

async function continueFrom(s, i) {
  const resp = await fetch(s.midi);
  if (!resp.ok) throw new Error(`sample ${i + 1}: its MIDI file is gone (${resp.status}); generate again`);
  state.continued = { blob: await resp.blob(), name: `sample_${i + 1}.mid` };
  $("continued-name").textContent = `sample ${i + 1} (continued)`;
  $("continued-label").hidden = false;
  document.querySelector("input[name=source][value=sample]").checked = true;
  $("prompt_bars").value = "";
  onSource();
  await generate();
}

document.querySelectorAll("input[name=source]").forEach((r) => r.addEventListener("change", onSource));
$("tune-search").addEventListener("input", () => { clearTimeout(tuneTimer); tuneTimer = setTimeout(() => searchTunes().catch((e) => showError(e.message)), 200); });
$("controls").addEventListener("submit", generate);
$("checkpoint").addEventListener("change", () => loadControls().catch((e) => showError(e.message)));
$("fill").addEventListener("input", onFill);
loadCheckpoints().catch((e) => showError(e.message));
