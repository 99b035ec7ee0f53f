// receipt_run.mjs LOOMRT_MJS WASM MODEL CASES_JSON OUT_DIR (MODEL: a .gguf file or an HF folder): for each case {prompt, maxTokens,
// temperature, seed, chat, stop, ...}, generate with {receipt: true} under Node and write
// OUT_DIR/receipt-<i>.json, then stream the same with {receipt: true}; print {modelHash,
// tokenizerHash, generations: [{text, tokenIds, finishReason, streamText, streamIds,
// streamReceiptSame}]} as JSON (tests/test_web.py).
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [mjs, wasm, model, casesJson, out] = process.argv.slice(2);
const { load, receiptJSON } = await import(pathToFileURL(mjs).href);
const cases = JSON.parse(casesJson);
// a .gguf file (named as on disk: the receipt lists it) or an HF folder's files by name
const m = statSync(model).isDirectory()
  ? await load(Object.fromEntries(readdirSync(model).map(n => [n, readFileSync(join(model, n))])), { wasm })
  : await load(readFileSync(model), { wasm, filename: model.split("/").pop() });
const generations = [];
for (const [i, c] of cases.entries()) {
  const { prompt, ...o } = c;
  const g = await m.generate(prompt, { ...o, receipt: true });
  writeFileSync(join(out, `receipt-${i}.json`), receiptJSON(g.receipt));
  let streamText = "";
  const streamIds = [];
  for await (const s of m.stream(prompt, { ...o, receipt: true })) { streamText += s.text; if (s.token >= 0) streamIds.push(s.token); }
  generations.push({ text: g.text, tokenIds: g.tokenIds, finishReason: g.finishReason, streamText, streamIds,
                     streamReceiptSame: receiptJSON(m.lastReceipt) === receiptJSON(g.receipt) });
}
console.log(JSON.stringify({ modelHash: await m.modelHash(), tokenizerHash: await m.tokenizerHash(), generations }));
m.dispose();
