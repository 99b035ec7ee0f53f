// node tests/web/node_run.mjs MODULE WASM MODEL CASES_JSON: runCases under Node, JSON on stdout.
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { runCases } from "./cases.mjs";

const [modulePath, wasm, modelPath, casesJson] = process.argv.slice(2);
const { load } = await import(pathToFileURL(modulePath).href);
const results = await runCases(load, await readFile(modelPath), JSON.parse(casesJson), wasm);
process.stdout.write(JSON.stringify(results) + "\n");
