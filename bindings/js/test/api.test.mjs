// JS API tests: node --test bindings/js/test/
// LOOMRT_TEST_MODEL: a small GGUF with a tokenizer (tests/test_web.py writes a seeded one);
// LOOMRT_WASM: the loomrt.wasm to use (default: the one beside loomrt.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { load, LoomrtError } from "../loomrt.mjs";

const MODEL = process.env.LOOMRT_TEST_MODEL;
const WASM = process.env.LOOMRT_WASM;
if (!MODEL) throw new Error("set LOOMRT_TEST_MODEL to a small .gguf file with a tokenizer");
const bytes = readFileSync(MODEL);
const opts = WASM ? { wasm: WASM } : {};

async function rejects(p, code, pattern) {
  await assert.rejects(p, e => e instanceof LoomrtError && e.code === code && pattern.test(e.message));
}
function throws(fn, code, pattern) {
  assert.throws(fn, e => e instanceof LoomrtError && e.code === code && pattern.test(e.message));
}

test("a file that is not GGUF is a format error naming the problem", async () => {
  await rejects(load(new TextEncoder().encode("hello, not a model"), opts), "LRT_ERR_FORMAT", /not a GGUF file/);
});

test("a truncated GGUF is a format error", async () => {
  await rejects(load(bytes.subarray(0, Math.floor(bytes.length / 2)), opts), "LRT_ERR_FORMAT", /./);
});

test("load() of something that is not bytes says what it expects", async () => {
  await rejects(load(42, opts), "LRT_ERR_INVALID_ARGUMENT", /expects the bytes of a \.gguf file/);
  await rejects(load({}, opts), "LRT_ERR_INVALID_ARGUMENT", /no files given/);
});

test("bad calls fail clearly and the model keeps working", async () => {
  const m = await load(bytes, opts);
  const good = m.generate("#$%&", { maxTokens: 4 });
  assert.equal(good.tokenIds.length, 4);
  throws(() => m.generate("", { maxTokens: 4 }), "LRT_ERR_INVALID_ARGUMENT", /prompt is empty/);
  throws(() => m.generate([m.vocabSize], { maxTokens: 4 }), "LRT_ERR_INVALID_ARGUMENT", /outside the vocabulary/);
  throws(() => m.detokenize([-1]), "LRT_ERR_INVALID_ARGUMENT", /outside the vocabulary/);
  throws(() => m.logits([]), "LRT_ERR_INVALID_ARGUMENT", /at least one token/);
  throws(() => m.generate("x", { maxTokens: -1 }), "LRT_ERR_INVALID_ARGUMENT", /maxTokens must be/);
  throws(() => m.generate("x", { temprature: 1 }), "LRT_ERR_INVALID_ARGUMENT", /unknown option "temprature"/);
  // a stream in progress holds the model: a second generation is refused, not interleaved
  const it = m.stream("#$%&", { maxTokens: 4 });
  await it.next();
  throws(() => m.generate("#$%&", { maxTokens: 2 }), "LRT_ERR_BUSY", /busy/);
  await it.return();
  assert.deepEqual(m.generate("#$%&", { maxTokens: 4 }).tokenIds, good.tokenIds);
  m.dispose();
  throws(() => m.generate("#$%&", { maxTokens: 4 }), "LRT_ERR_STATE", /disposed/);
  throws(() => m.tokenize("x"), "LRT_ERR_STATE", /disposed/);
  m.dispose(); // twice is fine
});

test("an AbortSignal stops a stream", async () => {
  const m = await load(bytes, opts);
  const ac = new AbortController();
  const got = [];
  await assert.rejects((async () => {
    for await (const s of m.stream("#$%&", { maxTokens: 20, signal: ac.signal })) {
      got.push(s.token);
      if (got.length === 3) ac.abort();
    }
  })());
  assert.equal(got.length, 3);
  assert.equal(m.generate("#$%&", { maxTokens: 3 }).tokenIds.length, 3); // usable afterwards
  m.dispose();
});

test("tokenize and detokenize round-trip; the seed changes sampled tokens, not greedy ones", async () => {
  const m = await load(bytes, opts);
  const ids = m.tokenize("#$%& ()", { addSpecial: false });
  assert.equal(m.detokenize(ids), "#$%& ()");
  const a = m.generate("#$%&", { maxTokens: 12, temperature: 1.5, seed: 1 }).tokenIds;
  const b = m.generate("#$%&", { maxTokens: 12, temperature: 1.5, seed: 2 }).tokenIds;
  assert.notDeepEqual(a, b);
  assert.deepEqual(m.generate("#$%&", { maxTokens: 12, temperature: 1.5, seed: 1 }).tokenIds, a);
  assert.deepEqual(m.generate("#$%&", { maxTokens: 8, seed: 1 }).tokenIds, m.generate("#$%&", { maxTokens: 8, seed: 2 }).tokenIds);
  m.dispose();
});

