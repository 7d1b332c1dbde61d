// What is served: the server's health, each device's, and every model version the token may call,
// from /console/api/models.

import { el } from "./dom.js";

const SHOWN_LABELS = 12;
const HEADINGS = ["model", "inputs", "layers", "head", "outputs", "device", "fingerprint", "quantization", "takes state from", "health", ""];

const DEVICE_STATES = { serving: "up", "not serving": "down", unused: "unused" }; // unused: not down, not red

export function serverSummary(server) {
  const devices = Object.entries(server.devices).map(([device, state]) =>
    el("span", { class: `health ${DEVICE_STATES[state]}`, "data-device": device, text: `${device} ${state}` }),
  );
  return [
    el("span", { class: `health ${server.ready ? "up" : "down"}`, "data-health": "server", text: server.ready ? "ready" : "not ready" }),
    ...devices,
    el("span", { text: server.sealed ? "states sealed" : "states in the clear" }),
    el("span", { text: server.tokens ? "tokens required" : "no tokens" }),
  ];
}

// tokens: the server takes tokens, so an empty list may be the token's scope, not the server's models.
export function modelTable(models, tokens, onTry) {
  const rows = models.map((model) => {
    const key = `${model.name}:${model.version}`;
    const outputs = model.labels.length ? `${model.num_outputs}: ${labelList(model.labels)}` : String(model.num_outputs);
    const cells = [
      `${model.input_size}`,
      model.hidden_sizes.join(" x "),
      model.head,
      outputs,
      `${model.device} (${model.provider.replace("ExecutionProvider", "")})`,
      model.fingerprint,
      model.quantization,
      model.accepts_state_from.join(", ") || "itself only",
    ];
    return el(
      "tr",
      { "data-model": key },
      el("th", { scope: "row" }, `${model.name} `, el("span", { class: "version", text: `v${model.version}` })),
      ...cells.map((text) => el("td", { text })),
      el("td", {}, el("span", { class: `health ${model.ready ? "up" : "down"}`, text: model.ready ? "ready" : "not ready" })),
      el("td", {}, el("button", { type: "button", onclick: () => onTry(model), "aria-label": `try ${key}` }, "Try")),
    );
  });
  return el(
    "table",
    { class: "models" },
    el("thead", {}, el("tr", {}, ...HEADINGS.map((text) => el("th", { scope: "col", text })))),
    el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: HEADINGS.length, text: tokens ? "No model this token may call is served." : "No model is served." }))]),
  );
}

// Labels as a person can read them: a space or a newline quoted ("\n"), the first dozen unless told.
export function labelList(labels, count = SHOWN_LABELS) {
  const shown = labels.slice(0, count).map((label) => (/^\S+$/.test(label) ? label : JSON.stringify(label)));
  return shown.join(" ") + (labels.length > count ? " …" : "");
}
