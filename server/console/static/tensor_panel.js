// "Try it" for any model: an input pasted as JSON or uploaded (.json or .npy), one inference, and every
// output shown. The input is (batch, time, input_size), or (time, input_size) for one sequence; a JSON
// object is taken as an Open Inference Protocol request ({"inputs": [...], ...}) as it is.

import { el, say } from "./dom.js";
import { readNpy } from "./npy.js";

const SHOWN_VALUES = 64;

export class TensorPanel {
  constructor(api, model) {
    this.api = api;
    this.model = model;
    this.text = el("textarea", { id: "tensor-input", rows: 6, placeholder: `[[[${new Array(model.input_size).fill("0.0").join(", ")}]]]` });
    this.file = el("input", { id: "tensor-file", type: "file", accept: ".json,.npy,application/json", onchange: () => this.#load() });
    this.outputs = el("div", { class: "outputs" }); // not read out: the message says how many
    this.message = el("p", { class: "message", role: "alert" });
    this.node = el(
      "form",
      { class: "tensor-panel", onsubmit: (event) => this.#infer(event) },
      el("p", {}, `An input of shape (batch, time, ${model.input_size}) or (time, ${model.input_size}), or a whole request.`),
      el("label", { for: "tensor-input" }, "Input as JSON"),
      this.text,
      el("p", {}, el("label", { for: "tensor-file" }, "or a file (.json, .npy) "), this.file),
      el("div", { class: "buttons" }, el("button", { type: "submit" }, "Run")),
      this.message,
      this.outputs,
    );
  }

  async #load() {
    const file = this.file.files[0];
    if (!file) return;
    try {
      if (file.name.endsWith(".npy")) {
        const array = readNpy(await file.arrayBuffer());
        this.text.value = JSON.stringify({ shape: array.shape, data: array.data });
      } else {
        this.text.value = await file.text();
      }
      say(this.message, `${file.name} read: press Run`);
    } catch (error) {
      // Nothing of an earlier input or its outputs stays: Run must not send what was refused.
      this.text.value = "";
      this.file.value = "";
      this.outputs.replaceChildren();
      say(this.message, `${file.name}: ${error.message}`, true);
    }
  }

  async #infer(event) {
    event.preventDefault();
    try {
      const answer = await this.api.infer(this.model.name, String(this.model.version), this.#request());
      this.outputs.replaceChildren(...answer.outputs.map((tensor) => this.#show(tensor)));
      say(this.message, `${answer.outputs.length} outputs: ${answer.outputs.map((tensor) => tensor.name).join(", ")}`);
    } catch (error) {
      this.outputs.replaceChildren();
      say(this.message, error.message, true);
    }
  }

  #request() {
    let value;
    try {
      value = JSON.parse(this.text.value);
    } catch (error) {
      throw new Error(`the input is not JSON: ${error.message}`);
    }
    if (value && !Array.isArray(value) && Array.isArray(value.inputs)) return value; // a whole request
    const { shape, data } = Array.isArray(value) ? nested(value) : value ?? {};
    if (!Array.isArray(shape) || !Array.isArray(data)) throw new Error("give a nested array, or {shape, data}, or a request");
    const full = shape.length === 2 ? [1, ...shape] : shape;
    return { inputs: [{ name: "input", datatype: "FP32", shape: full, data }] };
  }

  #show(tensor) {
    const values = tensor.data.slice(0, SHOWN_VALUES).map((value) => (typeof value === "number" ? Number(value.toPrecision(6)) : value));
    const more = tensor.data.length > SHOWN_VALUES ? ` ... (${tensor.data.length} values)` : "";
    return el(
      "section",
      { class: "output", "data-name": tensor.name },
      el("h4", { text: `${tensor.name} ${tensor.datatype} [${tensor.shape.join(", ")}]` }),
      el("pre", { text: JSON.stringify(values) + more }),
    );
  }
}

// A nested array's shape and its values in order; refused where its rows differ in length or depth.
function nested(value) {
  const shape = [];
  for (let level = value; Array.isArray(level); level = level[0]) shape.push(level.length);
  const fits = (part, depth) =>
    depth === shape.length ? !Array.isArray(part) : Array.isArray(part) && part.length === shape[depth] && part.every((item) => fits(item, depth + 1));
  if (!fits(value, 0)) throw new Error("the nested array's rows differ in length");
  return { shape, data: value.flat(Infinity) };
}