test("a wasm location that does not exist rejects, and loading works afterwards", async () => {
  await assert.rejects(load(bytes, { wasm: "/nonexistent/loomrt.wasm" }), e => e.code === "ENOENT");
  await assert.rejects(load(bytes, { wasm: "/nonexistent/loomrt.wasm" }), e => e.code === "ENOENT"); // not cached
  const m = await load(bytes, opts);
  assert.equal(m.kernelPath, "wasm_simd128");
  m.dispose();
});

test("modelHash is the SHA-256 of the file; a receipt's tokens are generate()'s", async () => {
  const { createHash } = await import("node:crypto");
  const { receiptJSON } = await import("../loomrt.mjs");
  const m = await load(bytes, opts);
  assert.equal(await m.modelHash(), createHash("sha256").update(bytes).digest("hex"));
  const o = { maxTokens: 6, temperature: 0.9, seed: 5 };
  const plain = m.generate("#$%&", o);
  const g = await m.generate("#$%&", { ...o, receipt: true });
  assert.deepEqual(g.tokenIds, plain.tokenIds);
  assert.equal(g.text, plain.text);
  const r = g.receipt;
  assert.equal(r.format, "loomrt-receipt");
  assert.deepEqual(r.output_token_ids.slice(0, g.tokenIds.length), g.tokenIds);
  assert.equal(r.step_logits_sha256.length, r.output_token_ids.length);
  // the tokens hash: SHA-256 of the ids as int32 little-endian
  const ids = Buffer.from(new Int32Array(r.output_token_ids).buffer);
  assert.equal(r.tokens_sha256, createHash("sha256").update(ids).digest("hex"));
  // the first step's digest is the hash of the prompt's last logits row
  const row = m.logits(r.prompt_token_ids).slice(-m.vocabSize);
  assert.equal(r.step_logits_sha256[0], createHash("sha256").update(Buffer.from(row.buffer)).digest("hex"));
  // a seed beyond 2^53 stays exact in the JSON text
  const big = await m.generate("#$%&", { maxTokens: 2, seed: 2n ** 63n - 1n, receipt: true });
  assert.match(receiptJSON(big.receipt), /"seed": 9223372036854775807,/);
  await rejects(m.generate("", { receipt: true }), "LRT_ERR_INVALID_ARGUMENT", /prompt is empty/);
  m.dispose();
  await rejects(m.generate("#$%&", { receipt: true }), "LRT_ERR_STATE", /disposed/);
  await assert.rejects(m.modelHash(), e => e.code === "LRT_ERR_STATE");
});

test("stop strings cut the text before the first one and end the generation there", async () => {
  const m = await load(bytes, opts);
  const o = { maxTokens: 30, temperature: 0.9, seed: 5 };
  const full = m.generate("#$%& ()", o);
  assert.ok(full.text.length > 6, JSON.stringify(full.text));
  const k = Math.floor(full.text.length / 2), stop = full.text.slice(k, k + 2);
  const cut = full.text.indexOf(stop);
  const g = m.generate("#$%& ()", { ...o, stop: ["not in the text", stop] });
  assert.equal(g.text, full.text.slice(0, cut));
  assert.equal(g.finishReason, "stop");
  // it ends at the token whose text completes the stop string: a prefix of the full run, shorter
  assert.ok(g.tokenIds.length < full.tokenIds.length);
  assert.deepEqual(g.tokenIds, full.tokenIds.slice(0, g.tokenIds.length));
  assert.ok(m.detokenize(g.tokenIds).includes(stop) && !m.detokenize(g.tokenIds.slice(0, -1)).includes(stop));
  // the stream gives the same pieces' text and ids
  let text = "";
  const ids = [];
  for await (const s of m.stream("#$%& ()", { ...o, stop: [stop] })) { text += s.text; if (s.token >= 0) ids.push(s.token); }
  assert.equal(text, g.text);
  assert.deepEqual(ids, g.tokenIds);
  assert.equal(m.lastFinishReason, "stop");
  // chat() takes them too
  const chatFull = m.chat("hello", { ...o, seed: 1 }), chatCut = m.chat("hello", { ...o, seed: 1, stop: [chatFull.text.slice(6, 9)] });
  assert.ok(chatFull.text.length > 9, JSON.stringify(chatFull.text));
  assert.equal(chatCut.text, chatFull.text.slice(0, chatFull.text.indexOf(chatFull.text.slice(6, 9))));
  assert.equal(chatCut.finishReason, "stop");
  // an empty stop string never matches; one that is not there changes nothing
  for (const none of [[""], ["not in the text"], []]) {
    const n = m.generate("#$%& ()", { ...o, stop: none });
    assert.deepEqual([n.text, n.tokenIds, n.finishReason], [full.text, full.tokenIds, full.finishReason]);
  }
  m.dispose();
});

