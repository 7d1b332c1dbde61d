// "Try it" for a model whose labels are characters, one-hot in and out: a prompt, and the server's
// generation streamed back a character at a time (generate_stream), then the state it ends in.

import { bytes, el, say } from "./dom.js";
import { labelList } from "./models.js";
import { CarriedState } from "./stream.js";

export class TextPanel {
  constructor(api, model) {
    this.api = api;
    this.model = model;
    const maxSteps = Math.min(200, model.limits.max_generate_steps);
    this.prompt = el("input", { id: "prompt", type: "text", required: true, autocomplete: "off", value: model.labels.slice(0, 1).join("") });
    this.steps = el("input", { id: "steps", type: "number", min: 1, max: model.limits.max_generate_steps, value: maxSteps });
    this.temperature = el("input", { id: "temperature", type: "number", min: 0, max: 10, step: 0.1, value: 0 });
    this.seed = el("input", { id: "seed", type: "number", min: 0, step: 1, placeholder: "any" });
    this.written = el("span", { class: "prompt" });
    this.continuation = el("span", { class: "continuation" });
    this.output = el("output", { class: "generated", for: "prompt" }, this.written, this.continuation);
    this.stateLine = el("p", { class: "state-line" });
    this.message = el("p", { class: "message", role: "alert" });
    this.run = el("button", { type: "submit" }, "Generate");
    this.stop = el("button", { type: "button", disabled: true, onclick: () => this.controller?.abort() }, "Stop");
    this.node = el(
      "form",
      { class: "text-panel", onsubmit: (event) => this.#generate(event) },
      el("p", {}, `The model knows ${model.labels.length} characters: ${labelList(model.labels, Infinity)}`),
      el("p", {}, el("label", { for: "prompt" }, "Prompt "), this.prompt),
      el(
        "p",
        {},
        el("label", { for: "steps" }, "Characters "),
        this.steps,
        " ",
        el("label", { for: "temperature" }, "Temperature (0: the likeliest each time) "),
        this.temperature,
        " ",
        el("label", { for: "seed" }, "Seed (the same seed, the same text) "),
        this.seed,
      ),
      el("div", { class: "buttons" }, this.run, this.stop),
      this.output,
      this.stateLine,
      this.message,
    );
  }

  // Ends a generation under way: the panel is being taken off the page.
  close() {
    this.controller?.abort();
  }

  async #generate(event) {
    event.preventDefault();
    this.controller = new AbortController();
    const keyboard = document.activeElement === this.run; // its focus goes to Stop, then back
    this.run.disabled = true;
    this.stop.disabled = false;
    if (keyboard) this.stop.focus();
    this.output.setAttribute("aria-busy", "true"); // read out once written, not a character at a time
    this.written.textContent = this.prompt.value;
    this.continuation.textContent = "";
    this.output.dataset.done = "false";
    say(this.message, "");
    const request = {
      text_input: this.prompt.value,
      parameters: { max_steps: Number(this.steps.value), temperature: Number(this.temperature.value) },
    };
    if (this.seed.value !== "") request.parameters.seed = Number(this.seed.value);
    try {
      for await (const event of this.api.generate(this.model.name, String(this.model.version), request, this.controller.signal)) {
        if (event.step > 0) {
          this.continuation.textContent += event.text_output ?? "";
          if (event.seed !== undefined) this.seed.placeholder = `${event.seed} (drawn)`;
        } else {
          const state = CarriedState.fromAnswer(event, 0);
          this.stateLine.textContent = `Final state: ${state.inputs.map((t) => t.name).join(", ")}, ${bytes(state.bytes)}`;
        }
      }
    } catch (error) {
      if (error.name === "AbortError") say(this.message, "Stopped.");
      else say(this.message, error.message, true);
    } finally {
      this.output.dataset.done = "true";
      this.output.setAttribute("aria-busy", "false");
      const focused = document.activeElement === this.stop;
      this.run.disabled = false;
      this.stop.disabled = true;
      if (focused) this.run.focus();
    }
  }
}
