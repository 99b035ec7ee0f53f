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
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): number[];
  detokenize(ids: ArrayLike<number>, options?: { skipSpecial?: boolean }): string;
  applyChatTemplate(messages: string | Message[]): string;
  /** Logits of every position: ids.length x vocabSize floats, row-major. */
  logits(ids: number[] | Int32Array): Float32Array;
  generate(prompt: string | number[] | Message[], options?: SamplingOptions): Generation;
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

declare const Loomrt: { load: typeof load; init: typeof init; LoomrtError: typeof LoomrtError };
export default Loomrt;
