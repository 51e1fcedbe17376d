// The page at GET /: talks to /v1/model, /v1/predict, /v1/explain and /v1/feature-maps; nothing outside this origin.
"use strict";

const KEY_STORAGE = "resnet-api-key";
const TOP_K = 5;
const CHANNELS = 16;
const SPLITS = [["test_top1", "test_count", "test split"], ["val_top1", "val_count", "validation split"]];

const $ = (id) => document.getElementById(id);
const state = { file: null, previewUrl: null, mapUrl: null, heatmapUrl: null, predictRun: 0, mapRun: 0, explainRun: 0 };

class RequestError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// fetch with the API key (if one is set); a failure becomes a RequestError carrying the service's error body
async function request(path, options = {}) {
  const key = $("api-key").value.trim();
  let response;
  try {
    response = await fetch(path, { ...options, headers: key ? { "X-API-Key": key } : {} });
  } catch {
    throw new RequestError(0, "network_error", "the server could not be reached");
  }
  if (response.ok) return response;
  let code = `http_${response.status}`;
  let message = response.statusText || "the request failed";
  try {
    const body = await response.json();
    code = body.error.code ?? code;
    message = body.error.message ?? message;
  } catch {
    // not our JSON error body (a proxy's page, say): keep the status line
  }
  throw new RequestError(response.status, code, message);
}

function showError(id, error) {
  const el = $(id);
  if (!error) {
    el.hidden = true;
    el.textContent = "";
    return;
  }
  const status = error.status ? `${error.status} ` : "";
  const hint = error.status === 401 ? " Enter the key under “API key” at the top." : "";
  const stop = /[.!?]$/.test(error.message) ? "" : ".";
  el.textContent = `${status}${error.code ?? "error"}: ${error.message}${stop}${hint}`;
  el.hidden = false;
}

function percent(value) {
  return `${(value <= 1 ? value * 100 : value).toFixed(1)} %`;
}

// test accuracy when training recorded one, else validation; always named, so the split is never in doubt
function accuracyText(metrics) {
  for (const [name, countName, split] of SPLITS) {
    if (typeof metrics[name] === "number") {
      const count = typeof metrics[countName] === "number" ? `, ${metrics[countName].toLocaleString()} images` : "";
      return `${percent(metrics[name])} top-1 on the ${split}${count} (${name})`;
    }
  }
  return "not recorded in the checkpoint";
}

async function loadModel() {
  const section = $("model");
  try {
    const model = await (await request("v1/model")).json();
    $("model-arch").textContent = model.arch;
    $("model-classes").textContent = String(model.num_classes);
    $("model-accuracy").textContent = accuracyText(model.metrics ?? {});
    const layers = $("layer");
    layers.replaceChildren(...model.feature_layers.map((name) => new Option(name, name)));
    if (model.feature_layers.length) {
      layers.value = model.feature_layers.includes("layer1") ? "layer1" : model.feature_layers[0];
      layers.disabled = false;
    } else {
      $("feature-status").textContent = "This model has no feature layers to show.";
    }
    showError("model-error", null);
    if (state.file) showFeatureMaps();
  } catch (error) {
    for (const id of ["model-arch", "model-classes", "model-accuracy"]) $(id).textContent = "unavailable";
    showError("model-error", error);
  } finally {
    section.removeAttribute("aria-busy");
  }
}

function imageForm() {
  const form = new FormData();
  form.append("file", state.file, state.file.name);
  return form;
}

function showPredictions(predictions) {
  $("predictions").replaceChildren(...predictions.map((p) => {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = p.label;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = percent(p.score);
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.style.width = `${(p.score * 100).toFixed(2)}%`; // CSSOM, which the CSP allows (style attributes it does not)
    bar.append(fill);
    item.append(label, score, bar);
    return item;
  }));
}

async function predict() {
  const run = ++state.predictRun; // a newer image wins over a slower answer for an older one
  const section = $("predict");
  section.setAttribute("aria-busy", "true");
  $("predict-status").textContent = "Classifying…";
  showError("predict-error", null);
  try {
    const response = await request(`v1/predict?top_k=${TOP_K}`, { method: "POST", body: imageForm() });
    const result = await response.json();
    if (run !== state.predictRun) return;
    showPredictions(result.predictions);
    showClassSwitch(result.predictions);
    $("predict-status").textContent =
      `${state.file.name}: answered by ${result.model.arch} in ${result.timing_ms.total_ms.toFixed(1)} ms.`;
  } catch (error) {
    if (run !== state.predictRun) return;
    $("predictions").replaceChildren();
    showClassSwitch([]);
    $("predict-status").textContent = `Could not classify ${state.file.name}.`;
    showError("predict-error", error);
  } finally {
    if (run === state.predictRun) section.removeAttribute("aria-busy");
  }
}

