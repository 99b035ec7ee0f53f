// loomrt.mjs -- loomrt in the browser and in Node: the C core compiled to WebAssembly
// (loomrt.wasm, built by tools/build_wasm.py) behind a small JavaScript API.
//
//   import { load } from "./loomrt.mjs";
//   const model = await load(ggufBytes);                 // or load({"config.json": ..., ...})
//   const out = model.generate("Once upon a time", { maxTokens: 32, temperature: 0.8, seed: 7 });
//   for await (const piece of model.stream("Hello", { maxTokens: 16 })) console.log(piece.text);
//   model.dispose();
//
// Same bits as native loomrt: the same model, prompt, settings and seed give the same token
// ids and the same logits (docs/web.md). No dependencies: the WebAssembly module's few WASI
// imports (it never opens files or prints) are provided here.

const WASM_URL = new URL("./loomrt.wasm", import.meta.url);
// the threaded build (wasm atomics, a shared memory imported from here) and its worker script
const THREADS_WASM_URL = new URL("./loomrt-threads.wasm", import.meta.url);
const THREAD_WORKER_URL = new URL("./loomrt-thread.mjs", import.meta.url);
const THREADS_INITIAL_PAGES = 512, MAX_PAGES = 65535; // as tools/build_wasm.py
const IS_NODE = typeof process !== "undefined" && process.versions != null && process.versions.node != null;

// ---- constants of csrc/include/loomrt.h (pinned, append-only) ----------------------------------
const PARAM = { temperature: 0, topK: 1, topP: 2, minP: 3, repetitionPenalty: 4, seed: 5, repeatLastN: 6, maxTokens: 7 };
const INFO_VOCAB_SIZE = 0, INFO_CONTEXT_LENGTH = 1;
const TOKENIZE_ADD_SPECIAL = 1, TOKENIZE_PARSE_SPECIAL = 2, DETOKENIZE_SKIP_SPECIAL = 1;
const OPEN_ALLOW_UNKNOWN_CONFIG_KEYS = 1, OPEN_QUANTIZE_Q8_0 = 4, OPEN_INT8_ACTIVATIONS = 8;
const SESSION_FINISH_REASON = 0;
const FINISH = ["none", "stop", "length", "context", "callback"]; // Python's names: eos -> "stop"
const ERR_BUFFER_TOO_SMALL = -10;

/** A failed loomrt call: `status` is the C status code, `code` its name ("LRT_ERR_FORMAT"). */
export class LoomrtError extends Error {
  constructor(message, status = -1, code = "LRT_ERR_INVALID_ARGUMENT") {
    super(message);
    this.name = "LoomrtError";
    this.status = status;
    this.code = code;
  }
}

// ---- the WebAssembly instance --------------------------------------------------------------------

const WASI_EBADF = 8, WASI_ENOENT = 44, WASI_ENOSYS = 52;

function wasiImports(getMemory) {
  const u32 = () => new Uint32Array(getMemory().buffer);
  return {
    // no environment: LOOMRT_KERNELS is unset, the best kernel path (SIMD128) is used
    environ_sizes_get(countPtr, sizePtr) { const m = u32(); m[countPtr >>> 2] = 0; m[sizePtr >>> 2] = 0; return 0; },
    environ_get() { return 0; },
    // no files: models come from memory (lrt_model_open_memory); preopen enumeration ends at fd 3
    fd_prestat_get() { return WASI_EBADF; },
    fd_prestat_dir_name() { return WASI_EBADF; },
    fd_close() { return WASI_EBADF; },
    fd_fdstat_get() { return WASI_EBADF; },
    fd_filestat_get() { return WASI_EBADF; },
    fd_read() { return WASI_EBADF; },
    fd_write() { return WASI_EBADF; },
    fd_seek() { return WASI_EBADF; },
    path_filestat_get() { return WASI_ENOENT; },
    path_open() { return WASI_ENOENT; },
    clock_time_get() { return WASI_ENOSYS; },
    proc_exit(code) { throw new LoomrtError(`loomrt.wasm called exit(${code}): a bug, please report it`, -9, "LRT_ERR_INTERNAL"); },
  };
}

