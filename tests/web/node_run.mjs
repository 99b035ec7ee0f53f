// node tests/web/node_run.mjs MODULE WASM MODEL CASES_JSON [OPTIONS_JSON]: runCases under Node,
// JSON on stdout (MODEL: a .gguf file or a Hugging Face folder; OPTIONS: load() options such as
// {"threads": 2, "threadsWasm": PATH}).
import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { runCases } from "./cases.mjs";

const [modulePath, wasm, modelPath, casesJson, optionsJson] = process.argv.slice(2);
const { load } = await import(pathToFileURL(modulePath).href);
// a .gguf file, or a folder whose files are given by name ({"config.json": bytes, ...})
const source = (await stat(modelPath)).isDirectory()
  ? Object.fromEntries(await Promise.all((await readdir(modelPath)).map(async n => [n, await readFile(join(modelPath, n))])))
  : await readFile(modelPath);
const results = await runCases(load, source, JSON.parse(casesJson), wasm, JSON.parse(optionsJson ?? "{}"));
process.stdout.write(JSON.stringify(results) + "\n");
