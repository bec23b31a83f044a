// cm3leon playground: submit a job, poll its progress, render the candidates.
"use strict";

const $ = (id) => document.getElementById(id);
const TEXT = {
  text_to_image: ["Prompt", "a red cube left of a blue ball"],
  caption: ["", ""],
  vqa: ["Question", "what colour is the cube?"],
  edit: ["Instruction", "make it winter"],
};
let info = null;

function task() {
  return document.querySelector("input[name=task]:checked").value;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function onTask() {
  const t = task();
  const [label, placeholder] = TEXT[t];
  $("text-row").hidden = t === "caption";
  $("text-label").textContent = label;
  $("text").placeholder = placeholder;
  $("image-row").hidden = t === "text_to_image";
  if (info) {
    $("strategy").value = info.default_strategy[t];
    $("layout").textContent = "Prompt layout: " + info.tasks[t].layout;
  }
}

async function loadInfo() {
  const res = await fetch("/api/info");
  info = await res.json();
  for (const name of info.strategies) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = name;
    $("strategy").appendChild(opt);
  }
  const parts = [`model ${info.model}`, `${info.tokens_per_image} tokens per image`,
    info.retrieval ? `bank ${info.bank}` : "no memory bank (k = 0)",
    info.rerank ? "CLIP re-ranking on" : "no CLIP re-ranking"];
  $("about").textContent = parts.join(" · ");
  $("k").disabled = !info.retrieval;
  if (info.retrieval) $("k").value = 2;
  onTask();
}

function renderCandidate(c, result) {
  const li = document.createElement("li");
  li.className = "candidate" + (result.reranked && c.rank === 0 ? " best" : "");
  if (c.image) {
    const img = document.createElement("img");
    img.src = c.image;
    img.alt = `candidate ${c.index}`;
    li.appendChild(img);
  }
  if (c.text !== null) {
    const p = document.createElement("p");
    p.className = "text";
    p.textContent = c.text || "(empty)";
    li.appendChild(p);
  }
  const meta = document.createElement("div");
  meta.className = "muted";
  const score = c.score === null ? "" : ` · CLIP ${c.score.toFixed(3)}`;
  meta.textContent = (result.reranked ? `rank ${c.rank + 1} · ` : "") + `sample #${c.index} · ${c.pipeline}${score}`;
  li.appendChild(meta);
  return li;
}

function renderDocument(d) {
  const li = document.createElement("li");
  li.className = "document";
  if (d.image) {
    const img = document.createElement("img");
    img.src = d.image;
    img.alt = d.id;
    li.appendChild(img);
  }
  const p = document.createElement("p");
  p.textContent = d.text;
  li.appendChild(p);
  const id = document.createElement("div");
  id.className = "muted";
  id.textContent = d.id;
  li.appendChild(id);
  return li;
}

function render(result) {
  $("candidates").replaceChildren(...result.candidates.map((c) => renderCandidate(c, result)));
  $("retrieved").replaceChildren(...result.retrieved.map(renderDocument));
  $("no-retrieved").hidden = result.retrieved.length > 0;
  $("order").textContent = result.reranked
    ? "(best first by CLIP score; #n is the sampling order)"
    : "(sampling order; start the server with --clip DIR to re-rank)";
  $("timing").textContent = `${result.strategy} · ${result.tokens} tokens in ${result.seconds.toFixed(2)} s · prompt: ${result.prompt}`;
  $("results").hidden = false;
}

async function poll(id) {
  for (;;) {
    const res = await fetch(`/api/jobs/${id}`);
    const job = await res.json();
    if (!res.ok) throw new Error(job.error || res.statusText);
    const { done, total } = job.progress;
    $("progress").max = Math.max(total, 1);
    $("progress").value = done;
    $("stage").textContent = `${job.stage}` + (total ? ` · ${done}/${total} tokens` : "");
    if (job.status === "done") return job.result;
    if (job.status === "error") throw new Error(job.error);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function onSubmit(event) {
  event.preventDefault();
  $("error").hidden = true;
  $("generate").disabled = true;
  $("status").hidden = false;
  $("progress").removeAttribute("value");
  $("stage").textContent = "submitting";
  try {
    const body = new FormData($("form"));
    if (task() === "text_to_image") body.delete("image");
    const res = await fetch("/api/jobs", { method: "POST", body });
    const job = await res.json();
    if (!res.ok) throw new Error(job.error || res.statusText);
    render(await poll(job.id));
    $("stage").textContent = "done";
  } catch (err) {
    showError(String(err.message || err));
    $("status").hidden = true;
  } finally {
    $("generate").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const radio of document.querySelectorAll("input[name=task]")) radio.addEventListener("change", onTask);
  $("form").addEventListener("submit", onSubmit);
  loadInfo().catch((err) => showError(`cannot load /api/info: ${err}`));
});
