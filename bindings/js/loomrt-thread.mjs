// loomrt-thread.mjs -- one thread of the threaded build (loomrt-threads.wasm): a Web Worker, or a
// Node worker thread, started by loomrt.mjs. It instantiates the module over the shared memory
// and then waits on its mailbox slot; each time the C thread pool starts a thread on it
// (lrt_wasm_thread_spawn), it points its instance's stack pointer and thread-local block at the
// ones the thread was given and runs lrt_wasm_thread_main until the pool stops the thread.
// Not meant to be used directly.
const IDLE = 0, RUN = 2;
const IS_NODE = typeof process !== "undefined" && process.versions?.node != null;

function run({ module, memory, mailbox, index }, post) {
  // the thread never calls WASI (only the thread that calls the API does): stubs answer ENOSYS
  const wasi = {};
  for (const imp of WebAssembly.Module.imports(module))
    if (imp.module === "wasi_snapshot_preview1") wasi[imp.name] = () => 52;
  const inst = new WebAssembly.Instance(module, { wasi_snapshot_preview1: wasi, env: { memory, lrt_wasm_thread_spawn: () => -1 } });
  const x = inst.exports;
  post("ready");
  const b = 1 + 4 * index;
  for (;;) {
    let s;
    while ((s = Atomics.load(mailbox, b)) !== RUN) Atomics.wait(mailbox, b, s);
    const thread = mailbox[b + 1], stackTop = mailbox[b + 2], tls = mailbox[b + 3];
    x.__stack_pointer.value = stackTop;
    if (tls) x.__wasm_init_tls(tls);
    try {
      x.lrt_wasm_thread_main(thread);
    } catch (e) {
      post(`thread failed (a bug, please report it): ${e?.stack ?? e}`);
    }
    Atomics.store(mailbox, b, IDLE);
    Atomics.add(mailbox, 0, 1);
    Atomics.notify(mailbox, 0);
  }
}

if (IS_NODE) {
  const { parentPort, workerData } = await import("node:worker_threads");
  run(workerData, m => parentPort.postMessage(m));
} else {
  self.onmessage = ({ data }) => { self.onmessage = null; run(data, m => self.postMessage(m)); };
}
