#!/usr/bin/env node
// node bindings/js/examples/generate.mjs MODEL PROMPT [--max-tokens N] [--seed S] [--temperature T]
//   [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R] [--stop TEXT]... [--wasm FILE] [-q]
// Continues PROMPT with the model (a .gguf file) and prints the text as `loomrt generate -q` does
// (the same text: same bits), then tokens/s on stderr unless -q.
import { readFile } from "node:fs/promises";
import { load } from "../loomrt.mjs";

const OPTS = { "--max-tokens": "maxTokens", "-n": "maxTokens", "--seed": "seed", "-s": "seed",
  "--temperature": "temperature", "--temp": "temperature", "--top-k": "topK", "--top-p": "topP", "--min-p": "minP",
  "--repetition-penalty": "repetitionPenalty", "--repeat-penalty": "repetitionPenalty" };

function usage(msg) {
  process.stderr.write(`${msg}\nusage: generate.mjs MODEL PROMPT [--max-tokens N] [--seed S] [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R] [--stop TEXT]... [--wasm FILE] [-q]\n`);
  process.exit(2);
}

const pos = [], opts = { maxTokens: 128 };
let quiet = false, wasm;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "-q" || a === "--quiet") quiet = true;
  else if (a === "--wasm") wasm = argv[++i];
  else if (a === "--stop" || a.startsWith("--stop=")) { // repeatable, as loomrt generate's
    const v = a === "--stop" ? argv[++i] : a.slice(7);
    if (v === undefined) usage("--stop needs a text");
    (opts.stop ??= []).push(v);
  }
  else if (a in OPTS) {
    const v = argv[++i];
    if (v === undefined || v.trim() === "" || Number.isNaN(Number(v))) usage(`${a} needs a number`);
    opts[OPTS[a]] = a === "--seed" || a === "-s" ? BigInt(v) : Number(v);
  } else if (a.startsWith("-") && a.length > 1) usage(`unknown option ${a}`);
  else pos.push(a);
}
if (pos.length !== 2) usage("give a model file and a prompt");

try {
  const model = await load(await readFile(pos[0]), wasm ? { wasm } : {});
  const t0 = performance.now();
  let n = 0;
  for await (const { token, text } of model.stream(pos[1], opts)) {
    if (token >= 0) n++;
    process.stdout.write(text);
  }
  process.stdout.write("\n");
  const s = (performance.now() - t0) / 1000;
  if (!quiet) process.stderr.write(`[loomrt.wasm] ${n} tokens in ${s.toFixed(2)} s, ${(n / s).toFixed(1)} tok/s | ${model.kernelPath} | finish: ${model.lastFinishReason}\n`);
  model.dispose();
} catch (e) {
  process.stderr.write(`error: ${e.message}\n`);
  process.exit(1);
}
