// worker.mjs -- the Web Worker side of loomrt-worker.mjs: runs loomrt.mjs off the page's main
// thread. Messages in: {id, op, args}; out: {id, ok, value} / {id, ok: false, error}, and
// {id, piece} for each streamed token. Started by LoomrtWorker; not meant to be used directly.
import { load } from "./loomrt.mjs";

let model = null;
const streams = new Map(); // id -> AbortController

function reply(id, value) { self.postMessage({ id, ok: true, value }); }
function fail(id, e) {
  self.postMessage({ id, ok: false, error: { message: e?.message ?? String(e), code: e?.code ?? "LRT_ERR_INTERNAL", status: e?.status ?? -9 } });
}

function need() {
  if (!model) throw Object.assign(new Error("no model loaded (or it was disposed): call LoomrtWorker.load first"), { code: "LRT_ERR_STATE", status: -8 });
  return model;
}

const ops = {
  async load([bytes, options]) {
    if (model) model.dispose();
    model = null;
    model = await load(bytes, options ?? {});
    return { vocabSize: model.vocabSize, contextLength: model.contextLength, architecture: model.architecture, kernelPath: model.kernelPath,
             threads: model.threads, threadsFallback: model.threadsFallback };
  },
  tokenize([text, o]) { return need().tokenize(text, o); },
  detokenize([ids, o]) { return need().detokenize(ids, o); },
  generate([prompt, o]) { return need().generate(prompt, o); },
  logits([ids]) { return need().logits(ids); },
  modelHash() { return need().modelHash(); },
  tokenizerHash() { return need().tokenizerHash(); },
  dispose() { if (model) model.dispose(); model = null; return null; },
};

self.onmessage = async ({ data: { id, op, args } }) => {
  if (op === "abort") { streams.get(args[0])?.abort(); return; }
  if (op === "stream") {
    const ac = new AbortController();
    streams.set(id, ac);
    try {
      for await (const piece of need().stream(args[0], { ...(args[1] ?? {}), signal: ac.signal })) self.postMessage({ id, piece });
      reply(id, { finishReason: model.lastFinishReason, receipt: model.lastReceipt ?? null });
    } catch (e) { fail(id, e); } finally { streams.delete(id); }
    return;
  }
  try {
    if (!(op in ops)) throw new Error(`unknown operation ${op}`);
    reply(id, await ops[op](args));
  } catch (e) { fail(id, e); }
};
