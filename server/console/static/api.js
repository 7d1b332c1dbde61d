// The server's HTTP API as the page uses it: the console's two documents and the Open Inference
// Protocol's routes, with the bearer token (kept in this tab's sessionStorage only) on every call.

const TOKEN_KEY = "lstmserve.token";
// The console's own documents are small and quick: one not answered in this long means a server that
// hangs (stopped, or its host gone), which the page says rather than showing old figures as live.
const READ_TIMEOUT_MS = 5000;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Api {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  }

  access() {
    return this.#read("/console/api/access");
  }

  models() {
    return this.#read("/console/api/models");
  }

  figures() {
    return this.#read("/console/api/figures");
  }

  infer(model, version, request) {
    return this.#call("POST", `${modelPath(model, version)}/infer`, request);
  }

  // Server-Sent Events from generate_stream, as parsed JSON: each step, then the last (step 0). The
  // stream is read to that last event; a stream cut before it is an error, not a short generation.
  async *generate(model, version, request, signal) {
    const response = await this.#fetch("POST", `${modelPath(model, version)}/generate_stream`, request, signal);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new ApiError(0, "the generation's stream ended before its last step");
        pending += value.replace(/\r\n?/g, "\n"); // the events' lines may end in CR LF or CR too
        let end;
        while ((end = pending.indexOf("\n\n")) >= 0) {
          const event = parseEvent(pending.slice(0, end));
          pending = pending.slice(end + 2);
          if (event === null) continue; // a comment, or an event with no data
          if (event.name === "error") throw new ApiError(0, event.data.error);
          yield event.data;
          if (event.data.step === 0) return;
        }
      }
    } finally {
      reader.cancel().catch(() => {}); // a caller that stops early, or an error: the connection goes
    }
  }

  async #read(path) {
    try {
      const response = await this.#fetch("GET", path, undefined, AbortSignal.timeout(READ_TIMEOUT_MS));
      return await response.json();
    } catch (error) {
      if (error.name === "TimeoutError") throw new ApiError(0, `no answer in ${READ_TIMEOUT_MS / 1000} s`);
      throw error;
    }
  }

  async #call(method, path, body) {
    const response = await this.#fetch(method, path, body);
    return response.json();
  }

  async #fetch(method, path, body, signal) {
    const headers = { accept: "application/json" };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        message = (await response.json()).error || message;
      } catch {
        // not JSON: a proxy's page, say; the status says enough
      }
      throw new ApiError(response.status, message);
    }
    return response;
  }
}

export function modelPath(model, version) {
  const name = encodeURIComponent(model);
  return version ? `/v2/models/${name}/versions/${encodeURIComponent(version)}` : `/v2/models/${name}`;
}

// One event's name and its data as JSON; null where it has no data (a comment, a keep-alive).
function parseEvent(text) {
  let name = "message";
  const data = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  return data.length ? { name, data: JSON.parse(data.join("\n")) } : null;
}
