// An 8 x 8 pad that streams a drawn digit a row at a time, as the digits model reads it: each row sent
// is one step, the state that comes back carries every row before it, and the prediction is the
// model's after the rows sent so far. Rows go in order and, once sent, cannot be drawn on.
//
// Mouse, pen or touch: draw with the pointer; lifting it sends the rows above the lowest one drawn
// on. Keyboard: arrow keys move, Space inks (or clears) a cell, Enter sends the rows down to the one
// with the focus.

import { bytes, copy, el, say } from "./dom.js";
import { showScores } from "./scores.js";

export const SIDE = 8;
const SCALE = 16; // the digits data set's pixels are 0-16; the model was trained on them / 16
// Turned away for now (busy, stopping), as a row with no answer at all (no status: the server
// restarting, the network): the row was not taken and the state is the one before it, so it can be
// sent again. Any other refusal stops the pad: the same row would be refused again.
const AGAIN = new Set([undefined, 429, 503]);

export class DigitPad {
  // stream: a Stream; sent: the pixel rows its state already holds (shown locked); ink(): 0-16
  constructor({ number, title, stream, sent = [], ink, onFork }) {
    this.number = number;
    this.stream = stream;
    this.ink = ink;
    this.onFork = onFork;
    this.pixels = Array.from({ length: SIDE }, (_, row) => sent[row]?.slice() ?? new Array(SIDE).fill(0));
    this.row = stream.state.steps; // the next row to send
    this.stroke = null; // the lowest row drawn on while the pointer is down
    this.failed = false; // a row was refused for good: the pad goes no further
    this.sending = Promise.resolve(); // rows are sent one after another, in order
    this.#build(title);
    this.#render();
  }

  #build(title) {
    this.cells = this.pixels.map((values, row) =>
      values.map((_, col) =>
        el("button", {
          type: "button",
          class: "cell",
          "data-row": row,
          "data-col": col,
          tabindex: row === 0 && col === 0 ? 0 : -1,
          onclick: (event) => event.detail === 0 && this.#toggle(row, col), // the keyboard's click
        }),
      ),
    );
    this.grid = el(
      "div",
      {
        class: "pad",
        role: "group",
        "aria-label": `pad ${this.number}: 8 rows of 8 cells; arrows move, Space inks, Enter sends rows`,
        onpointerdown: (event) => this.#pointer(event, true),
        onpointermove: (event) => this.#pointer(event, false),
        onpointerup: () => this.#endStroke(),
        onpointercancel: () => this.#endStroke(),
        onkeydown: (event) => this.#key(event),
      },
      this.cells.flat(),
    );
    this.prediction = el("p", { class: "prediction", "aria-live": "polite" });
    this.scores = el("ol", { class: "scores", "aria-label": "each label's score" });
    this.stateLine = el("p", { class: "state-line" });
    this.stateText = el("textarea", { class: "state-json", readonly: true, rows: 3, "aria-label": `pad ${this.number}'s state as JSON` });
    this.message = el("p", { class: "message", role: "alert" });
    this.sendButton = el("button", { type: "button", onclick: () => this.sendThrough(this.row) }, "Send next row");
    this.sendAllButton = el("button", { type: "button", onclick: () => this.sendThrough(SIDE - 1) }, "Send all rows");
    // The second click of a double click (detail 2) is not a second fork.
    this.forkButton = el("button", { type: "button", onclick: (event) => event.detail < 2 && this.#fork() }, "Fork here");
    this.copyButton = el("button", { type: "button", onclick: () => this.#copy() }, "Copy state");
    this.prediction.tabIndex = -1; // where the focus goes when the send buttons it was on are done
    this.node = el(
      "article",
      { class: "pad-card", "data-pad": this.number, "aria-label": title },
      el("h4", { text: title }),
      el("div", { class: "pad-body" }, this.grid, el("div", { class: "pad-result" }, this.prediction, this.scores)),
      el("div", { class: "buttons" }, this.sendButton, this.sendAllButton, this.forkButton, this.copyButton),
      (this.stateDetails = el("details", { class: "state" }, el("summary", {}, this.stateLine), this.stateText)),
      this.message,
    );
  }

  // Sends every row down to `last` that is not sent yet; resolves once they are answered.
  sendThrough(last) {
    if (this.failed) return this.sending;
    const rows = [];
    for (let row = this.row; row <= Math.min(last, SIDE - 1); row += 1) rows.push(row);
    this.row += rows.length;
    this.#render();
    for (const row of rows) this.sending = this.sending.then(() => this.#send(row));
    return this.sending;
  }

  async #send(row) {
    // Nothing after a refusal for good, nor past a row that was not taken: those rows stay unsent.
    if (this.failed || row !== this.stream.state.steps) return;
    try {
      const outputs = await this.stream.feed([this.pixels[row].map((value) => value / SCALE)]);
      const logits = outputs.logits.data.slice(-this.stream.model.num_outputs);
      showScores(this.prediction, this.scores, logits, this.stream.model.labels, `after ${this.stream.state.steps} of ${SIDE} rows`);
      say(this.message, "");
    } catch (error) {
      const again = AGAIN.has(error.status);
      if (again) this.row = Math.min(this.row, row); // it, and the rows queued after it, are unsent
      else this.failed = true;
      say(this.message, `Row ${row + 1} was not taken: ${error.message}${again ? ". Send it again." : ""}`, true);
    }
    this.#render();
  }

  #pointer(event, down) {
    if (down) {
      this.stroke = -1;
      this.grid.setPointerCapture(event.pointerId);
    } else if (this.stroke === null) {
      return;
    }
    const cell = document.elementFromPoint(event.clientX, event.clientY);
    if (!cell || !this.grid.contains(cell) || !cell.classList.contains("cell")) return;
    const row = Number(cell.dataset.row);
    if (this.#paint(row, Number(cell.dataset.col), this.ink())) this.stroke = Math.max(this.stroke, row);
    event.preventDefault();
  }

  #endStroke() {
    if (this.stroke !== null && this.stroke > this.row) this.sendThrough(this.stroke - 1);
    this.stroke = null;
  }

  #toggle(row, col) {
    this.#paint(row, col, this.pixels[row][col] === this.ink() ? 0 : this.ink());
  }

  #paint(row, col, value) {
    if (row < this.row) return false; // sent: its state is on its way
    this.pixels[row][col] = value;
    this.#renderCell(row, col);
    return true;
  }