async function showFeatureMaps() {
  const layer = $("layer").value;
  if (!state.file || !layer) return;
  const run = ++state.mapRun;
  const section = $("features");
  section.setAttribute("aria-busy", "true");
  $("feature-status").textContent = `Computing the feature maps of ${layer}…`;
  showError("feature-error", null);
  try {
    const query = `layer=${encodeURIComponent(layer)}&channels=${CHANNELS}`;
    const response = await request(`v1/feature-maps?${query}`, { method: "POST", body: imageForm() });
    const png = await response.blob();
    if (run !== state.mapRun) return;
    const shape = response.headers.get("X-Feature-Shape") ?? "?";
    const shown = response.headers.get("X-Feature-Channels") ?? String(CHANNELS);
    const img = $("feature-map");
    if (state.mapUrl) URL.revokeObjectURL(state.mapUrl);
    state.mapUrl = URL.createObjectURL(png);
    img.src = state.mapUrl;
    img.alt = `Feature maps of ${layer} for ${state.file.name}: the first ${shown} channels, one grayscale tile each`;
    img.hidden = false;
    $("feature-status").textContent = `${layer}: ${shown} channels of its ${shape} output (channels × height × width).`;
  } catch (error) {
    if (run !== state.mapRun) return;
    $("feature-map").hidden = true;
    $("feature-status").textContent = `No feature maps for ${layer}.`;
    showError("feature-error", error);
  } finally {
    if (run === state.mapRun) section.removeAttribute("aria-busy");
  }
}

// one radio button per top-5 class; the first (top-1) is chosen and its heatmap drawn
function showClassSwitch(predictions) {
  const box = $("explain-classes");
  box.replaceChildren(box.querySelector("legend"), ...predictions.map((p, i) => {
    const label = document.createElement("label");
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "explain-class";
    radio.value = String(p.index);
    radio.dataset.label = p.label;
    radio.checked = i === 0;
    label.append(radio, ` ${p.label}`);
    return label;
  }));
  box.disabled = predictions.length === 0;
  if (predictions.length) {
    showHeatmap();
  } else {
    ++state.explainRun;
    $("heatmap").hidden = true;
  }
}

// the server runs few explanations at once (503 `overloaded` past that): wait as Retry-After says, while still wanted
async function explainRequest(path, run) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await request(path, { method: "POST", body: imageForm() });
    } catch (error) {
      if (error.code !== "overloaded" || attempt >= 10) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (run !== state.explainRun) return null;
  }
}

async function showHeatmap() {
  const chosen = document.querySelector('input[name="explain-class"]:checked');
  if (!state.file || !chosen) return;
  const run = ++state.explainRun;
  const method = $("explain-method").value;
  const label = chosen.dataset.label;
  const section = $("explain");
  section.setAttribute("aria-busy", "true");
  $("explain-status").textContent = `Computing the heatmap of “${label}”…`;
  showError("explain-error", null);
  try {
    const query = `target=${encodeURIComponent(chosen.value)}&method=${encodeURIComponent(method)}`;
    const response = await explainRequest(`v1/explain?${query}`, run);
    if (!response) return;
    const png = await response.blob();
    if (run !== state.explainRun) return;
    const img = $("heatmap");
    if (state.heatmapUrl) URL.revokeObjectURL(state.heatmapUrl);
    state.heatmapUrl = URL.createObjectURL(png);
    img.src = state.heatmapUrl;
    img.alt = `Heatmap of “${label}” (${method}) over ${state.file.name}: red where the class found the most evidence`;
    img.hidden = false;
    const layer = response.headers.get("X-Explain-Layer") ?? "the last layer";
    $("explain-status").textContent = `${label}: ${method} at ${layer}, blended over the crop the model saw.`;
  } catch (error) {
    if (run !== state.explainRun) return;
    $("heatmap").hidden = true;
    $("explain-status").textContent = `No heatmap for ${label}.`;
    showError("explain-error", error);
  } finally {
    if (run === state.explainRun) section.removeAttribute("aria-busy");
  }
}

function useFile(file) {
  if (!file) return;
  state.file = file;
  const preview = $("preview");
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  preview.hidden = true;
  if (file.type.startsWith("image/")) { // the server decides what it accepts; only images get a preview
    state.previewUrl = URL.createObjectURL(file);
    preview.src = state.previewUrl;
    preview.alt = `Preview of ${file.name}`;
    preview.hidden = false;
  }
  $("drop").classList.add("has-image");
  predict();
  showFeatureMaps();
}

function setUp() {
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_STORAGE) ?? "";
  if (key.value) key.closest("details").open = true;
  key.addEventListener("input", () => sessionStorage.setItem(KEY_STORAGE, key.value.trim()));
  key.addEventListener("change", () => { // a corrected key retries what failed without it
    if (state.file) {
      predict();
      showFeatureMaps();
    }
  });

  $("file").addEventListener("change", (event) => useFile(event.target.files[0]));
  $("preview").addEventListener("error", (event) => { event.target.hidden = true; });
  $("layer").addEventListener("change", showFeatureMaps);
  $("explain-classes").addEventListener("change", showHeatmap);
  $("explain-method").addEventListener("change", showHeatmap);

  const drop = $("drop");
  // a file dropped beside the zone must not make the browser navigate away to it
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
  drop.addEventListener("dragenter", () => drop.classList.add("dragging"));
  drop.addEventListener("dragleave", (event) => {
    if (!drop.contains(event.relatedTarget)) drop.classList.remove("dragging");
  });
  drop.addEventListener("drop", (event) => {
    drop.classList.remove("dragging");
    useFile(event.dataTransfer.files[0]);
  });

  loadModel();
}

setUp();
