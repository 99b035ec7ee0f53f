// loomrt-worker.mjs -- loomrt in a Web Worker, so that a page never freezes while a model loads
// or generates. The same calls as loomrt.mjs, all returning promises:
//
//   import { LoomrtWorker } from "./loomrt-worker.mjs";
//   const model = await LoomrtWorker.load(ggufBytes);          // the bytes are moved to the worker
//   const g = await model.generate("Hello", { maxTokens: 32, seed: 1 });
//   for await (const { text } of model.stream("Hi", { maxTokens: 64, signal })) out.textContent += text;
//   model.terminate();
//
// Browsers only (module workers); under Node use loomrt.mjs directly or node:worker_threads.
import { LoomrtError } from "./loomrt.mjs";

export class LoomrtWorker {
  /** Start a worker and load a model in it (see load() in loomrt.mjs for source and options;
   * options.wasm must be a URL string if given). ArrayBuffers of the source are transferred. */
  static async load(source, options = {}, workerUrl = new URL("./worker.mjs", import.meta.url)) {
    const w = new LoomrtWorker(new Worker(workerUrl, { type: "module" }));
    const buffers = [];
    for (const v of source instanceof ArrayBuffer || ArrayBuffer.isView(source) ? [source] : Object.values(source ?? {}))
      if (v instanceof ArrayBuffer) buffers.push(v); else if (ArrayBuffer.isView(v) && v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) buffers.push(v.buffer);
    try {
      Object.assign(w, await w._call("load", [source, options], buffers));
    } catch (e) { w.terminate(); throw e; }
    return w;
  }

  constructor(worker) {
    this.worker = worker;
    this._next = 1;
    this._pending = new Map();
    worker.onmessage = ({ data }) => this._pending.get(data.id)?.(data);
    worker.onerror = e => {
      for (const h of this._pending.values()) h({ ok: false, error: { message: `worker error: ${e.message}`, code: "LRT_ERR_INTERNAL", status: -9 } });
      this._pending.clear();
    };
  }

  _call(op, args, transfer = []) {
    if (!this.worker) return Promise.reject(new LoomrtError(`${op}: the worker was terminated`, -8, "LRT_ERR_STATE"));
    const id = this._next++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, m => {
        this._pending.delete(id);
        if (m.ok) resolve(m.value); else reject(new LoomrtError(m.error.message, m.error.status, m.error.code));
      });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  tokenize(text, options) { return this._call("tokenize", [text, options]); }
  detokenize(ids, options) { return this._call("detokenize", [ids, options]); }
  /** generate() in the worker. With a `signal`, it runs as a stream that the signal aborts (the
   * promise rejects and the worker's model is free again). */
  generate(prompt, options = {}) {
    const { signal, ...o } = options ?? {};
    return signal ? this._collect(prompt, options) : this._call("generate", [prompt, o]);
  }

  async _collect(prompt, options) {
    const t0 = performance.now(), tokenIds = [];
    let text = "";
    for await (const s of this.stream(prompt, options)) { text += s.text; if (s.token >= 0) tokenIds.push(s.token); }
    const g = { text, tokenIds, finishReason: this.lastFinishReason, seconds: (performance.now() - t0) / 1000 };
    if (options.receipt) g.receipt = this.lastReceipt;
    return g;
  }
  chat(messages, options = {}) { return this.generate(messages, { ...options, chat: true }); }
  logits(ids) { return this._call("logits", [ids]); }
  modelHash() { return this._call("modelHash", []); }
  tokenizerHash() { return this._call("tokenizerHash", []); }
  dispose() { return this._call("dispose", []); }
  terminate() { this.worker?.terminate(); this.worker = null; }

  /** Async iterator of {token, text} as the worker generates them; options.signal aborts. With
   * {receipt: true}, `lastReceipt` holds the receipt once the stream has ended. */
  async *stream(prompt, options = {}) {
    if (!this.worker) throw new LoomrtError("stream: the worker was terminated", -8, "LRT_ERR_STATE");
    const { signal, ...o } = options ?? {};
    this.lastReceipt = null;
    const id = this._next++;
    const queue = [];
    let wake = null, end = null;
    this._pending.set(id, m => {
      if (m.piece) queue.push(m.piece);
      else { this._pending.delete(id); end = m; }
      wake?.(); wake = null;
    });
    const onAbort = () => this.worker?.postMessage({ id: 0, op: "abort", args: [id] });
    signal?.addEventListener("abort", onAbort);
    this.worker.postMessage({ id, op: "stream", args: [prompt, o] });
    try {
      for (;;) {
        // pieces already on their way when the signal fired are dropped: the stream ends now
        if (signal?.aborted) throw signal.reason ?? new LoomrtError("aborted");
        while (queue.length && !signal?.aborted) yield queue.shift();
        if (signal?.aborted) continue;
        if (end) {
          if (!end.ok) throw new LoomrtError(end.error.message, end.error.status, end.error.code);
          this.lastFinishReason = end.value.finishReason;
          this.lastReceipt = end.value.receipt ?? null;
          return;
        }
        await new Promise(r => { wake = r; });
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (!end) {
        // the consumer broke out early or aborted: stop the worker's generation and wait for it
        // to end, so that the next call does not find the worker's model busy
        onAbort();
        while (!end) await new Promise(r => { wake = r; });
      }
    }
  }
}
