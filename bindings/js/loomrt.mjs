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
const INFO_VOCAB_SIZE = 0, INFO_CONTEXT_LENGTH = 1, INFO_TOKENIZER_SIZE = 15, INFO_EOG_COUNT = 18;
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
    fd_fdstat_set_flags() { return WASI_EBADF; },
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

const SAMPLING_KEYS = new Set(["maxTokens", "temperature", "topK", "topP", "minP", "repetitionPenalty", "seed", "chat", "signal", "receipt", "stop"]);

// stop strings as Python's Model.generate takes them: a list of strings (not one string); the
// receipt lists them as given, empty ones included, and empty ones never match
function stopStrings(stop) {
  if (stop == null) return [];
  if (!Array.isArray(stop) || !stop.every(v => typeof v === "string"))
    throw new LoomrtError(`stop must be an array of strings (e.g. ["\\n\\n"]), got ${typeof stop === "string" ? "a string" : Array.isArray(stop) ? "an array with a " + typeof stop.find(v => typeof v !== "string") : stop === null ? "null" : typeof stop}`);
  stop.forEach((v, i) => {
    if (/\p{Cs}/u.test(v)) throw new LoomrtError(`stop[${i}] is not well-formed Unicode (a lone surrogate): give whole characters`);
  });
  return stop.slice();
}

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
    receipt: !!opts.receipt,
    stop: stopStrings(opts.stop),
  };
}