async function wasmBytes(source, defaultUrl = WASM_URL) {
  if (source instanceof WebAssembly.Module) return source;
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) return source;
  const url = source ?? defaultUrl;
  if (IS_NODE && (typeof url === "string" ? !/^https?:/.test(url) : url.protocol === "file:")) {
    const { readFile } = await import("node:fs/promises");
    return readFile(url);
  }
  const r = await fetch(url);
  if (!r.ok) throw new LoomrtError(`could not fetch ${url}: HTTP ${r.status}`);
  return r.arrayBuffer();
}

const runtimes = new Map(); // one instance per wasm source (the default: loomrt.wasm beside this file)

/** Instantiate loomrt.wasm (done by load(); call it yourself to pass another .wasm location).
 * With {threads: true}: loomrt-threads.wasm (or `wasm`) over a shared memory, for threadSupport() places. */
export async function init(wasm, { threads = false } = {}) {
  const key = (threads ? "threads:" : "") + (wasm ?? "default");
  if (!runtimes.has(key)) {
    // a failed fetch or compile is not remembered: the next call tries again
    runtimes.set(key, (threads ? instantiateThreads(wasm) : instantiate(wasm)).catch(e => { runtimes.delete(key); throw e; }));
  }
  return runtimes.get(key);
}

/**
 * Whether this place can run loomrt with threads: {ok: true} or {ok: false, reason}. Threads are
 * Web Workers sharing the module's memory (a SharedArrayBuffer), which a browser gives only to a
 * cross-origin isolated page (served with Cross-Origin-Opener-Policy: same-origin and
 * Cross-Origin-Embedder-Policy: require-corp); and the thread that calls loomrt must be allowed
 * to wait (Atomics.wait): Node's threads and a browser's workers (LoomrtWorker), not a page's main
 * thread. Elsewhere load() falls back to one thread (model.threadsFallback says why).
 */
export function threadSupport() {
  if (typeof SharedArrayBuffer !== "function" || typeof Atomics !== "object")
    return { ok: false, reason: "SharedArrayBuffer is not available here" + (IS_NODE ? "" : " (the page is not cross-origin isolated: serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)") };
  if (!IS_NODE) {
    if (globalThis.crossOriginIsolated !== true)
      return { ok: false, reason: "the page is not cross-origin isolated: serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp" };
    if (typeof WorkerGlobalScope === "undefined")
      return { ok: false, reason: "a page's main thread may not wait for other threads (Atomics.wait): run the model in a worker (LoomrtWorker) to use threads" };
  }
  return { ok: true, reason: "" };
}

// ---- threads: Web Workers (Node worker threads) over the shared memory --------------------------
// Each worker instantiates the threaded module over the same memory and waits on its mailbox
// slot (a small SharedArrayBuffer: [changes, then per worker: state, thread, stackTop, tls]).
// lrt_wasm_thread_spawn (called by the C thread pool, csrc/base/platform.c) claims an idle
// worker and wakes it; the worker runs lrt_wasm_thread_main(thread) on its own stack and
// thread-local block and goes back to idle when the pool stops the thread.
const IDLE = 0, CLAIMED = 1, RUN = 2, MAX_WORKERS = 256;

class ThreadWorkers {
  constructor(module, memory) {
    this.module = module;
    this.memory = memory;
    this.mailbox = new Int32Array(new SharedArrayBuffer(4 * (1 + 4 * MAX_WORKERS)));
    this.workers = [];
    this.reserved = 0; // threads the open models' sessions may hold (workers beyond the caller)
    this._starting = Promise.resolve();
  }

  /** Start workers until there are n (each ready to run a thread). */
  ensure(n) {
    if (n > MAX_WORKERS) return Promise.reject(new LoomrtError(`at most ${MAX_WORKERS + 1} threads`));
    this._starting = this._starting.then(async () => { while (this.workers.length < n) this.workers.push(await this._start(this.workers.length)); });
    return this._starting;
  }

