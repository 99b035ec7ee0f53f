// Types of loomrt-worker.mjs: loomrt.mjs in a Web Worker, every call a promise. See docs/web.md.
import type { FileBytes, LoadOptions, SamplingOptions, Message, Step, Generation, FinishReason, Receipt } from "./loomrt.js";

export class LoomrtWorker {
  /** Start a module worker (worker.mjs beside this file) and load the model in it; whole
   * ArrayBuffers of the source are transferred (they become empty here). */
  static load(source: FileBytes | Record<string, FileBytes>, options?: LoadOptions, workerUrl?: string | URL): Promise<LoomrtWorker>;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly architecture: string;
  readonly kernelPath: string;
  readonly threads: number;
  readonly threadsFallback: string | null;
  readonly lastFinishReason: FinishReason;
  /** The receipt of the last stream() with {receipt: true} that ran to its end (else null). */
  readonly lastReceipt: Receipt | null;
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): Promise<number[]>;
  detokenize(ids: number[], options?: { skipSpecial?: boolean }): Promise<string>;
  logits(ids: number[]): Promise<Float32Array>;
  /** loomrt.model_hash of the loaded files (lowercase hex). */
  modelHash(): Promise<string>;
  tokenizerHash(): Promise<string | null>;
  /** With options.signal it runs as a stream that the signal aborts (the promise rejects). */
  generate(prompt: string | number[] | Message[], options?: SamplingOptions): Promise<Generation>;
  chat(messages: string | Message[], options?: SamplingOptions): Promise<Generation>;
  /** Pieces as the worker generates them; options.signal aborts (the stream rejects at once). */
  stream(prompt: string | number[] | Message[], options?: SamplingOptions): AsyncGenerator<Step, void, undefined>;
  /** Free the model in the worker (the worker keeps running). */
  dispose(): Promise<null>;
  /** Stop the worker. */
  terminate(): void;
}