  #key(event) {
    const cell = event.target.closest?.(".cell");
    if (!cell) return;
    let row = Number(cell.dataset.row);
    let col = Number(cell.dataset.col);
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (event.key === "Enter") {
      event.preventDefault();
      this.sendThrough(row);
      return;
    }
    if (!(event.key in moves)) return;
    event.preventDefault();
    row = Math.min(SIDE - 1, Math.max(0, row + moves[event.key][0]));
    col = Math.min(SIDE - 1, Math.max(0, col + moves[event.key][1]));
    cell.tabIndex = -1;
    this.cells[row][col].tabIndex = 0;
    this.cells[row][col].focus();
  }

  // Focus on the first cell still to draw (or the last row), as the pad's one tab stop.
  focus() {
    const target = this.cells[Math.min(this.row, SIDE - 1)][0];
    for (const cell of this.cells.flat()) cell.tabIndex = cell === target ? 0 : -1;
    target.focus();
  }

  #fork() {
    if (this.forking) return; // clicked again while the rows before it are still on their way
    this.forking = this.sending.then(() => this.onFork(this)).finally(() => (this.forking = null));
  }

  async #copy() {
    try {
      this.stateDetails.open = true; // where copying falls back to a selection, it must be seen
      say(this.message, `State ${await copy(this.stateText)}.`);
    } catch (error) {
      say(this.message, `The state was not copied (${error.message}): select it below and copy it.`, true);
    }
  }

  #render() {
    for (let row = 0; row < SIDE; row += 1) for (let col = 0; col < SIDE; col += 1) this.#renderCell(row, col);
    const state = this.stream.state;
    const done = this.row >= SIDE;
    const focused = [this.sendButton, this.sendAllButton].includes(document.activeElement);
    this.sendButton.disabled = this.sendAllButton.disabled = done || this.failed;
    this.copyButton.disabled = state.inputs.length === 0;
    // A fork of a finished digit would have nothing left to draw.
    this.forkButton.disabled = this.failed || state.inputs.length === 0 || state.steps >= SIDE;
    if (focused && this.sendButton.disabled) this.prediction.focus();
    this.stateLine.textContent = state.inputs.length
      ? `State after ${rows(state.steps)}: ${state.inputs.map((t) => t.name).join(", ")}, ${bytes(state.bytes)}`
      : "No state yet: the first row starts from zeros";
    this.stateText.value = state.inputs.length ? state.toJSON(this.stream.model) : "";
    this.node.dataset.sentRows = String(state.steps);
  }

  #renderCell(row, col) {
    const cell = this.cells[row][col];
    const value = this.pixels[row][col];
    cell.style.setProperty("--ink", String(value / SCALE));
    cell.classList.toggle("sent", row < this.row);
    cell.setAttribute("aria-disabled", String(row < this.row)); // sent: drawing on it does nothing
    cell.setAttribute("aria-label", `row ${row + 1}, column ${col + 1}: ink ${value}${row < this.row ? ", sent" : ""}`);
    cell.dataset.ink = String(value);
  }
}

function rows(count) {
  return count === 1 ? "1 row" : `${count} rows`;
}