  async _start(index) {
    const data = { module: this.module, memory: this.memory, mailbox: this.mailbox, index };
    if (IS_NODE) {
      const { Worker } = await import("node:worker_threads");
      const w = new Worker(THREAD_WORKER_URL, { workerData: data });
      await new Promise((resolve, reject) => {
        w.once("message", m => m === "ready" ? resolve() : reject(new LoomrtError(`thread worker: ${m}`, -9, "LRT_ERR_INTERNAL")));
        w.once("error", e => reject(new LoomrtError(`could not start a thread worker: ${e.message}`, -9, "LRT_ERR_INTERNAL")));
      });
      w.on("message", m => console.error(`loomrt thread worker ${index}: ${m}`));
      w.unref(); // an idle worker does not keep the process alive
      return w;
    }
    const w = new Worker(THREAD_WORKER_URL, { type: "module" });
    await new Promise((resolve, reject) => {
      w.onmessage = ({ data: m }) => m === "ready" ? resolve() : reject(new LoomrtError(`thread worker: ${m}`, -9, "LRT_ERR_INTERNAL"));
      w.onerror = e => reject(new LoomrtError(`could not start a thread worker (${THREAD_WORKER_URL}): ${e.message ?? "error"}`, -9, "LRT_ERR_INTERNAL"));
      w.postMessage(data);
    });
    w.onmessage = ({ data: m }) => console.error(`loomrt thread worker ${index}: ${m}`);
    return w;
  }

  // synchronous, on the thread inside the C call (which may wait: threadSupport())
  spawn(thread, stackTop, tls) {
    const mb = this.mailbox, t0 = now();
    if (this.workers.length === 0) return -1;
    for (;;) {
      const seen = Atomics.load(mb, 0);
      for (let i = 0; i < this.workers.length; i++) {
        const b = 1 + 4 * i;
        if (Atomics.compareExchange(mb, b, IDLE, CLAIMED) === IDLE) {
          mb[b + 1] = thread; mb[b + 2] = stackTop; mb[b + 3] = tls;
          Atomics.store(mb, b, RUN);
          Atomics.notify(mb, b);
          return 0;
        }
      }
      // every worker busy: one may be finishing a thread of a session just freed
      if (now() - t0 > 5000) return -1;
      Atomics.wait(mb, 0, seen, 50);
    }
  }
}

async function instantiateThreads(wasm) {
  const support = threadSupport();
  if (!support.ok) throw new LoomrtError(`threads are not available: ${support.reason}`, -7, "LRT_ERR_UNSUPPORTED");
  if (IS_NODE) {
    // Node 20's V8 (11.3): with its baseline compiler (Liftoff) the thread that joins a worker
    // intermittently never sees the worker's store to the shared memory and waits forever
    // (reproduced: session free hung in about half the runs; none with Liftoff off). V8's flags
    // are per process: this affects WebAssembly compiled from now on (optimised at once instead
    // of tiered; same results, slower start).
    (await import("node:v8")).setFlagsFromString("--no-liftoff");
  }
  const src = await wasmBytes(wasm, THREADS_WASM_URL);
  const module = src instanceof WebAssembly.Module ? src : await WebAssembly.compile(src);
  const memory = new WebAssembly.Memory({ initial: THREADS_INITIAL_PAGES, maximum: MAX_PAGES, shared: true });
  const pool = new ThreadWorkers(module, memory);
  const imports = { wasi_snapshot_preview1: wasiImports(() => memory),
    env: { memory, lrt_wasm_thread_spawn: (thread, stackTop, tls) => pool.spawn(thread, stackTop, tls) } };
  const inst = await WebAssembly.instantiate(module, imports);
  inst.exports._initialize();
  const rt = new Runtime(inst.exports, memory);
  rt.pool = pool;
  return rt;
}

async function instantiate(wasm) {
  const src = await wasmBytes(wasm);
  let memory = null;
  const imports = { wasi_snapshot_preview1: wasiImports(() => memory) };
  const inst = src instanceof WebAssembly.Module ? await WebAssembly.instantiate(src, imports)
    : (await WebAssembly.instantiate(src, imports)).instance;
  memory = inst.exports.memory;
  if (inst.exports._initialize) inst.exports._initialize();
  return new Runtime(inst.exports, memory);
}

const utf8enc = new TextEncoder();
const utf8dec = new TextDecoder("utf-8");