// ---- text of a generation: Python's StreamDecoder and StopScanner ----------------------------------
// Python's Model.stream/generate decode each new token with tokenizer.StreamDecoder (a window
// of already shown ids decoded with the new ones; the difference is the new text, held back
// while it ends in U+FFFD) and cut the text at the first stop string with sampling.StopScanner.
// The same here, with the same C detokenizer, so a stop string ends a generation at the same
// token with the same text. Lengths Python counts in code points are counted so here.
const cpLen = t => { let n = t.length; for (let i = 0; i < t.length; i++) { const c = t.charCodeAt(i); if (c >= 0xd800 && c < 0xdc00 && i + 1 < t.length) { const d = t.charCodeAt(i + 1); if (d >= 0xdc00 && d < 0xe000) { n--; i++; } } } return n; };
const cpSlice = (t, n) => { let i = 0; for (; n > 0 && i < t.length; n--) { const c = t.charCodeAt(i); i += c >= 0xd800 && c < 0xdc00 && i + 1 < t.length && (t.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1; } return t.slice(i); };

class StreamDecoder {
  constructor(model) { this.model = model; this.ids = []; this.read = 0; }
  _texts() {
    return [this.read ? this.model.detokenize(this.ids.slice(0, this.read)) : "", this.ids.length ? this.model.detokenize(this.ids) : ""];
  }
  add(id) {
    this.ids.push(id);
    const [prefix, full] = this._texts(), n = cpLen(prefix);
    if (full.endsWith("\ufffd") || cpLen(full) <= n) return "";
    this.ids.splice(0, this.read);
    this.read = this.ids.length;
    return cpSlice(full, n);
  }
  flush() {
    const [prefix, full] = this._texts(), n = cpLen(prefix);
    this.ids = []; this.read = 0;
    return cpLen(full) > n ? cpSlice(full, n) : "";
  }
}

class StopScanner {
  constructor(stops) {
    this.stops = stops.filter(t => t);
    // held back: the longest stop string but one (UTF-16 units here, never half of a pair;
    // holding more than Python does changes when text is shown, not what or where it stops)
    this.hold = Math.max(1, ...this.stops.map(t => t.length)) - 1;
    this.pending = "";
    this.stopped = false;
  }
  _cut() {
    let cut = -1;
    for (const t of this.stops) { const i = this.pending.indexOf(t); if (i >= 0 && (cut < 0 || i < cut)) cut = i; }
    return cut;
  }
  feed(text) {
    if (this.stopped) return "";
    this.pending += text;
    if (!this.stops.length) { const out = this.pending; this.pending = ""; return out; }
    const cut = this._cut();
    if (cut >= 0) { this.stopped = true; const out = this.pending.slice(0, cut); this.pending = ""; return out; }
    if (this.pending.length <= this.hold) return "";
    let keep = this.pending.length - this.hold;
    if ((this.pending.charCodeAt(keep - 1) & 0xfc00) === 0xd800) keep--;
    const out = this.pending.slice(0, keep);
    this.pending = this.pending.slice(keep);
    return out;
  }
  finish(text = "") {
    if (this.stopped) return "";
    this.pending += text;
    const cut = this.stops.length ? this._cut() : -1;
    if (cut >= 0) { this.stopped = true; this.pending = this.pending.slice(0, cut); }
    const out = this.pending;
    this.pending = "";
    return out;
  }
}

// what a receipt records per step (Python's audit.StepRecorder): the token sampled and the
// SHA-256 of the logits row it was sampled from, plus the running hashes over all steps
class StepRecorder {
  constructor() {
    this.tokens = []; this.digests = []; this.promptIds = []; this.finish = "length";
    this.all = new Sha256(); this.tokAll = new Sha256(); this.roll = ROLLING_SEED;
    this.tb = new Uint8Array(4);
  }
  add(row, tok) {
    const bits = new Uint32Array(row.buffer, row.byteOffset, row.length);
    for (let j = 0; j < row.length; j++) if (Number.isNaN(row[j])) bits[j] = 0x7fc00000; // canonical NaN
    const rb = new Uint8Array(row.buffer, row.byteOffset, row.byteLength); // little-endian float32 (wasm and every JS host are LE)
    const d = new Sha256().update(rb).digest();
    this.all.update(rb);
    new DataView(this.tb.buffer).setInt32(0, tok, true);
    this.tokAll.update(this.tb);
    this.roll = new Sha256().update(this.roll).update(d).update(this.tb).digest();
    this.digests.push(hex(d));
    this.tokens.push(tok);
  }
}

// ---- audit: model hash, tokenizer hash, receipts (the definitions of loomrt/audit.py) -----------
// SHA-256 (FIPS 180-4), synchronous and incremental: a receipt hashes every step's logits row as
// the generation runs (crypto.subtle.digest is one-shot and asynchronous; it hashes the model files).
const SHA_K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

class Sha256 {
  constructor() {
    this.h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.buf = new Uint8Array(64); this.n = 0; this.len = 0; this.w = new Uint32Array(64);
  }
  _block(b, o) {
    const w = this.w, h = this.h;
    for (let i = 0; i < 16; i++) w[i] = (b[o + 4 * i] << 24) | (b[o + 4 * i + 1] << 16) | (b[o + 4 * i + 2] << 8) | b[o + 4 * i + 3];
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15], c = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((c >>> 17) | (c << 15)) ^ ((c >>> 19) | (c << 13)) ^ (c >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + SHA_K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = bb; bb = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += bb; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  update(bytes) {
    let i = 0;
    this.len += bytes.length;
    if (this.n) {
      while (this.n < 64 && i < bytes.length) this.buf[this.n++] = bytes[i++];
      if (this.n < 64) return this;
      this._block(this.buf, 0); this.n = 0;
    }
    for (; i + 64 <= bytes.length; i += 64) this._block(bytes, i);
    while (i < bytes.length) this.buf[this.n++] = bytes[i++];
    return this;
  }
  digest() {
    const bits = this.len * 8, pad = new Uint8Array(((this.n < 56 ? 56 : 120) - this.n) + 8);
    pad[0] = 0x80;
    const dv = new DataView(pad.buffer);
    dv.setUint32(pad.length - 8, Math.floor(bits / 0x100000000)); dv.setUint32(pad.length - 4, bits >>> 0);
    this.update(pad);
    const out = new Uint8Array(32), od = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) od.setUint32(4 * i, this.h[i]);
    return out;
  }
}

const hex = b => Array.from(b, x => x.toString(16).padStart(2, "0")).join("");
const fromHex = s => Uint8Array.from(s.match(/../g), x => parseInt(x, 16));
const sha256Sync = bytes => hex(new Sha256().update(bytes).digest());

/** SHA-256 of bytes as lowercase hex (crypto.subtle where there is one, else the JS one). */
export async function sha256Hex(bytes) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return sha256Sync(bytes);
  // subtle refuses views of a SharedArrayBuffer (the threaded module's memory): copy those
  const shared = typeof SharedArrayBuffer === "function" && bytes.buffer instanceof SharedArrayBuffer;
  return hex(new Uint8Array(await subtle.digest("SHA-256", shared ? bytes.slice() : bytes)));
}

const ROLLING_SEED = new Sha256().update(utf8enc.encode("loomrt-steps-v1")).digest();
const RECEIPT_FORMAT = "loomrt-receipt", RECEIPT_VERSION = 1, MODEL_HASH_SCHEME = "loomrt-files-v1";
const MODEL_FOLDER_FILES = ["config.json", "generation_config.json"];
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json"];
const META_FLOAT32 = 6, META_BOOL = 7, META_STRING = 8, META_ARRAY = 9, META_UINT64 = 10, META_FLOAT64 = 12;

