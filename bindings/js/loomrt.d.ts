// Types of loomrt.mjs (the JavaScript API of loomrt.wasm). See docs/web.md.

/** A failed call: `status` is loomrt's C status code, `code` its name ("LRT_ERR_FORMAT", ...). */
export class LoomrtError extends Error {
  readonly status: number;
  readonly code: string;
}

/** The bytes of one file. Strings are taken as UTF-8 text (JSON files). */
export type FileBytes = Uint8Array | ArrayBuffer | ArrayBufferView | string;

export interface LoadOptions {
  /** KV cache positions (default: the model's context length). */
  context?: number;
  /** Where loomrt.wasm is: a URL, a path (Node), its bytes or a compiled module (default: beside loomrt.mjs). */
  wasm?: string | URL | ArrayBuffer | ArrayBufferView | WebAssembly.Module;
  /** Threads for the model's session (default 1): Web Workers / Node worker threads over a
   * shared memory where threadSupport() allows, else one thread (see Model.threadsFallback). */
  threads?: number;
  /** Where loomrt-threads.wasm is (default: beside loomrt.mjs). */
  threadsWasm?: string | URL | ArrayBuffer | ArrayBufferView | WebAssembly.Module;
  /** Name given to a single .gguf buffer (default "model.gguf"). */
  filename?: string;
  /** Quantize F32/F16/BF16 weight matrices to Q8_0 at load. */
  quantize?: "q8_0";
  /** Opt-in int8-activation speed mode (deterministic, but not equal to the default exact mode). */
  int8Activations?: boolean;
  allowUnknownConfigKeys?: boolean;
}

export interface SamplingOptions {
  /** Tokens to generate at most (default 256). */
  maxTokens?: number;
  /** 0 = greedy (default). */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  /** Any 64-bit integer (default 0): same seed, same tokens. */
  seed?: number | bigint;
  /** Render the prompt (a string or messages) with the model's chat template. */
  chat?: boolean;
  /** Aborting it ends a stream with a rejection. */
  signal?: AbortSignal;
  /** Make a generation receipt: generate() then returns a Promise<Generation> with `receipt`;
   * stream() leaves it in `lastReceipt` when it ends; steps() refuses it. */
  receipt?: boolean;
  /** Stop strings (Python's `stop=`): the text is cut before the first one that appears and the
   * generation ends at the token that completes it (finishReason "stop"; that token is in
   * tokenIds). Empty strings never match; a receipt lists them as given. */
  stop?: string[];
}

export interface Message { role: "system" | "user" | "assistant" | string; content: string; }

/** One generated token and its text (complete UTF-8 characters only; may be ""). A last piece
 * with token -1 carries held-back bytes of an unfinished character. */
export interface Step { token: number; text: string; }

export type FinishReason = "stop" | "length" | "context" | "aborted" | "none";

export interface Generation {
  text: string;
  tokenIds: number[];
  finishReason: FinishReason;
  seconds: number;
  /** With {receipt: true}: the generation receipt (the JSON format `loomrt verify` replays). */
  receipt?: Receipt;
}

/** A generation receipt, field for field the one native loomrt writes (docs/determinism.md);
 * serialize it with receiptJSON() (a seed beyond 2^53 is a bigint). */
export interface Receipt {
  format: "loomrt-receipt";
  version: 1;
  loomrt_version: string;
  numerics_version: number;
  model: { hash: string; hash_scheme: "loomrt-files-v1"; files: { name: string; size: number; sha256: string }[];
           name: string; architecture: string; quantize: "q8_0" | null; int8_activations: boolean };
  tokenizer: { hash: string | null };
  sampling: { min_p: number; repetition_penalty: number; seed: number | bigint; temperature: number; top_k: number; top_p: number };
  max_tokens: number;
  context_length: number;
  stop: string[];
  chat: boolean;
  prompt_token_ids: number[];
  /** Sampled ids, the end-of-generation one included (Generation.tokenIds leaves it out). */
  output_token_ids: number[];
  finish_reason: "stop" | "length" | "context";
  step_logits_sha256: string[];
  logits_rolling_sha256: string;
  tokens_sha256: string;
  logits_sha256: string;
  made_on: { kernel_path: string; machine: string; system: string; threads: number };
}

export class Model {
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly architecture: string;
  /** "wasm_simd128" */
  readonly kernelPath: string;
  /** Threads the session runs on (1 where threads were asked for but are not available). */
  readonly threads: number;
  /** Why threads were not used (null when they were, or were not asked for). */
  readonly threadsFallback: string | null;
  /** Finish reason of the last generation. */
  readonly lastFinishReason: FinishReason;
  /** The receipt of the last stream() with {receipt: true} that ran to its end (else null). */
  readonly lastReceipt: Receipt | null;
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): number[];
  detokenize(ids: ArrayLike<number>, options?: { skipSpecial?: boolean }): string;
  applyChatTemplate(messages: string | Message[]): string;
  /** Logits of every position: ids.length x vocabSize floats, row-major. */
  logits(ids: number[] | Int32Array): Float32Array;
  generate(prompt: string | number[] | Message[], options?: SamplingOptions & { receipt?: false }): Generation;
  generate(prompt: string | number[] | Message[], options: SamplingOptions & { receipt: true }): Promise<Generation & { receipt: Receipt }>;
  /** Python's loomrt.model_hash of the loaded files: SHA-256 of a .gguf file, or of the
   * sha256sum-style manifest of an HF folder's config and weight files (lowercase hex). */
  modelHash(): Promise<string>;
  /** Python's loomrt.tokenizer_hash (null when the model has no tokenizer). */
  tokenizerHash(): Promise<string | null>;
  chat(messages: string | Message[], options?: SamplingOptions): Generation;
  steps(prompt: string | number[] | Message[], options?: SamplingOptions): Generator<Step, void, undefined>;
  stream(prompt: string | number[] | Message[], options?: SamplingOptions): AsyncGenerator<Step, void, undefined>;
  dispose(): void;
}

/** Load a model from the bytes of a .gguf file, or from a Hugging Face folder's files by name. */
export function load(source: FileBytes | Record<string, FileBytes>, options?: LoadOptions): Promise<Model>;
/** Instantiate loomrt.wasm ahead of load() (optional). */
export function init(wasm?: LoadOptions["wasm"], options?: { threads?: boolean }): Promise<unknown>;
/** Whether threads can run here: SharedArrayBuffer (a cross-origin isolated page) and a thread
 * that may wait (Node, a worker). */
export function threadSupport(): { ok: boolean; reason: string };

/** A receipt as JSON text (indent: JSON.stringify's; bigint seeds written as integers). */
export function receiptJSON(receipt: Receipt, indent?: number | string): string;
/** SHA-256 of bytes, lowercase hex (crypto.subtle, or a JS implementation where there is none). */
export function sha256Hex(bytes: Uint8Array): Promise<string>;

declare const Loomrt: { load: typeof load; init: typeof init; threadSupport: typeof threadSupport; LoomrtError: typeof LoomrtError;
                        receiptJSON: typeof receiptJSON; sha256Hex: typeof sha256Hex };
export default Loomrt;