class Runtime {
  constructor(x, memory) {
    this.x = x;
    this.memory = memory;
    this.pool = null; // ThreadWorkers of the threaded build
    // TextDecoder refuses views of a SharedArrayBuffer: copy those bytes first
    this.shared = typeof SharedArrayBuffer === "function" && memory.buffer instanceof SharedArrayBuffer;
  }
  get u8() { return new Uint8Array(this.memory.buffer); }
  get i32() { return new Int32Array(this.memory.buffer); }
  get u32() { return new Uint32Array(this.memory.buffer); }
  get i64() { return new BigInt64Array(this.memory.buffer); }
  get f32() { return new Float32Array(this.memory.buffer); }
  alloc(n) {
    const p = this.x.malloc(Math.max(8, n)) >>> 0;
    if (!p) throw new LoomrtError(`out of memory: could not allocate ${n} bytes in the WebAssembly memory`, -6, "LRT_ERR_OUT_OF_MEMORY");
    return p;
  }
  free(p) { if (p) this.x.free(p); }
  // a scratch block of n bytes for the duration of fn(ptr)
  with(n, fn) { const p = this.alloc(n); try { return fn(p); } finally { this.free(p); } }
  cstr(p) { const u = this.u8; let e = p; while (u[e]) e++; return this._decode(u, p, e); }
  str(p, n) { return this._decode(this.u8, p, p + n); }
  _decode(u, a, b) { return utf8dec.decode(this.shared ? u.slice(a, b) : u.subarray(a, b)); }
  putBytes(bytes) { const p = this.alloc(bytes.length); this.u8.set(bytes, p); return p; }
  check(status, what) {
    if (status === 0) return;
    const msg = this.cstr(this.x.lrt_last_error() >>> 0);
    const code = this.cstr(this.x.lrt_status_name(status) >>> 0);
    throw new LoomrtError(`${what}: ${msg || code}`, status, code);
  }
  get version() { return this.cstr(this.x.lrt_version_string() >>> 0); }
  get kernelPath() { return this.cstr(this.x.lrt_kernel_path() >>> 0); }
}

// ---- argument checks (errors that say what to fix) ------------------------------------------------

function asBytes(v, what) {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (typeof v === "string") return utf8enc.encode(v); // JSON files given as text
  throw new LoomrtError(`${what} must be bytes (Uint8Array or ArrayBuffer), got ${v === null ? "null" : typeof v}`);
}

function num(opts, name, def, lo, hi, integer) {
  const v = opts[name] ?? def;
  if (typeof v !== "number" || Number.isNaN(v) || v < lo || v > hi || (integer && !Number.isInteger(v)))
    throw new LoomrtError(`${name} must be ${integer ? "an integer" : "a number"} in [${lo}, ${hi}], got ${v}`);
  return v;
}

const SAMPLING_KEYS = new Set(["maxTokens", "temperature", "topK", "topP", "minP", "repetitionPenalty", "seed", "chat", "signal"]);

function samplingOptions(opts) {
  if (opts == null) opts = {};
  if (typeof opts !== "object") throw new LoomrtError(`options must be an object, got ${typeof opts}`);
  for (const k of Object.keys(opts))
    if (!SAMPLING_KEYS.has(k)) throw new LoomrtError(`unknown option ${JSON.stringify(k)}; known: ${[...SAMPLING_KEYS].join(", ")}`);
  const seed = opts.seed ?? 0;
  if (!(typeof seed === "bigint" || Number.isSafeInteger(seed)))
    throw new LoomrtError(`seed must be an integer (a safe integer or a BigInt), got ${seed}`);
  return {
    maxTokens: num(opts, "maxTokens", 256, 0, Number.MAX_SAFE_INTEGER, true),
    temperature: num(opts, "temperature", 0, 0, Infinity, false),
    topK: num(opts, "topK", 0, 0, 2 ** 31 - 1, true),
    topP: num(opts, "topP", 1, Number.MIN_VALUE, 1, false),
    minP: num(opts, "minP", 0, 0, 1, false),
    repetitionPenalty: num(opts, "repetitionPenalty", 1, Number.MIN_VALUE, Infinity, false),
    seed: BigInt.asIntN(64, BigInt(seed)),
    chat: !!opts.chat,
    signal: opts.signal,
  };
}

// ---- models -------------------------------------------------------------------------------------