// byte order of UTF-8 names (Python's sorted(key=encode))
function byteOrder(a, b) {
  const x = utf8enc.encode(a), y = utf8enc.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

// Python's repr of a float, as json.dumps writes it (shortest round trip: the same digits as JS)
function pyFloat(v) {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v === 0) return Object.is(v, -0) ? "-0.0" : "0.0";
  const [mant, e] = v.toExponential().split("e"), exp = Number(e);
  const neg = mant[0] === "-", digits = mant.replace("-", "").replace(".", "");
  let s;
  if (exp >= -4 && exp < 16) {
    if (exp < 0) s = "0." + "0".repeat(-exp - 1) + digits;
    else if (digits.length <= exp + 1) s = digits + "0".repeat(exp + 1 - digits.length) + ".0";
    else s = digits.slice(0, exp + 1) + "." + digits.slice(exp + 1);
  } else {
    s = digits[0] + (digits.length > 1 ? "." + digits.slice(1) : "") + "e" + (exp < 0 ? "-" : "+") + String(Math.abs(exp)).padStart(2, "0");
  }
  return (neg ? "-" : "") + s;
}

// json.dumps(v, sort_keys=True, ensure_ascii=False, separators=(",", ":")) of metadata values
// ({kind: "float"|"int"|"bool"|"str", v} leaves, arrays, and plain objects)
function pyJson(v) {
  if (Array.isArray(v)) return "[" + v.map(pyJson).join(",") + "]";
  if (v.kind === "float") return pyFloat(v.v);
  if (v.kind === "int") return String(v.v);
  if (v.kind === "bool") return v.v ? "true" : "false";
  if (v.kind === "str") return JSON.stringify(v.v);
  return "{" + Object.keys(v).sort().map(k => JSON.stringify(k) + ":" + pyJson(v[k])).join(",") + "}";
}

