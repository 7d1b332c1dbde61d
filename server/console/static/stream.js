// A stream as the page carries it, as any client does: each answer's state goes back with the next
// chunk, and nothing of it stays on the server. The state is the answer's final_c_{l}/final_h_{l}
// renamed initial_*, or the one sealed_state where the server seals states, and its fingerprint.

const FINAL = "final_";
const SEALED = "sealed_state";
const PER_STEP_OUTPUT = "output"; // each step's top hidden output: not needed here, so not asked for
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export class Stream {
  // model: an entry of /console/api/models; state: a CarriedState to start from (none: zeros)
  constructor(api, model, state = new CarriedState()) {
    this.api = api;
    this.model = model;
    this.state = state;
    this.outputs = model.metadata.outputs.map((tensor) => tensor.name).filter((name) => name !== PER_STEP_OUTPUT);
  }

  // One chunk: rows is (batch 1) x time x input_size numbers. Returns the answer's outputs by name;
  // the stream then holds the state after it.
  async feed(steps) {
    const size = this.model.input_size;
    const request = {
      inputs: [
        { name: "input", datatype: "FP32", shape: [1, steps.length, size], data: steps.flat() },
        ...this.state.inputs,
      ],
      outputs: this.outputs.map((name) => ({ name })),
    };
    if (this.state.fingerprint) request.parameters = { state_fingerprint: this.state.fingerprint };
    const answer = await this.api.infer(this.model.name, String(this.model.version), request);
    this.state = CarriedState.fromAnswer(answer, this.state.steps + steps.length);
    return Object.fromEntries(answer.outputs.map((tensor) => [tensor.name, tensor]));
  }

  fork() {
    return new Stream(this.api, this.model, this.state);
  }
}

export class CarriedState {
  constructor(inputs = [], fingerprint = "", steps = 0) {
    this.inputs = inputs; // ready to send: initial_* (or sealed_state) tensors as JSON
    this.fingerprint = fingerprint;
    this.steps = steps; // how many steps it has seen: where a resumed stream goes on from
  }

  static fromAnswer(answer, steps) {
    const inputs = answer.outputs
      .filter((tensor) => tensor.name.startsWith(FINAL) || tensor.name === SEALED)
      .map((tensor) => ({
        name: tensor.name === SEALED ? SEALED : `initial_${tensor.name.slice(FINAL.length)}`,
        datatype: tensor.datatype,
        shape: tensor.shape,
        data: tensor.data,
      }));
    return new CarriedState(inputs, answer.parameters?.state_fingerprint ?? "", steps);
  }

  // What "copy" gives and "resume" takes: this JSON, for this model.
  toJSON(model) {
    return JSON.stringify({
      model: model.name,
      version: model.version,
      steps: this.steps,
      parameters: { state_fingerprint: this.fingerprint },
      inputs: this.inputs,
    });
  }

  // A pasted state, checked enough to say what is wrong here; the server checks the rest.
  static parse(text, model) {
    let value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new Error(`the state is not JSON: ${error.message}`);
    }
    if (!value || !Array.isArray(value.inputs) || value.inputs.length === 0) {
      throw new Error('the state needs "inputs": the tensors a copied state holds');
    }
    if (value.model !== undefined && value.model !== model.name) {
      throw new Error(`the state is ${value.model}'s, not ${model.name}'s`);
    }
    // A state fits the one model version that made it (the server checks its fingerprint too).
    if (value.version !== undefined && String(value.version) !== String(model.version)) {
      throw new Error(`the state is ${model.name} v${value.version}'s; this pad runs v${model.version}: try v${value.version}`);
    }
    // What the page itself reads of each tensor (its size, shown on the pad) must be there.
    if (!value.inputs.every(isTensor)) {
      throw new Error('each tensor of the state needs a "name", a "datatype", a "shape" and its "data" (a sealed state: one base64 string)');
    }
    const steps = Number.isInteger(value.steps) && value.steps >= 0 ? value.steps : 0;
    return new CarriedState(value.inputs, value.parameters?.state_fingerprint ?? "", steps);
  }

  // Its size on the wire as binary tensors (float32 values, or the sealed bytes: 3 per 4 base64 digits).
  get bytes() {
    const size = (tensor) => (tensor.datatype === "BYTES" ? (tensor.data[0].replace(/=+$/, "").length * 3) >> 2 : 4 * tensor.data.length);
    return this.inputs.reduce((total, tensor) => total + size(tensor), 0);
  }
}

function isTensor(tensor) {
  const { name, datatype, shape, data } = tensor ?? {};
  if (typeof name !== "string" || typeof datatype !== "string" || !Array.isArray(shape) || !Array.isArray(data)) return false;
  return datatype !== "BYTES" || (data.length === 1 && typeof data[0] === "string" && BASE64.test(data[0]));
}