/**
 * Load a model from memory: the bytes of a .gguf file, or an object mapping the file names of a
 * Hugging Face folder ("config.json", "model.safetensors", "tokenizer.json", ...) to their bytes.
 * options: { context, wasm, quantize: "q8_0", int8Activations, allowUnknownConfigKeys }.
 */
export async function load(source, options = {}) {
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_WORKERS + 1)
    throw new LoomrtError(`threads must be an integer in [1, ${MAX_WORKERS + 1}], got ${threads}`);
  const support = threads > 1 ? threadSupport() : { ok: true, reason: "" };
  const useThreads = threads > 1 && support.ok;
  const rt = useThreads ? await init(options.threadsWasm, { threads: true }) : await init(options.wasm);
  let files;
  if (source instanceof Uint8Array || source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    files = [[options.filename ?? "model.gguf", asBytes(source, "the model")]];
  } else if (source && typeof source === "object") {
    files = Object.entries(source).map(([name, v]) => [name, asBytes(v, `file ${JSON.stringify(name)}`)]);
    if (files.length === 0) throw new LoomrtError("no files given: pass the bytes of a .gguf file or {\"config.json\": ..., \"model.safetensors\": ...}");
  } else {
    throw new LoomrtError(`load() expects the bytes of a .gguf file or an object {filename: bytes}, got ${source === null ? "null" : typeof source}`);
  }
  if (options.quantize != null && options.quantize !== "q8_0")
    throw new LoomrtError(`quantize must be undefined or "q8_0", got ${JSON.stringify(options.quantize)}`);
  const flags = (options.allowUnknownConfigKeys ? OPEN_ALLOW_UNKNOWN_CONFIG_KEYS : 0) |
    (options.quantize === "q8_0" ? OPEN_QUANTIZE_Q8_0 : 0) | (options.int8Activations ? OPEN_INT8_ACTIVATIONS : 0);
  const model = new Model(rt, files, flags, options.context, useThreads ? threads : 1);
  if (useThreads) await rt.pool.ensure(rt.pool.reserved + threads - 1);
  if (useThreads) rt.pool.reserved += threads - 1;
  model.threadsFallback = threads > 1 && !useThreads ? support.reason : null;
  return model;
}

export class Model {
  constructor(rt, files, flags, context, threads = 1) {
    this.rt = rt;
    /** Threads its session runs on (1 where threadSupport() says no: see threadsFallback). */
    this.threads = threads;
    const n = files.length;
    // the files stay in wasm memory while the model is open: the weights are used in place
    this._buffers = [];
    const names = files.map(([name]) => utf8enc.encode(name));
    try {
      for (const [, bytes] of files) this._buffers.push(rt.putBytes(bytes));
      for (const nm of names) this._buffers.push(rt.putBytes(nm));
      const tbl = rt.alloc(16 * n + 4);
      try {
        const namesP = tbl, lensP = tbl + 4 * n, dataP = tbl + 8 * n, sizesP = tbl + 12 * n, outP = tbl + 16 * n;
        const u32 = rt.u32;
        for (let i = 0; i < n; i++) {
          u32[(namesP >>> 2) + i] = this._buffers[n + i];
          u32[(lensP >>> 2) + i] = names[i].length;
          u32[(dataP >>> 2) + i] = this._buffers[i];
          u32[(sizesP >>> 2) + i] = files[i][1].length;
        }
        const st = rt.x.lrt_model_open_memory(BigInt(n), namesP, lensP, dataP, sizesP, flags, outP);
        const h = rt.u32[outP >>> 2];
        rt.check(st, `could not open the model (${files.map(f => f[0]).join(", ")})`);
        this._h = h;
      } finally { rt.free(tbl); }
    } catch (e) {
      for (const p of this._buffers) rt.free(p);
      this._buffers = [];
      throw e;
    }
    this.vocabSize = Number(this._info(INFO_VOCAB_SIZE));
    this.contextLength = context == null ? Number(this._info(INFO_CONTEXT_LENGTH))
      : num({ context }, "context", 0, 1, Number(this._info(INFO_CONTEXT_LENGTH)), true);
    this._session = 0;
    this._busy = false;
    this.lastFinishReason = "none";
  }