/** A receipt as JSON text (seeds beyond 2^53 are BigInts: written as plain integers). */
export function receiptJSON(receipt, indent = 1) {
  const marks = [];
  const text = JSON.stringify(receipt, (k, v) => typeof v === "bigint" ? `\u0000${marks.push(v) - 1}\u0000` : v, indent);
  return text.replace(/"\\u0000(\d+)\\u0000"/g, (_, i) => String(marks[Number(i)]));
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
  model.quantize = options.quantize ?? null;
  model.int8Activations = !!options.int8Activations;
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
    this._files = files.map(([name, bytes]) => ({ name, size: bytes.length }));
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
   * piece with token -1 carries held-back bytes of an unfinished character, if any). With
   * `stop` strings the text is cut before the first one and the generation ends there. */
  *steps(prompt, options = {}) {
    const o = samplingOptions(options);
    if (o.receipt) throw new LoomrtError("steps() cannot make a receipt (receipts are hashed asynchronously): use generate() or stream() with {receipt: true}");
    if (o.stop.some(t => t)) { yield* this._run(prompt, o, null); return; }
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
   * gives the event loop a turn between tokens (so a page can repaint and an AbortSignal fire).
   * With {receipt: true}, `lastReceipt` holds the generation's receipt once the stream ended
   * (null while it runs, and after one that was aborted or broken out of). */
  async *stream(prompt, options = {}) {
    this.lastReceipt = null;
    let it, rec = null, o = null;
    if (options?.receipt) {
      o = samplingOptions(options);
      rec = new StepRecorder();
      it = this._run(prompt, o, rec);
    } else it = this.steps(prompt, options);
    try {
      for (const step of it) {
        yield step;
        await yieldToEventLoop();
      }
    } finally { it.return(); }
    if (rec) this.lastReceipt = await this._receipt(o, rec);
  }

  _start(s, prompt, o) {
    const rt = this.rt, x = rt.x;
    this._params(s, o);
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

  _params(s, o) {
    const rt = this.rt, x = rt.x;
    rt.check(x.lrt_session_set_float(s, PARAM.temperature, o.temperature), "temperature");
    rt.check(x.lrt_session_set_int(s, PARAM.topK, BigInt(o.topK)), "topK");
    rt.check(x.lrt_session_set_float(s, PARAM.topP, o.topP), "topP");
    rt.check(x.lrt_session_set_float(s, PARAM.minP, o.minP), "minP");
    rt.check(x.lrt_session_set_float(s, PARAM.repetitionPenalty, o.repetitionPenalty), "repetitionPenalty");
    rt.check(x.lrt_session_set_int(s, PARAM.seed, o.seed), "seed");
    rt.check(x.lrt_session_set_int(s, PARAM.maxTokens, BigInt(o.maxTokens)), "maxTokens");
  }

  /** Generate a completion: {text, tokenIds, finishReason ("stop", "length", "context"), seconds}.
   * With {receipt: true}: a promise of the same with `receipt`, a generation receipt in the JSON
   * format of native loomrt (docs/determinism.md) that `loomrt verify` replays. */
  generate(prompt, options = {}) {
    if (options?.receipt) return this._generateWithReceipt(prompt, options);
    const t0 = now();
    const tokenIds = [];
    let text = "";
    for (const step of this.steps(prompt, options)) {
      if (step.token >= 0) tokenIds.push(step.token);
      text += step.text;
    }
    return { text, tokenIds, finishReason: this.lastFinishReason, seconds: (now() - t0) / 1000 };
  }

  async _generateWithReceipt(prompt, options) {
    const o = samplingOptions(options), rec = new StepRecorder();
    const t0 = now();
    const tokenIds = [];
    let text = "";
    for (const step of this._run(prompt, o, rec)) {
      if (step.token >= 0) tokenIds.push(step.token);
      text += step.text;
    }
    const seconds = (now() - t0) / 1000;
    return { text, tokenIds, finishReason: rec.finish, seconds, receipt: await this._receipt(o, rec) };
  }

  _promptIds(prompt, o) {
    let ids;
    if (typeof prompt === "string" || o.chat) {
      const text = o.chat ? this.applyChatTemplate(prompt) : prompt;
      if (!text) throw new LoomrtError("the prompt is empty: give some text to continue");
      ids = this.tokenize(text, { addSpecial: !o.chat, parseSpecial: true });
      if (ids.length === 0) throw new LoomrtError("prompt: the prompt gives no tokens");
    } else {
      this._ids(prompt, "prompt");
      if (prompt.length === 0) throw new LoomrtError("the prompt is empty: give at least one token id");
      ids = Array.from(prompt);
    }
    if (ids.length > this.contextLength)
      throw new LoomrtError(`the prompt has ${ids.length} tokens but the context holds ${this.contextLength}; shorten the prompt or load the model with a larger context`, -5, "LRT_ERR_CONTEXT_FULL");
    return ids;
  }

  // The generation loop of Python's Model.generate / stream (_generate_on and _stream_text):
  // evaluate the prompt; per step sample (with `rec`: record the row sampled from and the
  // token), stop at an end-of-generation id, after maxTokens or when the context is full, else
  // evaluate the token; the text through a StreamDecoder, cut at the first stop string (which
  // ends the generation with finish reason "stop"). Yields {token, text} per generated token and
  // a last {token: -1, text} for text held back to the end.
  *_run(prompt, o, rec) {
    const s = this._acquire("generate");
    const rt = this.rt, x = rt.x;
    try {
      this.lastFinishReason = "none";
      const ids = this._promptIds(prompt, o);
      if (rec) rec.promptIds = ids;
      rt.check(x.lrt_session_reset(s), "generate");
      this._params(s, o);
      const eog = new Set();
      const nEog = Number(this._info(INFO_EOG_COUNT));
      for (let e = 0; e < nEog; e++) eog.add(rt.with(4, p => { rt.check(x.lrt_model_eog_id(this._h, BigInt(e), p), "eog id"); return rt.i32[p >>> 2]; }));
      // no tokenizer (token ids in, as Python's generate then): no text and no stop strings
      const tokSize = this._hasTokenizer() ? Number(this._info(INFO_TOKENIZER_SIZE)) : 0;
      const dec = tokSize ? new StreamDecoder(this) : null;
      const scan = new StopScanner(tokSize ? o.stop : []);
      const ip = this._putIds(ids);
      try { rt.check(x.lrt_session_eval(s, ip, BigInt(ids.length), 0), "prompt"); } finally { rt.free(ip); }
      let finish = "length";
      for (let i = 0; i < o.maxTokens; i++) {
        if (o.signal?.aborted) { this.lastFinishReason = "aborted"; throw o.signal.reason ?? new LoomrtError("aborted"); }
        const row = rec ? rt.with(24, p => {
          rt.check(x.lrt_session_logits(s, p, p + 8, p + 16), "logits");
          const ptr = rt.u32[p >>> 2], rows = Number(rt.i64[(p + 8) >>> 3]), v = Number(rt.i64[(p + 16) >>> 3]);
          const b = ((ptr >>> 2) + (rows - 1) * v);
          return new Float32Array(rt.f32.subarray(b, b + v)); // a copy
        }) : null;
        const tok = rt.with(4, p => { rt.check(x.lrt_session_sample(s, p), "sample"); return rt.i32[p >>> 2]; });
        if (rec) rec.add(row, tok);
        if (eog.has(tok)) { finish = "stop"; break; }
        const text = dec ? scan.feed(tok < tokSize ? dec.add(tok) : "") : "";
        if (scan.stopped) {
          if (rec) rec.finish = "stop";
          this.lastFinishReason = "stop";
          yield { token: tok, text };
          return;
        }
        yield { token: tok, text };
        if (i + 1 === o.maxTokens) break;
        if (Number(x.lrt_session_position(s)) >= this.contextLength) { finish = "context"; break; }
        const tp = this._putIds([tok]);
        try { rt.check(x.lrt_session_eval(s, tp, 1n, 0), "generation step"); } finally { rt.free(tp); }
      }
      const text = dec ? scan.finish(dec.flush()) : "";
      if (scan.stopped) finish = "stop";
      if (rec) rec.finish = finish;
      this.lastFinishReason = finish;
      if (text) yield { token: -1, text };
    } finally { this._busy = false; }
  }

  // the receipt of a generation _run recorded (Python's audit.make_receipt)
  async _receipt(o, rec) {
    const rt = this.rt, x = rt.x;
    const mh = await this._modelHashFull();
    const seed = o.seed >= BigInt(Number.MIN_SAFE_INTEGER) && o.seed <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(o.seed) : o.seed;
    return {
      format: RECEIPT_FORMAT,
      version: RECEIPT_VERSION,
      loomrt_version: rt.version,
      numerics_version: x.lrt_numerics_version(),
      model: {
        hash: mh.hash, hash_scheme: MODEL_HASH_SCHEME, files: mh.files.map(f => ({ ...f })),
        name: this._str(3), architecture: this.architecture,
        quantize: this.quantize ?? null, int8_activations: !!this.int8Activations,
      },
      tokenizer: { hash: await this.tokenizerHash() },
      sampling: { min_p: o.minP, repetition_penalty: o.repetitionPenalty, seed, temperature: o.temperature, top_k: o.topK, top_p: o.topP },
      max_tokens: o.maxTokens,
      context_length: this.contextLength,
      stop: o.stop.slice(),
      chat: o.chat,
      prompt_token_ids: rec.promptIds,
      output_token_ids: rec.tokens,
      finish_reason: rec.finish,
      step_logits_sha256: rec.digests,
      logits_rolling_sha256: hex(rec.roll),
      tokens_sha256: hex(rec.tokAll.digest()),
      logits_sha256: hex(rec.all.digest()),
      made_on: { kernel_path: rt.kernelPath, machine: "wasm32", system: IS_NODE ? "node" : "browser", threads: this.threads },
    };
  }

  _isGguf() { return this._str(2) === "gguf"; }

  _hasTokenizer() {
    if (this._isGguf()) return this._metaKeys().some(k => k.startsWith("tokenizer."));
    return this._files.some(f => f.name === "tokenizer.json");
  }

  // bytes of a loaded file, in place in the module's memory (the model keeps them)
  _fileBytes(name) {
    const i = this._files.findIndex(f => f.name === name);
    if (i < 0) throw new LoomrtError(`model hash: ${name} is missing (pass it to load())`, -4, "LRT_ERR_NOT_FOUND");
    const p = this._buffers[i];
    return this.rt.u8.subarray(p, p + this._files[i].size);
  }

  async _manifest(names) {
    const files = [];
    let lines = "";
    for (const name of [...new Set(names)].sort(byteOrder)) {
      const digest = await sha256Hex(this._fileBytes(name));
      files.push({ name, size: this._files.find(f => f.name === name).size, sha256: digest });
      lines += `${digest}  ${name}\n`;
    }
    return { hash: await sha256Hex(utf8enc.encode(lines)), files };
  }

  async _modelHashFull() {
    this._live("modelHash");
    if (this._modelHashCache) return this._modelHashCache;
    let r;
    const has = n => this._files.some(f => f.name === n);
    if (this._isGguf()) {
      const f = this._files[0];
      const digest = await sha256Hex(this._fileBytes(f.name));
      r = { hash: digest, files: [{ name: f.name, size: f.size, sha256: digest }] };
    } else {
      const names = MODEL_FOLDER_FILES.filter(has);
      if (has("model.safetensors.index.json")) {
        let shards;
        try { shards = [...new Set(Object.values(JSON.parse(utf8dec.decode(this._fileBytes("model.safetensors.index.json").slice())).weight_map))].sort(); }
        catch (e) { throw new LoomrtError(`model.safetensors.index.json: cannot read the shard list (${e.message})`, -3, "LRT_ERR_FORMAT"); }
        names.push("model.safetensors.index.json", ...shards);
      } else names.push("model.safetensors");
      r = await this._manifest(names);
    }
    this._modelHashCache = r;
    return r;
  }

  /** The model hash (as Python's loomrt.model_hash: SHA-256 of a .gguf file's bytes, or of the
   * sha256sum-style manifest of an HF folder's config and weight files), lowercase hex. */
  async modelHash() { return (await this._modelHashFull()).hash; }

  _metaKeys() {
    const rt = this.rt, x = rt.x, h = this._live("metadata"), keys = [];
    const n = Number(x.lrt_model_meta_count(h));
    rt.with(8, p => {
      for (let i = 0; i < n; i++) {
        rt.check(x.lrt_model_meta_key(h, BigInt(i), p, p + 4), "metadata key");
        keys.push(rt.str(rt.u32[p >>> 2], rt.u32[(p + 4) >>> 2]));
      }
    });
    return keys;
  }

  // the tokenizer.* GGUF metadata as typed leaves for pyJson
  _tokenizerMeta() {
    const rt = this.rt, x = rt.x, h = this._h, meta = {};
    for (const key of this._metaKeys()) {
      if (!key.startsWith("tokenizer.")) continue;
      const kb = utf8enc.encode(key), kp = rt.putBytes(kb), sc = rt.alloc(32);
      try {
        rt.check(x.lrt_model_meta_type(h, kp, kb.length, sc, sc + 4, sc + 8), "metadata type");
        const typ = rt.i32[sc >>> 2], et = rt.i32[(sc + 4) >>> 2], count = Number(rt.i64[(sc + 8) >>> 3]);
        const vals = [];
        for (let j = 0; j < count; j++) {
          const J = BigInt(j);
          if (et === META_STRING) { rt.check(x.lrt_model_meta_str(h, kp, kb.length, J, sc + 16, sc + 20), "metadata"); vals.push({ kind: "str", v: rt.str(rt.u32[(sc + 16) >>> 2], rt.u32[(sc + 20) >>> 2]) }); }
          else if (et === META_FLOAT32 || et === META_FLOAT64) { rt.check(x.lrt_model_meta_float(h, kp, kb.length, J, sc + 16), "metadata"); vals.push({ kind: "float", v: new Float64Array(rt.memory.buffer, sc + 16, 1)[0] }); }
          else if (et === META_BOOL) { rt.check(x.lrt_model_meta_int(h, kp, kb.length, J, sc + 16), "metadata"); vals.push({ kind: "bool", v: rt.i64[(sc + 16) >>> 3] !== 0n }); }
          else if (et === META_UINT64) { rt.check(x.lrt_model_meta_uint(h, kp, kb.length, J, sc + 16), "metadata"); vals.push({ kind: "int", v: BigInt.asUintN(64, rt.i64[(sc + 16) >>> 3]) }); }
          else { rt.check(x.lrt_model_meta_int(h, kp, kb.length, J, sc + 16), "metadata"); vals.push({ kind: "int", v: rt.i64[(sc + 16) >>> 3] }); }
        }
        meta[key] = typ === META_ARRAY ? vals : vals[0];
      } finally { rt.free(kp); rt.free(sc); }
    }
    return meta;
  }

  /** The tokenizer hash (as Python's loomrt.tokenizer_hash), lowercase hex, or null when the model has none. */
  async tokenizerHash() {
    this._live("tokenizerHash");
    if (this._tokenizerHashCache !== undefined) return this._tokenizerHashCache;
    let r = null;
    if (this._hasTokenizer()) {
      if (this._isGguf()) r = await sha256Hex(utf8enc.encode(pyJson(this._tokenizerMeta())));
      else {
        const names = TOKENIZER_FILES.filter(n => this._files.some(f => f.name === n));
        r = names.length ? (await this._manifest(names)).hash : null;
      }
    }
    this._tokenizerHashCache = r;
    return r;
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

export const Loomrt = { load, init, threadSupport, LoomrtError, receiptJSON, sha256Hex };
export default Loomrt;
