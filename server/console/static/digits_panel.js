// "Try it" for a model of 8-feature rows whose labels are digits (the default model): pads to draw on,
// forks that continue from a pad's state, and a pasted state resumed on a new pad.

import { el, say } from "./dom.js";
import { DigitPad, SIDE } from "./pad.js";
import { CarriedState, Stream } from "./stream.js";

export function isDigitsModel(model) {
  return model.input_size === SIDE && model.labels.length > 0 && model.labels.every((label) => /^[0-9]$/.test(label));
}

export class DigitsPanel {
  constructor(api, model) {
    this.api = api;
    this.model = model;
    this.count = 0;
    this.inkInput = el("input", { id: "ink", type: "number", min: 0, max: 16, value: 16, step: 1 });
    this.pads = el("div", { class: "pads" });
    this.resumeText = el("textarea", { id: "resume-state", rows: 3, placeholder: '{"inputs": [...], ...}' });
    this.resumeMessage = el("p", { class: "message", role: "alert" });
    this.node = el(
      "div",
      { class: "digits-panel" },
      el(
        "p",
        {},
        "Draw a digit, top to bottom. Each row goes to the server as one step with the state of the rows " +
          "before it, and comes back with the next state: the page holds the state, not the server.",
      ),
      el("p", {}, el("label", { for: "ink" }, "Ink (0 erases, 16 is darkest) "), this.inkInput),
      el(
        "p",
        { class: "hint" },
        "Mouse, pen or touch: draw; lifting it sends the rows above the lowest one drawn on. " +
          "Keyboard: Tab to the pad, arrows move, Space inks or clears, Enter sends the rows down to the focus.",
      ),
      this.pads,
      el(
        "form",
        { class: "resume", onsubmit: (event) => this.#resume(event) },
        el("label", { for: "resume-state" }, "Resume from a copied state"),
        this.resumeText,
        el("div", { class: "buttons" }, el("button", { type: "submit" }, "Resume on a new pad")),
        this.resumeMessage,
      ),
    );
    this.addPad(new Stream(api, model), [], "new");
  }

  ink() {
    const value = Math.round(Number(this.inkInput.value));
    return Number.isFinite(value) ? Math.min(16, Math.max(0, value)) : 16;
  }

  addPad(stream, sent, origin) {
    this.count += 1;
    const pad = new DigitPad({
      number: this.count,
      title: `Pad ${this.count}${origin === "new" ? "" : `: ${origin}`}`,
      stream,
      sent,
      ink: () => this.ink(),
      onFork: (parent) => this.addPad(parent.stream.fork(), parent.pixels.slice(0, parent.stream.state.steps), `forked from pad ${parent.number} after ${parent.stream.state.steps} rows`),
    });
    this.pads.append(pad.node);
    if (origin !== "new") pad.focus();
    return pad;
  }

  #resume(event) {
    event.preventDefault();
    try {
      const state = CarriedState.parse(this.resumeText.value, this.model);
      if (state.steps >= SIDE) throw new Error(`the state has seen all ${SIDE} rows: nothing is left to draw`);
      this.addPad(new Stream(this.api, this.model, state), [], `resumed after ${state.steps} rows`);
      say(this.resumeMessage, "");
    } catch (error) {
      say(this.resumeMessage, error.message, true);
    }
  }
}