  _live(what) {
    if (!this._h) throw new LoomrtError(`${what}: the model was disposed; load it again`, -8, "LRT_ERR_STATE");
    return this._h;
  }

  _info(key) {
    return this.rt.with(8, p => { this.rt.check(this.rt.x.lrt_model_get_int(this._h, key, p), "model info"); return this.rt.i64[p >>> 3]; });
  }

  _str(key) {
    return this.rt.with(8, p => { this.rt.check(this.rt.x.lrt_model_get_str(this._h, key, p, p + 4), "model info"); return this.rt.str(this.rt.u32[p >>> 2], this.rt.u32[(p + 4) >>> 2]); });
  }

  /** "llama", "qwen2", ... */
  get architecture() { return this._str(0); }

  /** The kernel path the module runs ("wasm_simd128"). */
  get kernelPath() { return this.rt.kernelPath; }

  /** Token ids of text (addSpecial: the model's BOS/EOS policy; parseSpecial: special-token strings become their ids). */
  tokenize(text, { addSpecial = true, parseSpecial = true } = {}) {
    const h = this._live("tokenize");
    if (typeof text !== "string") throw new LoomrtError(`tokenize expects a string, got ${typeof text}`);
    const rt = this.rt, bytes = utf8enc.encode(text);
    const flags = (addSpecial ? TOKENIZE_ADD_SPECIAL : 0) | (parseSpecial ? TOKENIZE_PARSE_SPECIAL : 0);
    const tp = rt.putBytes(bytes);
    try {
      return rt.with(8, np => {
        let cap = bytes.length + 8;
        for (;;) {
          const ids = rt.alloc(4 * cap);
          try {
            const st = rt.x.lrt_tokenize(h, tp, bytes.length, flags, ids, BigInt(cap), np);
            const count = Number(rt.i64[np >>> 3]);
            if (st === ERR_BUFFER_TOO_SMALL) { cap = count; continue; }
            rt.check(st, "tokenize");
            return Array.from(rt.i32.subarray(ids >>> 2, (ids >>> 2) + count));
          } finally { rt.free(ids); }
        }
      });
    } finally { rt.free(tp); }
  }

  _ids(ids, what) {
    if (!Array.isArray(ids) && !(ids instanceof Int32Array)) throw new LoomrtError(`${what} expects an array of token ids`);
    for (let i = 0; i < ids.length; i++) {
      const t = ids[i];
      if (!Number.isInteger(t) || t < 0 || t >= this.vocabSize)
        throw new LoomrtError(`${what}: token id ${t} at index ${i} is outside the vocabulary [0, ${this.vocabSize})`);
    }
    return ids;
  }

  _putIds(ids) {
    const p = this.rt.alloc(4 * ids.length);
    this.rt.i32.set(ids, p >>> 2);
    return p;
  }

  /** Text of token ids. */
  detokenize(ids, { skipSpecial = false } = {}) {
    const h = this._live("detokenize");
    this._ids(ids, "detokenize");
    const rt = this.rt, ip = this._putIds(ids);
    try {
      return rt.with(4, lp => {
        let cap = 16 * ids.length + 16;
        for (;;) {
          const tp = rt.alloc(cap);
          try {
            const st = rt.x.lrt_detokenize(h, ip, BigInt(ids.length), skipSpecial ? DETOKENIZE_SKIP_SPECIAL : 0, tp, cap, lp);
            const len = rt.u32[lp >>> 2];
            if (st === ERR_BUFFER_TOO_SMALL) { cap = len; continue; }
            rt.check(st, "detokenize");
            return rt.str(tp, len);
          } finally { rt.free(tp); }
        }
      });
    } finally { rt.free(ip); }
  }

