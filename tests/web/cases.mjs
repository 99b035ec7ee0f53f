// Runs generation cases with the loomrt JavaScript module and reports what tests/test_web.py
// compares with native loomrt: token ids, text, finish reason, and the SHA-256 of the logits of
// every position of prompt + generated ids (little-endian float32, NaN made canonical: the hash
// of tests/models.py logits_sha256). Shared by the Node runner and the browser page.

function hex(buf) {
  return Array.from(new Uint8Array(buf), b => b.toString(16).padStart(2, "0")).join("");
}

export async function logitsSha256(logits) {
  const bits = new Uint32Array(logits.buffer.slice(logits.byteOffset, logits.byteOffset + logits.byteLength));
  for (let i = 0; i < logits.length; i++) if (Number.isNaN(logits[i])) bits[i] = 0x7fc00000;
  // Uint32Array is host-endian: every JS engine in use is little-endian (checked below)
  if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) throw new Error("big-endian host");
  // Web Crypto: a global in browsers and Node >= 19; Node 18 (Debian 12's nodejs) has it in node:crypto
  const subtle = globalThis.crypto?.subtle ?? (await import("node:crypto")).webcrypto.subtle;
  return hex(await subtle.digest("SHA-256", bits));
}

export async function runCases(load, modelBytes, cases, wasm, options = {}) {
  const model = await load(modelBytes, { ...(wasm ? { wasm } : {}), ...options });
  const results = [];
  try {
    for (const c of cases) {
      // c.chat: c.prompt is messages, rendered with the model's chat template
      const promptIds = Array.isArray(c.prompt) && !c.chat ? c.prompt  // token ids
        : c.chat ? model.tokenize(model.applyChatTemplate(c.prompt), { addSpecial: false }) : model.tokenize(c.prompt);
      const opts = { maxTokens: c.maxTokens, temperature: c.temperature ?? 0, seed: c.seed ?? 0, chat: !!c.chat };
      const t0 = performance.now();
      const g = model.generate(c.prompt, opts);
      const seconds = (performance.now() - t0) / 1000;
      // the same generation as an async stream: the same ids and text
      const streamed = [];
      let streamText = "";
      for await (const s of model.stream(c.prompt, opts)) {
        if (s.token >= 0) streamed.push(s.token);
        streamText += s.text;
      }
      const logitsHash = await logitsSha256(model.logits(promptIds.concat(g.tokenIds)));
      results.push({ promptIds, tokenIds: g.tokenIds, text: g.text, finishReason: g.finishReason,
                     streamIds: streamed, streamText, logitsHash, seconds, kernelPath: model.kernelPath,
                     threads: model.threads, threadsFallback: model.threadsFallback ?? null });
    }
  } finally {
    model.dispose();
  }
  return results;
}