test("a receipt lists the stop strings as given, and stream() leaves the same receipt in lastReceipt", async () => {
  const { receiptJSON } = await import("../loomrt.mjs");
  const m = await load(bytes, opts);
  const o = { maxTokens: 30, temperature: 0.9, seed: 5 };
  const full = m.generate("#$%& ()", o).text;
  const stop = ["", full.slice(3, 5)];
  const g = await m.generate("#$%& ()", { ...o, stop, receipt: true });
  assert.deepEqual(g.receipt.stop, stop);
  assert.equal(g.receipt.finish_reason, "stop");
  assert.deepEqual(g.receipt.output_token_ids, g.tokenIds); // ended by the stop string: no eos step
  assert.equal(g.text, full.slice(0, full.indexOf(stop[1])));
  const pieces = [];
  for await (const s of m.stream("#$%& ()", { ...o, stop, receipt: true })) {
    pieces.push(s.text);
    assert.equal(m.lastReceipt, null); // not before the stream ended
  }
  assert.equal(pieces.join(""), g.text);
  assert.equal(receiptJSON(m.lastReceipt), receiptJSON(g.receipt));
  // a stream broken out of leaves no receipt
  for await (const s of m.stream("#$%& ()", { ...o, receipt: true })) break;
  assert.equal(m.lastReceipt, null);
  // without stop strings the receipt says []
  assert.deepEqual((await m.generate("#$%& ()", { maxTokens: 3, receipt: true })).receipt.stop, []);
  m.dispose();
});

test("bad stop strings are refused with what to fix, and the model keeps working", async () => {
  const m = await load(bytes, opts);
  const good = m.generate("#$%&", { maxTokens: 4 });
  throws(() => m.generate("#$%&", { stop: "\n" }), "LRT_ERR_INVALID_ARGUMENT", /stop must be an array of strings .*got a string/);
  throws(() => m.generate("#$%&", { stop: ["a", 3] }), "LRT_ERR_INVALID_ARGUMENT", /stop must be an array of strings .*number/);
  throws(() => m.generate("#$%&", { stop: { a: 1 } }), "LRT_ERR_INVALID_ARGUMENT", /stop must be an array of strings/);
  throws(() => m.generate("#$%&", { stop: ["ok", "\ud800"] }), "LRT_ERR_INVALID_ARGUMENT", /stop\[1\] is not well-formed Unicode/);
  await rejects(m.generate("#$%&", { stop: "x", receipt: true }), "LRT_ERR_INVALID_ARGUMENT", /stop must be an array/);
  await rejects((async () => { for await (const s of m.stream("#$%&", { stop: 7 })) void s; })(), "LRT_ERR_INVALID_ARGUMENT", /stop must be an array/);
  throws(() => [...m.steps("#$%&", { receipt: true })], "LRT_ERR_INVALID_ARGUMENT", /steps\(\) cannot make a receipt/);
  // an empty prompt and ids outside the vocabulary with stop strings: the same errors as without
  throws(() => m.generate("", { stop: ["x"] }), "LRT_ERR_INVALID_ARGUMENT", /prompt is empty/);
  throws(() => m.generate([m.vocabSize + 5], { stop: ["x"] }), "LRT_ERR_INVALID_ARGUMENT", /outside the vocabulary/);
  throws(() => m.generate([-1], { stop: ["x"] }), "LRT_ERR_INVALID_ARGUMENT", /outside the vocabulary/);
  assert.deepEqual(m.generate("#$%&", { maxTokens: 4, stop: ["not there"] }).tokenIds, good.tokenIds);
  m.dispose();
  throws(() => m.generate("#$%&", { stop: ["x"] }), "LRT_ERR_STATE", /disposed/);
});