  /** Render chat messages ([{role, content}] or one user message) with the model's template. */
  applyChatTemplate(messages) {
    const h = this._live("applyChatTemplate");
    if (typeof messages === "string") messages = [{ role: "user", content: messages }];
    if (!Array.isArray(messages) || messages.length === 0) throw new LoomrtError("chat expects a string or a non-empty array of {role, content} messages");
    const rt = this.rt, n = messages.length, held = [];
    try {
      const tbl = rt.alloc(16 * n); held.push(tbl);
      messages.forEach((m, i) => {
        if (!m || typeof m.role !== "string" || typeof m.content !== "string")
          throw new LoomrtError(`messages[${i}] must be {role: string, content: string}`);
        const r = utf8enc.encode(m.role), c = utf8enc.encode(m.content);
        const rp = rt.putBytes(r), cp = rt.putBytes(c); held.push(rp, cp);
        const u32 = rt.u32, b = tbl >>> 2;
        u32[b + i] = rp; u32[b + n + i] = r.length; u32[b + 2 * n + i] = cp; u32[b + 3 * n + i] = c.length;
      });
      return rt.with(4, lp => {
        const args = [h, 0, BigInt(n), tbl, tbl + 4 * n, tbl + 8 * n, tbl + 12 * n, 1];
        let st = rt.x.lrt_chat_apply(...args, 0, 0, lp);
        if (st !== ERR_BUFFER_TOO_SMALL) rt.check(st, "chat template");
        const len = rt.u32[lp >>> 2];
        return rt.with(len + 1, op => { rt.check(rt.x.lrt_chat_apply(...args, op, len + 1, lp), "chat template"); return rt.str(op, len); });
      });
    } finally { for (const p of held) rt.free(p); }
  }

  _sess() {
    if (!this._session) {
      const rt = this.rt;
      this._session = rt.with(4, p => {
        rt.check(rt.x.lrt_session_new(this._h, BigInt(this.contextLength), this.threads, p), "could not create a session");
        return rt.u32[p >>> 2];
      });
    }
    return this._session;
  }

  _acquire(what) {
    this._live(what);
    if (this._busy) throw new LoomrtError(`${what}: the model is busy with another generation (finish or break out of the stream first)`, -11, "LRT_ERR_BUSY");
    this._busy = true;
    return this._sess();
  }

  /** Logits of every position of a token sequence: Float32Array of ids.length x vocabSize (row-major). */
  logits(ids) {
    const s = this._acquire("logits");
    try {
      this._ids(ids, "logits");
      if (ids.length === 0) throw new LoomrtError("logits expects at least one token id");
      const rt = this.rt;
      rt.check(rt.x.lrt_session_reset(s), "logits");
      const ip = this._putIds(ids);
      try { rt.check(rt.x.lrt_session_eval(s, ip, BigInt(ids.length), 1), "logits"); } finally { rt.free(ip); }
      return this._readLogits(s);
    } finally { this._busy = false; }
  }

  _readLogits(s) {
    const rt = this.rt;
    return rt.with(24, p => {
      rt.check(rt.x.lrt_session_logits(s, p, p + 8, p + 16), "logits");
      const ptr = rt.u32[p >>> 2], rows = Number(rt.i64[(p + 8) >>> 3]), vocab = Number(rt.i64[(p + 16) >>> 3]);
      return new Float32Array(rt.f32.subarray(ptr >>> 2, (ptr >>> 2) + rows * vocab)); // a copy
    });
  }

  /** Generated pieces one by one (a synchronous iterator of {token, text}; eos excluded; a last
   * piece with token -1 carries held-back bytes of an unfinished character, if any). */
  *steps(prompt, options = {}) {
    const o = samplingOptions(options);
    const s = this._acquire("steps");
    try {
      const rt = this.rt;
      this.lastFinishReason = "none";
      this._start(s, prompt, o);
      for (;;) {
        if (o.signal?.aborted) { this.lastFinishReason = "aborted"; throw o.signal.reason ?? new LoomrtError("aborted"); }
        const step = rt.with(16, p => {
          rt.check(rt.x.lrt_session_step(s, p, p + 4, p + 8), "generation step");
          const tok = rt.i32[p >>> 2], tp = rt.u32[(p + 4) >>> 2], tl = rt.u32[(p + 8) >>> 2];
          return { token: tok, text: rt.str(tp, tl) };
        });
        if (step.token < 0) {
          this.lastFinishReason = FINISH[Number(rt.with(8, p => { rt.check(rt.x.lrt_session_get_int(s, SESSION_FINISH_REASON, p), "finish reason"); return rt.i64[p >>> 3]; }))];
          if (step.text) yield step;
          return;
        }
        yield step;
      }
    } finally { this._busy = false; }
  }

