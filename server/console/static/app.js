// The console: what is served, live figures and "try it", over the server's own HTTP API. With
// --auth-tokens the page shows nothing until a token is given; the token stays in this tab only.

import { Api } from "./api.js";
import { DigitsPanel, isDigitsModel } from "./digits_panel.js";
import { el, say } from "./dom.js";
import { Figures } from "./figures.js";
import { modelTable, serverSummary } from "./models.js";
import { TensorPanel } from "./tensor_panel.js";
import { TextPanel } from "./text_panel.js";

const MODELS_PERIOD_MS = 5000; // health and the model list: a reload adds or drops versions
const UNAUTHORIZED = new Set([401, 403]);
// A header carries Latin-1 only: fetch() throws, before calling, on a token with anything else (a dash
// or quote changed as it was pasted). That is no server failing to answer, so it is said here.
const SENDABLE = /^[\x21-\x7e\xa1-\xff]+$/;

const api = new Api();
const page = Object.fromEntries(
  ["console", "server", "status", "models", "figures", "try", "try-heading", "token-form", "token", "token-message", "forget-token"].map((id) => [
    id,
    document.getElementById(id),
  ]),
);
const figures = new Figures(api, (error) => failed(error));
let tried = null; // the model version "try it" is showing, as "name:version"
let panels = []; // its panels: closed when replaced, so that nothing they started goes on unseen
let listed = ""; // the server and models as shown: built again only when they change, so focus stays

async function load() {
  let served;
  try {
    if (!api.token && (await api.access()).tokens) {
      failed({ status: 401, message: "" }); // asked for first: no call is refused for want of it
      return;
    }
    served = await api.models();
  } catch (error) {
    failed(error);
    return;
  }
  page["token-form"].hidden = true;
  page["forget-token"].hidden = !api.token;
  page.console.hidden = false;
  say(page.status, "");
  const list = JSON.stringify(served);
  if (list !== listed) {
    listed = list;
    page.server.replaceChildren(...serverSummary(served.server));
    page.models.replaceChildren(modelTable(served.models, served.server.tokens, (model) => tryModel(model)));
  }
  page.figures.replaceChildren(figures.node);
  if (!figures.timer) figures.start();
  const current = served.models.find((model) => `${model.name}:${model.version}` === tried);
  if (!current) {
    const first = served.models.find(isDigitsModel) ?? served.models[0];
    if (first) tryModel(first);
    else show([], [el("p", { text: "No model to try." })]);
  }
  clearTimeout(load.timer);
  load.timer = setTimeout(load, MODELS_PERIOD_MS);
}

function tryModel(model) {
  tried = `${model.name}:${model.version}`;
  page["try-heading"].textContent = `Try ${model.name} v${model.version}`;
  const shown = [];
  if (isDigitsModel(model)) shown.push(new DigitsPanel(api, model));
  else if (model.text) shown.push(new TextPanel(api, model)); // the server's word: generate_stream takes text
  const tensors = new TensorPanel(api, model);
  const nodes = shown.map((panel) => panel.node);
  nodes.push(nodes.length ? el("details", { class: "any-input" }, el("summary", {}, "Any input (JSON or .npy)"), tensors.node) : tensors.node);
  show([...shown, tensors], nodes);
}

// A generation runs on the server until its last step: one whose panel is gone would go on unseen,
// with no Stop button left to end it.
function show(shown, nodes) {
  for (const panel of panels) panel.close?.();
  panels = shown;
  page.try.replaceChildren(...nodes);
}

// Nothing of a model stays on the page once a call is refused for its token, or goes wrong.
function failed(error) {
  clearTimeout(load.timer);
  figures.stop();
  if (UNAUTHORIZED.has(error.status)) {
    tried = null;
    page.console.hidden = true;
    show([], []);
    listed = "";
    for (const part of [page.server, page.models, page.figures]) part.replaceChildren();
    page["try-heading"].textContent = "Try it";
    page["token-form"].hidden = false;
    page["forget-token"].hidden = true;
    say(page["token-message"], api.token ? `The token was not taken: ${error.message}` : "This server needs a bearer token.", Boolean(api.token));
    api.token = null;
    page.token.focus();
  } else {
    say(page.status, `The server did not answer: ${error.message}. Retrying.`, true);
    load.timer = setTimeout(load, MODELS_PERIOD_MS);
  }
}

page["token-form"].addEventListener("submit", (event) => {
  event.preventDefault();
  const token = page.token.value.trim();
  page.token.value = "";
  if (token && !SENDABLE.test(token)) {
    say(page["token-message"], "This token cannot be sent: a token is letters, digits and punctuation, without spaces. Was a dash or a quote changed as it was pasted?", true);
    return;
  }
  api.token = token;
  load();
});

page["forget-token"].addEventListener("click", () => {
  api.token = null;
  failed({ status: 401, message: "" });
});

load();
