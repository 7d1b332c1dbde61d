// Live figures, read from the server's own metrics every second (/console/api/figures): counters and
// histograms come cumulative, and rates and quantiles are taken over the last WINDOW seconds here, as
// Prometheus's rate() and histogram_quantile() do.

import { bytes, el } from "./dom.js";

const PERIOD_MS = 1000;
const WINDOW = 10; // seconds: enough calls for a p99, recent enough to follow a change
const NO_MODEL = "-"; // the metrics' model label for calls refused before a model was found

export class Figures {
  constructor(api, onFailure) {
    this.api = api;
    this.onFailure = onFailure;
    this.history = [];
    this.server = el("dl", { class: "server-figures" });
    this.table = el("tbody");
    this.refusals = el("ul", { class: "refusals", "aria-label": "calls not answered OK, by status" });
    this.node = el(
      "div",
      {},
      this.server,
      el(
        "table",
        { class: "figures" },
        el("caption", {}, `Calls answered over the last ${WINDOW} seconds`),
        el("thead", {}, el("tr", {}, ...["model", "calls/s", "p50", "p99", "rows per run"].map((name) => el("th", { scope: "col", text: name })))),
        this.table,
      ),
      // Refusals, and calls their clients gave up on (CANCELLED, DEADLINE_EXCEEDED): not answered OK.
      el("h3", {}, "Not answered OK since start, by status"),
      this.refusals,
    );
  }

  start() {
    this.stop();
    this.timer = setInterval(() => this.#poll(), PERIOD_MS);
    return this.#poll();
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.history = [];
    this.generation = (this.generation ?? 0) + 1; // a read still out when stopped is dropped
  }

  async #poll() {
    if (this.reading) return; // the last read is not answered yet: a slow server is not asked again and again
    this.reading = true;
    const generation = this.generation;
    try {
      const now = performance.now() / 1000;
      const read = await this.api.figures();
      if (generation !== this.generation) return;
      if (this.history.length && wentBack(this.history[0].figures, read)) this.history = [];
      this.history.push({ time: now, figures: read });
      while (this.history.length > 2 && now - this.history[1].time >= WINDOW) this.history.shift();
      this.#render();
    } catch (error) {
      if (generation !== this.generation) return;
      this.stop();
      this.onFailure(error);
    } finally {
      this.reading = false;
    }
  }

  #render() {
    const first = this.history[0];
    const last = this.history[this.history.length - 1];
    const seconds = last.time - first.time;
    const server = last.figures.server;
    const cpu = seconds > 0 ? (100 * (server.cpu_seconds - first.figures.server.cpu_seconds)) / seconds : NaN;
    this.server.replaceChildren(
      ...figure("streams open", server.streams, "streams"),
      ...figure("calls in flight", server.calls, "calls"),
      ...figure("memory (RSS)", server.rss_bytes === undefined ? "–" : bytes(server.rss_bytes), "rss"), // Linux only
      ...figure("CPU", Number.isFinite(cpu) ? `${cpu.toFixed(0)}%` : "–", "cpu"),
    );
    const names = Object.keys(last.figures.models).sort();
    const rows = names.map((name) => this.#row(name, last.figures.models[name], first.figures.models[name], seconds));
    this.table.replaceChildren(...rows);
    const codes = {};
    for (const model of Object.values(last.figures.models)) {
      for (const [code, count] of Object.entries(model.codes)) if (code !== "OK") codes[code] = (codes[code] ?? 0) + count;
    }
    const refused = Object.entries(codes).sort(([, a], [, b]) => b - a);
    this.refusals.replaceChildren(
      ...(refused.length ? refused.map(([code, count]) => el("li", { "data-code": code, text: `${code}: ${count}` })) : [el("li", { text: "none" })]),
    );
  }

  #row(name, now, before, seconds) {
    const rate = seconds > 0 ? (answered(now) - answered(before)) / seconds : NaN;
    const runs = now.runs - (before?.runs ?? 0);
    const rows = now.rows - (before?.rows ?? 0);
    const cells = {
      calls_per_second: Number.isFinite(rate) ? rate.toFixed(1) : "–",
      p50: seconds > 0 ? duration(quantile(0.5, before?.latency, now.latency)) : "–",
      p99: seconds > 0 ? duration(quantile(0.99, before?.latency, now.latency)) : "–",
      rows_per_run: runs > 0 ? (rows / runs).toFixed(1) : "–",
    };
    return el(
      "tr",
      { "data-model": name },
      el("th", { scope: "row", text: name === NO_MODEL ? "(no model)" : name }),
      ...Object.entries(cells).map(([key, text]) => el("td", { "data-figure": key, text })),
    );
  }
}

// Counters only grow: one lower than in the window's first read means the server restarted (or, behind
// a load balancer, another replica answered). Its differences would be negative nonsense, so the window
// starts again from this read, as rate() takes a reset.
function wentBack(before, now) {
  if (now.server.cpu_seconds < before.server.cpu_seconds) return true;
  return Object.entries(now.models).some(([name, model]) => {
    const old = before.models[name];
    return old !== undefined && (answered(model) < answered(old) || model.runs < old.runs || model.rows < old.rows);
  });
}

function answered(model) {
  return model ? Object.values(model.codes).reduce((sum, count) => sum + count, 0) : 0;
}

function figure(term, value, key) {
  return [el("dt", { text: term }), el("dd", { "data-figure": key, text: String(value) })];
}

// The q-quantile of what a cumulative histogram counted between two reads, interpolated within its
// bucket as histogram_quantile() does; NaN when nothing was counted, the top bound when past it.
export function quantile(q, before = [], now = []) {
  const counts = now.map(([bound, count], index) => [Number(bound), count - (before[index]?.[1] ?? 0)]);
  const total = counts.length ? counts[counts.length - 1][1] : 0;
  if (total <= 0) return NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [upper, count] of counts) {
    if (count >= rank) {
      if (!Number.isFinite(upper)) return lower; // in +Inf: at least the largest bound
      return lower + ((upper - lower) * (rank - below)) / Math.max(count - below, 1e-12);
    }
    [lower, below] = [upper, count];
  }
  return lower;
}

function duration(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  return seconds < 1 ? `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)} ms` : `${seconds.toFixed(2)} s`;
}