  /** The same as an async iterator: `for await (const {token, text} of model.stream(...))`. It
   * gives the event loop a turn between tokens (so a page can repaint and an AbortSignal fire). */
  async *stream(prompt, options = {}) {
    const it = this.steps(prompt, options);
    try {
      for (const step of it) {
        yield step;
        await yieldToEventLoop();
      }
    } finally { it.return(); }
  }

  _start(s, prompt, o) {
    const rt = this.rt, x = rt.x;
    rt.check(x.lrt_session_set_float(s, PARAM.temperature, o.temperature), "temperature");
    rt.check(x.lrt_session_set_int(s, PARAM.topK, BigInt(o.topK)), "topK");
    rt.check(x.lrt_session_set_float(s, PARAM.topP, o.topP), "topP");
    rt.check(x.lrt_session_set_float(s, PARAM.minP, o.minP), "minP");
    rt.check(x.lrt_session_set_float(s, PARAM.repetitionPenalty, o.repetitionPenalty), "repetitionPenalty");
    rt.check(x.lrt_session_set_int(s, PARAM.seed, o.seed), "seed");
    rt.check(x.lrt_session_set_int(s, PARAM.maxTokens, BigInt(o.maxTokens)), "maxTokens");
    if (typeof prompt === "string" || o.chat) {
      const text = o.chat ? this.applyChatTemplate(prompt) : prompt;
      if (!text) throw new LoomrtError("the prompt is empty: give some text to continue");
      const b = utf8enc.encode(text), p = rt.putBytes(b);
      // plain text: the model's BOS policy and special tokens parsed (as Python's generate); chat text holds its bos
      const flags = o.chat ? TOKENIZE_PARSE_SPECIAL : TOKENIZE_ADD_SPECIAL | TOKENIZE_PARSE_SPECIAL;
      try { rt.check(x.lrt_session_prompt(s, p, b.length, flags), "prompt"); } finally { rt.free(p); }
    } else {
      this._ids(prompt, "prompt");
      if (prompt.length === 0) throw new LoomrtError("the prompt is empty: give at least one token id");
      const p = this._putIds(prompt);
      try { rt.check(x.lrt_session_prompt_tokens(s, p, BigInt(prompt.length), 0), "prompt"); } finally { rt.free(p); }
    }
  }

  /** Generate a completion: {text, tokenIds, finishReason ("stop", "length", "context"), seconds}. */
  generate(prompt, options = {}) {
    const t0 = now();
    const tokenIds = [];
    let text = "";
    for (const step of this.steps(prompt, options)) {
      if (step.token >= 0) tokenIds.push(step.token);
      text += step.text;
    }
    return { text, tokenIds, finishReason: this.lastFinishReason, seconds: (now() - t0) / 1000 };
  }

  /** Answer a chat (one user message or [{role, content}]) with the model's chat template. */
  chat(messages, options = {}) { return this.generate(messages, { ...options, chat: true }); }

  /** Free the model and its session (the object cannot be used afterwards). */
  dispose() {
    if (!this._h) return;
    if (this._busy) throw new LoomrtError("dispose: a generation is in progress (break out of the stream first)", -11, "LRT_ERR_BUSY");
    if (this._session) this.rt.x.lrt_session_free(this._session);
    this.rt.x.lrt_model_close(this._h);
    for (const p of this._buffers) this.rt.free(p);
    this._session = 0; this._h = 0; this._buffers = [];
    if (this.rt.pool) this.rt.pool.reserved -= this.threads - 1;
  }
}

function now() { return typeof performance !== "undefined" ? performance.now() : Date.now(); }

// a macrotask turn (setTimeout clamps to 4 ms when nested; a MessageChannel does not)
function yieldToEventLoop() {
  if (typeof setImmediate === "function") return new Promise(r => setImmediate(r));
  if (typeof MessageChannel === "function") {
    return new Promise(r => { const c = new MessageChannel(); c.port1.onmessage = () => { c.port1.close(); r(); }; c.port2.postMessage(0); });
  }
  return new Promise(r => setTimeout(r, 0));
}

export const Loomrt = { load, init, threadSupport, LoomrtError };
export default Loomrt;
