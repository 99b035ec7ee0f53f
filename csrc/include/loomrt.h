/*
 * loomrt.h -- the whole public C API of loomrt.
 *
 * loomrt is a deterministic runtime for small language models: the same model, input
 * tokens, settings and seed give bit-identical logits and tokens on any thread count,
 * prompt chunking, instruction set, OS and compiler (see docs/numerics.md).
 *
 * Conventions (this header is the spec):
 *   - Opaque handles: lrt_model (immutable weights + config, shareable across threads once
 *     opened) and lrt_session (KV cache, activations, sampler state; one per thread or
 *     conversation).
 *   - Every function that can fail returns an int32_t status: LRT_OK (0) or one of the
 *     negative LRT_ERR_* codes below. The codes are pinned and the list is append-only.
 *     After a failure, lrt_last_error() returns a thread-local, UTF-8, NUL-terminated
 *     message that says what went wrong and how to fix it.
 *   - No structs and no bool cross the ABI: only fixed-width integers, double, pointers and
 *     UTF-8 byte strings with explicit lengths.
 *   - Parameters are set through enum-keyed setters; enum values are append-only.
 *   - The library never prints, exits or aborts, and guards the floating-point environment
 *     (MXCSR / FPCR) on every entry and in its worker threads.
 *   - Pointers returned by lrt_model_* getters stay valid until lrt_model_close(); pointers
 *     returned by lrt_session_* getters stay valid until the next call on that session.
 */
#ifndef LOOMRT_H
#define LOOMRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(LOOMRT_BUILD_SHARED)
#  define LRT_API __declspec(dllexport)
#elif defined(_WIN32) && defined(LOOMRT_USE_SHARED)
#  define LRT_API __declspec(dllimport)
#elif defined(__GNUC__) && defined(LOOMRT_BUILD_SHARED)
#  define LRT_API __attribute__((visibility("default")))
#else
#  define LRT_API
#endif

/* ---- versions --------------------------------------------------------------------- */

#define LRT_VERSION_MAJOR 0
#define LRT_VERSION_MINOR 1
#define LRT_VERSION_PATCH 0
#define LRT_VERSION_STRING "0.1.0"
/* Bumped when an existing function changes meaning or signature (never, ideally). */
#define LRT_ABI_VERSION 1
/* Bumped whenever any output bit (logits, tokens) changes for the same inputs. */
#define LRT_NUMERICS_VERSION 1

/* "0.1.0" */
LRT_API const char *lrt_version_string(void);
/* major*10000 + minor*100 + patch */
LRT_API int32_t lrt_version_number(void);
LRT_API int32_t lrt_abi_version(void);
LRT_API int32_t lrt_numerics_version(void);

/* ---- status codes (pinned, append-only) -------------------------------------------- */

#define LRT_OK                     0
#define LRT_ERR_INVALID_ARGUMENT  (-1)  /* a caller argument is out of range or NULL      */
#define LRT_ERR_NOT_FOUND         (-2)  /* a file, folder, tensor or key does not exist   */
#define LRT_ERR_IO                (-3)  /* the OS refused to open / map / read a file      */
#define LRT_ERR_FORMAT            (-4)  /* a file is malformed (JSON, safetensors, GGUF)  */
#define LRT_ERR_UNSUPPORTED       (-5)  /* valid input that loomrt does not implement     */
#define LRT_ERR_OUT_OF_MEMORY     (-6)
#define LRT_ERR_CONTEXT_FULL      (-7)  /* the KV cache has no room for more tokens        */
#define LRT_ERR_STATE             (-8)  /* call made in the wrong order (e.g. no logits)  */
#define LRT_ERR_INTERNAL          (-9)  /* a bug in loomrt: please report it               */
#define LRT_ERR_BUFFER_TOO_SMALL (-10)  /* an output buffer is too small: the call says the
                                           size needed; call again with a larger buffer    */
#define LRT_ERR_BUSY             (-11)  /* the session is in use by another thread at this
                                           moment (a session serves one thread at a time);
                                           the call did nothing                            */
#define LRT_ERR_NUMERIC          (-12)  /* the model produced NaN or infinite logits (its
                                           weights are corrupt or overflow); the message
                                           names the position and the first layer whose
                                           output was not finite; the session is unchanged */

/* Thread-local message for the last failure on this thread ("" when none). */
LRT_API const char *lrt_last_error(void);
/* Short stable name of a status code, e.g. "LRT_ERR_FORMAT". */
LRT_API const char *lrt_status_name(int32_t status);

/* ---- models ------------------------------------------------------------------------ */

typedef struct lrt_model lrt_model;

/* Model open flags (bit set). */
#define LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS 1  /* ignore config.json keys loomrt does not know */
/* (2 is LRT_OPEN_COPY_BUFFERS, below) */
/* Quantize the F32/F16/BF16 weight matrices to Q8_0 at open (the written rule of
 * docs/numerics.md, the same bytes gguf-py and llama.cpp write): about 1.06 bytes per weight
 * in memory, in place of the mapped file's pages. Matrices already block-quantized, those
 * whose row length is not a multiple of 32, and vectors (norms, biases) are kept as they are.
 * Results equal those of a Q8_0 GGUF of the same weights. */
#define LRT_OPEN_QUANTIZE_Q8_0 4
/* Int8 activations (opt-in speed mode; docs/numerics.md "Int8 activations"): products with
 * Q8_0 / Q4_0 / Q4_1 matrices quantize the activation row to 8 bits per 32-element block
 * (the Q8_0 rule) and multiply integers, as llama.cpp does; the block results are combined
 * in one written float order, so the outputs are still bit-identical across threads, chunking
 * and instruction sets -- but they differ from the default exact mode (float activations
 * times the exactly dequantized weights), whose answers track the F32 model more closely.
 * Other weight formats are unaffected. */
#define LRT_OPEN_INT8_ACTIVATIONS 8
/* Accept tensors the model does not use. By default every tensor of the files must be used
 * by the architecture and layer count of the configuration (or be a known harmless extra:
 * HF's rotary "inv_freq" buffers, GPT-2's attention-mask buffers "attn.bias" /
 * "attn.masked_bias", a stored LM head of a model with tied embeddings); otherwise the open
 * fails with LRT_ERR_FORMAT naming the tensor: a GGUF block_count or config.json
 * num_hidden_layers smaller than the layers in the file, or tensors of another variant
 * (biases, extra norms), would otherwise be ignored and the model would compute something
 * else. With this flag they are ignored. */
#define LRT_OPEN_ALLOW_UNUSED_TENSORS 16
/* Read the weight files into memory at open instead of memory-mapping them. A mapping reads
 * pages from the file when they are first touched (and may drop and re-read them later), so
 * a file truncated or rewritten in place while the model is open (`cp new.gguf model.gguf`
 * under a running server) kills the process with SIGBUS at the next touch of a lost page on
 * Linux and macOS, or silently changes the weights; no library can recover from that.
 * With this flag the process no longer depends on the file after lrt_model_open returns, at
 * the cost of the file's size in private memory and a full read at open. Same results.
 * (lrt_model_open_memory accepts the flag and ignores it: its buffers are the caller's.) */
#define LRT_OPEN_NO_MMAP 32
/* Keep every position in the KV cache of sliding-window layers. By default a layer whose
 * attention is limited to a window of W positions keeps only its last W + 127 positions (a
 * ring buffer: memory bounded by the window, not the context; same logits bits). The price
 * of the ring: lrt_session_truncate can move back at most 128 positions from the furthest
 * position evaluated since the last reset (LRT_ERR_STATE otherwise; back to 0 always
 * works). With this flag every position is kept (the memory of a full-attention layer) and
 * truncation may go anywhere. Same results either way. */
#define LRT_OPEN_FULL_KV 128

/* Open a model: a HuggingFace folder (config.json + *.safetensors) or a .gguf file.
 * path is UTF-8 with explicit length. Weights are memory-mapped (or read into memory with
 * LRT_OPEN_NO_MMAP) and used in place where their stored format allows. On failure *out is
 * set to NULL. */
LRT_API int32_t lrt_model_open(const char *path, size_t path_len, int32_t flags,
                               lrt_model **out);
/* Close a model. NULL is allowed. All sessions of the model must be freed first. */
LRT_API void lrt_model_close(lrt_model *model);

/* Integer facts about a model. */
typedef enum lrt_model_info {
  LRT_INFO_VOCAB_SIZE = 0,       /* rows of the logits                              */
  LRT_INFO_CONTEXT_LENGTH = 1,   /* max positions the model supports                */
  LRT_INFO_HIDDEN_SIZE = 2,
  LRT_INFO_LAYERS = 3,
  LRT_INFO_HEADS = 4,
  LRT_INFO_KV_HEADS = 5,
  LRT_INFO_HEAD_DIM = 6,
  LRT_INFO_FFN_SIZE = 7,
  LRT_INFO_PARAMETERS = 8,       /* number of weight elements                       */
  LRT_INFO_WEIGHT_BYTES = 9,     /* bytes of weights as stored in the file(s)       */
  LRT_INFO_RESIDENT_BYTES = 10,  /* bytes loomrt allocated for weights (dequantized) */
  LRT_INFO_BOS_ID = 11,          /* -1 when unknown                                 */
  LRT_INFO_EOS_COUNT = 12,       /* number of end-of-sequence ids                   */
  LRT_INFO_TIED_EMBEDDINGS = 13, /* 1 when the LM head is the embedding table       */
  LRT_INFO_IS_GGUF = 14,         /* 1 when the model came from a GGUF file          */
  /* The tokenizer's facts (0 / -1 when the model has no usable tokenizer): */
  LRT_INFO_TOKENIZER_SIZE = 15,  /* ids the tokenizer knows (highest assigned id + 1) */
  LRT_INFO_TOKENIZER_BOS_ID = 16,/* its bos: GGUF tokenizer.ggml.bos_token_id (llama.cpp's
                                    SentencePiece default 1), tokenizer_config.json /
                                    special_tokens_map.json "bos_token"; -1 when none    */
  LRT_INFO_TOKENIZER_EOS_ID = 17,/* its eos, the one chat templates write: GGUF eos (else
                                    eot, eom, an end-of-turn token), "eos_token" of the
                                    folder's files (else config.json's first eos); -1   */
  LRT_INFO_EOG_COUNT = 18,       /* ids that end a generation (lrt_model_eog_id)      */
  /* Sliding-window attention (Mistral, Gemma 2/3 local layers, Phi-3, Qwen3 with
   * use_sliding_window): */
  LRT_INFO_SLIDING_WINDOW = 19,  /* positions a windowed layer attends to; 0 when none  */
  LRT_INFO_SLIDING_LAYERS = 20,  /* layers whose attention is limited to the window     */
  LRT_INFO_KV_WINDOW_ROWS = 21   /* positions the KV cache of a windowed layer keeps at
                                    most (a ring: window + 127, enough for a chunk of 128
                                    new tokens or a rollback of 128); 0 when no layer is
                                    windowed or the model was opened with LRT_OPEN_FULL_KV.
                                    A session's windowed layer holds min(this, its
                                    context) positions, however long the sequence grows */
} lrt_model_info;
LRT_API int32_t lrt_model_get_int(const lrt_model *model, int32_t key, int64_t *out);

/* The i-th end-of-sequence token id (config.json / generation_config.json / GGUF). */
LRT_API int32_t lrt_model_eos_id(const lrt_model *model, int64_t index, int32_t *out);
/* The i-th id that ends a generation (0 <= i < LRT_INFO_EOG_COUNT): the eos ids above, the
 * tokenizer's eos, and for GGUF files tokenizer.ggml.eot_token_id / eom_token_id and the
 * usual end-of-turn tokens of the vocabulary ("<|im_end|>", "<|eot_id|>", ...). These are
 * the ids lrt_session_step stops at. */
LRT_API int32_t lrt_model_eog_id(const lrt_model *model, int64_t index, int32_t *out);

/* String facts about a model: pointers owned by the model, not NUL-terminated. */
typedef enum lrt_model_str {
  LRT_STR_ARCHITECTURE = 0, /* "llama", "mistral", "qwen2", "gpt2", "qwen3", "gemma2",
                               "gemma3", "smollm3", "olmo2", "phi3"                    */
  LRT_STR_DTYPE = 1,        /* stored weight format of the big matrices, e.g. "bf16" */
  LRT_STR_SOURCE = 2,       /* "safetensors" or "gguf"                               */
  LRT_STR_NAME = 3,         /* general.name / _name_or_path, "" when absent          */
  LRT_STR_CHAT_TEMPLATE = 4, /* the model's Jinja chat template source, "" when none   */
  LRT_STR_FEATURES = 5       /* the family's distinctive settings in words, e.g.
                                "q/k RMSNorm per head; sliding window 512 on 5 of 6 layers";
                                "" for plain Llama-style models (since 0.x)               */
} lrt_model_str;
LRT_API int32_t lrt_model_get_str(const lrt_model *model, int32_t key, const char **out,
                                  size_t *out_len);

/* GGUF metadata (empty for safetensors models). Types are GGUF's value types. */
typedef enum lrt_meta_type {
  LRT_META_UINT8 = 0, LRT_META_INT8 = 1, LRT_META_UINT16 = 2, LRT_META_INT16 = 3,
  LRT_META_UINT32 = 4, LRT_META_INT32 = 5, LRT_META_FLOAT32 = 6, LRT_META_BOOL = 7,
  LRT_META_STRING = 8, LRT_META_ARRAY = 9, LRT_META_UINT64 = 10, LRT_META_INT64 = 11,
  LRT_META_FLOAT64 = 12
} lrt_meta_type;
LRT_API int64_t lrt_model_meta_count(const lrt_model *model);
/* Key of entry i (0 <= i < count). */
LRT_API int32_t lrt_model_meta_key(const lrt_model *model, int64_t i, const char **key,
                                   size_t *key_len);
/* Type of an entry; for arrays *elem_type and *count describe the elements, for scalars
 * *elem_type = *type and *count = 1. Returns LRT_ERR_NOT_FOUND when absent. */
LRT_API int32_t lrt_model_meta_type(const lrt_model *model, const char *key, size_t key_len,
                                    int32_t *type, int32_t *elem_type, int64_t *count);
/* Element `index` of an entry (0 for scalars) as a string / integer / double. Integer and
 * bool entries convert to int64 (uint64 above INT64_MAX fails); float ones to double. */
LRT_API int32_t lrt_model_meta_str(const lrt_model *model, const char *key, size_t key_len,
                                   int64_t index, const char **out, size_t *out_len);
LRT_API int32_t lrt_model_meta_int(const lrt_model *model, const char *key, size_t key_len,
                                   int64_t index, int64_t *out);
/* Element `index` of an unsigned or non-negative integer / bool entry as uint64 (for UINT64
 * values above INT64_MAX). */
LRT_API int32_t lrt_model_meta_uint(const lrt_model *model, const char *key, size_t key_len,
                                    int64_t index, uint64_t *out);
LRT_API int32_t lrt_model_meta_float(const lrt_model *model, const char *key, size_t key_len,
                                     int64_t index, double *out);

/* ---- tokenizer --------------------------------------------------------------------- */

/* Open only the tokenizer of a model (llama.cpp's "vocab only"): with lrt_model_open, a
 * .gguf file (its tokenizer.* metadata; no tensors needed) or a folder holding tokenizer.json
 * and optionally tokenizer_config.json, special_tokens_map.json, generation_config.json and
 * the chat template files (no config.json or weights needed); with lrt_model_open_memory,
 * those files by name. The handle serves the tokenizer, chat and metadata functions; sizes
 * of the network read 0 and lrt_session_new fails with LRT_ERR_INVALID_ARGUMENT. Unlike a
 * full open, a missing or unusable tokenizer fails the open (LRT_ERR_NOT_FOUND / _FORMAT /
 * _UNSUPPORTED with the reason). */
#define LRT_OPEN_TOKENIZER_ONLY 64

/* A model opened from a HuggingFace folder (or files) with a tokenizer.json, or from a GGUF
 * file with tokenizer.ggml.* metadata, carries its tokenizer. It gives the same ids as
 * HuggingFace `tokenizers` on that tokenizer.json (for GGUF: as the tokenizer the Python
 * package builds from the metadata, i.e. llama.cpp's). Supported: BPE models (byte-level
 * like GPT-2 / SmolLM2 / Qwen2 / Llama 3, and SentencePiece-style with byte fallback like
 * Llama 2 / TinyLlama / Mistral), added and special tokens, the usual normalizers,
 * pre-tokenizers, post-processors and decoders. A model whose tokenizer is missing or
 * uses something loomrt does not implement still opens: the functions below then fail
 * with LRT_ERR_NOT_FOUND (no tokenizer) or with the status of the load failure
 * (LRT_ERR_FORMAT, LRT_ERR_UNSUPPORTED), and lrt_last_error() says why. */

/* *out = 1 when the model has a usable tokenizer, else 0. */
LRT_API int32_t lrt_model_has_tokenizer(const lrt_model *model, int32_t *out);

/* lrt_tokenize flags (bit set). */
#define LRT_TOKENIZE_ADD_SPECIAL   1  /* add BOS/EOS as the tokenizer's post-processor does
                                         (GGUF: tokenizer.ggml.add_bos_token / _eos_token);
                                         a folder's tokenizer_config.json "add_bos_token" /
                                         "add_eos_token" replace the post-processor, as in
                                         transformers: bos + text + eos as they say      */
#define LRT_TOKENIZE_PARSE_SPECIAL 2  /* match special tokens written in the text ("<|im_end|>");
                                         without it they are tokenized as plain text.
                                         Non-special added tokens always match.           */
/* Tokenize text[0..text_len) (UTF-8; LRT_ERR_INVALID_ARGUMENT when it is not). The ids go
 * to ids[0..capacity); *n_ids always receives the full count. When the count exceeds
 * capacity, the first capacity ids are written and the call fails with
 * LRT_ERR_BUFFER_TOO_SMALL (ids may be NULL when capacity is 0, to ask for the count). */
LRT_API int32_t lrt_tokenize(const lrt_model *model, const char *text, size_t text_len,
                             int32_t flags, int32_t *ids, int64_t capacity, int64_t *n_ids);

/* The bytes of one token as the decoder turns it into text, without the context of
 * neighbouring tokens (byte-level characters mapped back to bytes, U+2581 to a space,
 * "<0xNN>" to the byte NN; special tokens give their text). May be a partial UTF-8
 * sequence. *bytes is owned by the model (valid until lrt_model_close; not
 * NUL-terminated). Ids in the model's vocabulary that the tokenizer does not assign give
 * 0 bytes; ids outside both fail with LRT_ERR_INVALID_ARGUMENT. */
LRT_API int32_t lrt_token_bytes(const lrt_model *model, int32_t id, const char **bytes,
                                size_t *len);

/* The vocabulary text of one token as the tokenizer stores it (e.g. "\xC4\xA0the" for
 * byte-level " the", "<0x0A>", "\xE2\x96\x81the", "<|im_end|>"), as `tokenizers`
 * id_to_token gives it: the entry of the model's vocabulary, or the content of an added
 * token (passed through the normalizer when the token is marked normalized). *text is
 * owned by the model (not NUL-terminated). LRT_ERR_NOT_FOUND for an id in range that the tokenizer does not assign;
 * LRT_ERR_INVALID_ARGUMENT outside [0, LRT_INFO_TOKENIZER_SIZE). */
LRT_API int32_t lrt_token_text(const lrt_model *model, int32_t id, const char **text, size_t *len);
/* The id of the token whose text is text[0..len), as `tokenizers` token_to_id finds it:
 * the content of an added token (as written in the file), else an entry of the model's
 * vocabulary. LRT_ERR_NOT_FOUND when no token has that text. */
LRT_API int32_t lrt_token_id(const lrt_model *model, const char *text, size_t len, int32_t *id);

/* lrt_detokenize flags (bit set). */
#define LRT_DETOKENIZE_SKIP_SPECIAL 1 /* leave special tokens (BOS, EOS, <|im_end|>, ...) out */
/* Decode ids[0..n) to UTF-8 text exactly as `tokenizers` decode does, including the
 * decoder's rules across tokens (e.g. the SentencePiece leading space is removed); invalid
 * UTF-8 from byte tokens becomes U+FFFD. The text goes to text[0..capacity) (not
 * NUL-terminated); *text_len always receives the full length: when it exceeds capacity,
 * the first capacity bytes are written and the call fails with LRT_ERR_BUFFER_TOO_SMALL
 * (text may be NULL when capacity is 0). Ids the tokenizer does not assign give no text;
 * negative ids or ids outside the model's vocabulary fail with LRT_ERR_INVALID_ARGUMENT. */
LRT_API int32_t lrt_detokenize(const lrt_model *model, const int32_t *ids, int64_t n,
                               int32_t flags, char *text, size_t capacity, size_t *text_len);

/* ---- sessions ---------------------------------------------------------------------- */

typedef struct lrt_session lrt_session;

/* A session holds the KV cache for up to `context` positions (0: the model's context
 * length) and a pool of `threads` worker threads (0: the physical cores this process may run
 * on -- SMT siblings of a core count once; the online CPUs where the topology is unknown). */
LRT_API int32_t lrt_session_new(lrt_model *model, int64_t context, int32_t threads,
                                lrt_session **out);
LRT_API void lrt_session_free(lrt_session *session);

/* Forget all tokens (position back to 0); the sampler settings stay. */
LRT_API int32_t lrt_session_reset(lrt_session *session);
/* Drop tokens from position `pos` on (0 <= pos <= current position). */
LRT_API int32_t lrt_session_truncate(lrt_session *session, int64_t pos);
/* Number of tokens in the KV cache; -1 when session is NULL or in use by another thread. */
LRT_API int64_t lrt_session_position(const lrt_session *session);

/* Append `n` tokens to the sequence and run the model over them. With all_logits = 1 the
 * logits of every new position are kept (n x vocab), otherwise only those of the last.
 * The logits bits do not depend on how a sequence is split across eval calls, nor on the
 * thread count. Fails with LRT_ERR_CONTEXT_FULL when the tokens do not fit, and with
 * LRT_ERR_NUMERIC when a logit it computed is NaN or infinite: lrt_last_error() names the
 * position and the first block (token embedding, layer l's attention or MLP, or the final
 * norm and LM head) whose output stopped being finite, found by re-running the positions
 * with a check after every block (only on this failure path); nothing is added to the
 * session then. Everything that evaluates (lrt_session_prompt*, lrt_session_step,
 * lrt_generate) fails the same way. */
LRT_API int32_t lrt_session_eval(lrt_session *session, const int32_t *tokens, int64_t n,
                                 int32_t all_logits);
/* Logits of the last eval: *rows x *vocab float32, row-major. */
LRT_API int32_t lrt_session_logits(const lrt_session *session, const float **out,
                                   int64_t *rows, int64_t *vocab);

/* Sampler settings. */
typedef enum lrt_param {
  LRT_PARAM_TEMPERATURE = 0,    /* double >= 0; 0 means greedy (default 0)          */
  LRT_PARAM_TOP_K = 1,          /* int >= 0; 0 disables (default 0)                 */
  LRT_PARAM_TOP_P = 2,          /* double in (0, 1]; 1 disables (default 1)         */
  LRT_PARAM_MIN_P = 3,          /* double in [0, 1]; 0 disables (default 0)         */
  LRT_PARAM_REPEAT_PENALTY = 4, /* double > 0; 1 disables (default 1)               */
  LRT_PARAM_SEED = 5,           /* int, any 64-bit value (default 0)                */
  LRT_PARAM_REPEAT_LAST_N = 6,  /* int >= -1: tokens the penalty looks back over,
                                   -1 = whole sequence (default -1)                 */
  LRT_PARAM_MAX_TOKENS = 7      /* int >= -1: tokens lrt_session_step gives before it
                                   ends the generation (LRT_FINISH_LENGTH); -1 = no
                                   limit (default -1). Not a sampler setting.        */
} lrt_param;
LRT_API int32_t lrt_session_set_float(lrt_session *session, int32_t param, double value);
LRT_API int32_t lrt_session_set_int(lrt_session *session, int32_t param, int64_t value);

/* Choose the next token from the last row of the last eval's logits with the session's
 * sampler settings. The random draw depends only on (seed, position), so any step can be
 * replayed alone. Ties are broken by the lower token id. Does not append the token. */
LRT_API int32_t lrt_session_sample(lrt_session *session, int32_t *token);

/* Probabilities the sampler used for the last lrt_session_sample call: the candidate
 * ids and their probabilities after all filters (sorted by probability, then id). */
LRT_API int32_t lrt_session_candidates(const lrt_session *session, const int32_t **ids,
                                       const float **probs, int64_t *count);

/* ---- session state: save and resume --------------------------------------------------

   A session's whole state -- position, token history, KV cache rows in use, the logits of
   the last eval, the candidates of the last sample call and the sampler settings (seed and
   LRT_PARAM_MAX_TOKENS included) -- as a portable byte blob. Loading it into a session of
   the same model continues bit-identically: the same logits and tokens as if the session
   never stopped (thread count and context size of the two sessions may differ). A
   generation in progress with lrt_session_step is not part of the state: after a load,
   start one with lrt_session_prompt* (LRT_PROMPT_KEEP continues after the loaded tokens).

   The blob is little-endian on every host and self-checking: magic "LRTSTATE", blob format
   version, numerics version, its own length, a fingerprint of the model (configuration, all
   norm / bias vectors, 8 rows of every weight matrix, by value), the counts, the data and a
   128-bit checksum. Blobs are untrusted input: a rejected blob leaves the session unchanged.
   Load fails with
     LRT_ERR_FORMAT            not a state blob, truncated, corrupted (checksum), bad counts
     LRT_ERR_UNSUPPORTED       another blob format or numerics version
     LRT_ERR_INVALID_ARGUMENT  saved from a different model
     LRT_ERR_CONTEXT_FULL      more tokens than this session's context holds
   The layout is described in csrc/state.c. */

/* Exact size in bytes of the blob lrt_session_state_save would write now. */
LRT_API int32_t lrt_session_state_size(const lrt_session *s, size_t *size);
/* Write the state into buf (cap bytes; fails with LRT_ERR_INVALID_ARGUMENT when cap is less
 * than lrt_session_state_size). *written (may be NULL) gets the bytes written. */
LRT_API int32_t lrt_session_state_save(const lrt_session *s, void *buf, size_t cap, size_t *written);
/* Replace the session's state with a saved blob of len bytes (validated first). */
LRT_API int32_t lrt_session_state_load(lrt_session *s, const void *buf, size_t len);

/* ---- text: models from memory, chat templates, generation ---------------------------

   Text in, text out, without Python. The tokenizer functions (lrt_tokenize, ...) turn text
   into ids; the functions below open models from memory, render chat conversations and
   generate text, either pulled one token at a time (lrt_session_prompt + lrt_session_step,
   no callbacks: suits game loops, C#, ctypes) or pushed to a callback (lrt_generate).

   Threads: a model is read-only once opened (weights, tokenizer, chat template and
   end-of-generation ids are all fixed by lrt_model_open*), so one model may be shared by
   any number of threads, each using its own session. A session must not be used by two
   threads at the same time: every function taking a session marks it in use for the call
   (one atomic flag), and a call that finds it in use by another thread returns
   LRT_ERR_BUSY at once without touching it (lrt_session_position returns -1). Not detected:
   lrt_session_free racing another call, and reading a buffer a session getter returned
   while another thread calls into that session (docs/threads.md). */

/* Open a model from files held in memory (an engine's packed assets). The files are given
 * as n_files parallel entries: names[i] (names_lens[i] bytes, UTF-8) and data[i]
 * (sizes[i] bytes). Either
 *   - one file whose name ends in ".gguf" (weights, config and tokenizer in one), or
 *   - the files of a HuggingFace folder under their usual names: "config.json" (required),
 *     "model.safetensors" or "model.safetensors.index.json" plus the shard files it names,
 *     and optionally "generation_config.json", "tokenizer.json", "tokenizer_config.json",
 *     "special_tokens_map.json", "chat_template.jinja", "chat_template.json".
 * Other names are ignored. flags: LRT_OPEN_* bits. Without LRT_OPEN_COPY_BUFFERS the model
 * uses the buffers in place (no copy, like a memory mapping): they must stay valid and
 * unchanged until lrt_model_close(). With it, loomrt copies every buffer first and the
 * caller may free them as soon as this returns (needed for garbage-collected memory,
 * e.g. C# byte[] or Python bytes). Same results as lrt_model_open on the same files.
 * On failure *out is NULL. */
#define LRT_OPEN_COPY_BUFFERS 2
LRT_API int32_t lrt_model_open_memory(int64_t n_files, const char *const *names,
                                      const size_t *names_lens, const void *const *data,
                                      const size_t *sizes, int32_t flags, lrt_model **out);

/* Chat formats. LRT_CHAT_MODEL uses the model's own template (GGUF
 * "tokenizer.chat_template", or the folder's chat_template.jinja / chat_template.json /
 * tokenizer_config.json "chat_template", read with the folder's tokenizer: a folder without
 * a usable tokenizer.json has no template): loomrt does not run Jinja; it recognises which
 * known family the template belongs to by its content and renders that family in C:
 *   LRT_CHAT_CHATML  "<|im_start|>role\ncontent<|im_end|>\n" ..., generation prompt
 *                    "<|im_start|>assistant\n" (SmolLM2, Qwen2, Hermes). When the model's
 *                    template inserts a default system message before a conversation that
 *                    does not start with one (SmolLM2, Qwen2), that message is inserted too.
 *   LRT_CHAT_LLAMA3  bos + "<|start_header_id|>role<|end_header_id|>\n\n" + trimmed content
 *                    + "<|eot_id|>" ..., generation prompt for "assistant" (Llama 3 / 3.x
 *                    without tools or the date header: a template that writes "Cutting
 *                    Knowledge Date" is not recognised).
 *   LRT_CHAT_LLAMA2  "<s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] assistant </s>..."
 *                    (Llama 2 chat; user/assistant must alternate; no generation prompt).
 *   LRT_CHAT_ZEPHYR  "<|role|>\ncontent" + eos + "\n" ..., generation prompt
 *                    "<|assistant|>\n" (Zephyr, TinyLlama chat).
 * A model without a template uses ChatML (as the Python package does). A template of no
 * known family fails with LRT_ERR_UNSUPPORTED: pass an explicit format instead. Recognition
 * is conservative: a template that writes more than its family (a bos/eos around ChatML,
 * tools, a date header, [INST] without <<SYS>> as in Mistral) is not recognised rather than
 * rendered differently from its Jinja source. */
typedef enum lrt_chat_format {
  LRT_CHAT_MODEL = 0,
  LRT_CHAT_CHATML = 1,
  LRT_CHAT_LLAMA3 = 2,
  LRT_CHAT_LLAMA2 = 3,
  LRT_CHAT_ZEPHYR = 4
} lrt_chat_format;

/* The family of the model's own chat template (LRT_CHAT_CHATML ... ; LRT_CHAT_CHATML when
 * the model has none). LRT_ERR_UNSUPPORTED when it is of no known family. */
LRT_API int32_t lrt_chat_detect(const lrt_model *model, int32_t *format);

/* Render a conversation of n_messages messages: roles[i] ("system", "user", "assistant",
 * roles_lens[i] bytes) and contents[i] (contents_lens[i] bytes), all UTF-8. With
 * add_generation_prompt = 1 the text that opens the assistant's answer is appended. The
 * bos/eos texts the formats need are the model's (its bos token and first eos token);
 * model may be NULL with an explicit format, then the family's usual tokens are written
 * ("<s>", "</s>", "<|begin_of_text|>").
 * The result (not NUL-terminated) goes to out[0..capacity); *out_len always receives its
 * full length: when it exceeds capacity nothing useful is written and the call fails with
 * LRT_ERR_BUFFER_TOO_SMALL (call again with a larger buffer; out may be NULL when
 * capacity is 0). Tokenize the result with LRT_PROMPT_PARSE_SPECIAL and without
 * LRT_PROMPT_ADD_SPECIAL (the rendered text holds the bos it needs). */
LRT_API int32_t lrt_chat_apply(const lrt_model *model, int32_t format, int64_t n_messages,
                               const char *const *roles, const size_t *roles_lens,
                               const char *const *contents, const size_t *contents_lens,
                               int32_t add_generation_prompt, char *out, size_t capacity,
                               size_t *out_len);

/* Prompt flags (bit set). LRT_PROMPT_ADD_SPECIAL and LRT_PROMPT_PARSE_SPECIAL mean what
 * LRT_TOKENIZE_ADD_SPECIAL / LRT_TOKENIZE_PARSE_SPECIAL mean for lrt_tokenize (same
 * values); plain text prompts usually pass both (what the Python package does), rendered
 * chat text passes only LRT_PROMPT_PARSE_SPECIAL. */
#define LRT_PROMPT_ADD_SPECIAL 1
#define LRT_PROMPT_PARSE_SPECIAL 2
/* Keep the tokens already in the session and append the prompt after them (continue a
 * conversation) instead of starting over at position 0. */
#define LRT_PROMPT_KEEP 4

/* Start a generation: tokenize text[0..len) with the model's tokenizer (LRT_ERR_NOT_FOUND
 * when the model has none; use lrt_session_prompt_tokens) and evaluate it. Without
 * LRT_PROMPT_KEEP the session starts over at position 0. Tokens come from
 * lrt_session_step. The session's sampler settings (lrt_session_set_*) apply. Fails with
 * LRT_ERR_CONTEXT_FULL when the prompt does not fit (the session is then empty), and
 * LRT_ERR_INVALID_ARGUMENT for an empty prompt or text that is not UTF-8. */
LRT_API int32_t lrt_session_prompt(lrt_session *session, const char *text, size_t len,
                                   int32_t flags);
/* The same with token ids (n >= 1, each in [0, vocab)); only LRT_PROMPT_KEEP applies. */
LRT_API int32_t lrt_session_prompt_tokens(lrt_session *session, const int32_t *ids, int64_t n,
                                          int32_t flags);

/* Generate the next token of the generation started by lrt_session_prompt*. Returns
 * LRT_OK with either
 *   *token >= 0: the next token id (already part of the sequence: the next step evaluates
 *                it), and *text / *text_len its text: only complete UTF-8 characters are
 *                given; bytes of a character split over several tokens are held back and
 *                given with the token that completes it (so *text_len may be 0); or
 *   *token == -1: the generation is over (an end-of-generation token was sampled, which is
 *                not added to the sequence; LRT_PARAM_MAX_TOKENS tokens were given; or the
 *                context is full); *text holds any
 *                held-back text (incomplete bytes become U+FFFD). The reason is
 *                lrt_session_get_int(LRT_SESSION_FINISH_REASON). Further calls keep
 *                returning -1 with no text until the next prompt.
 * The concatenated texts equal lrt_detokenize of all generated ids. *text is owned by the
 * session and valid until the next call on it. token, text and text_len must not be NULL.
 * LRT_ERR_STATE when no prompt was given. Text is empty for a model without tokenizer. */
LRT_API int32_t lrt_session_step(lrt_session *session, int32_t *token, const char **text,
                                 size_t *text_len);

/* Why the last generation ended. */
typedef enum lrt_finish_reason {
  LRT_FINISH_NONE = 0,     /* still generating (or never started)                       */
  LRT_FINISH_EOS = 1,      /* an end-of-generation token was sampled                    */
  LRT_FINISH_LENGTH = 2,   /* lrt_generate reached max_tokens                           */
  LRT_FINISH_CONTEXT = 3,  /* the context is full                                       */
  LRT_FINISH_CALLBACK = 4  /* lrt_generate's callback asked to stop                      */
} lrt_finish_reason;

/* Integer facts about a session's generation. */
typedef enum lrt_session_info {
  LRT_SESSION_FINISH_REASON = 0,    /* lrt_finish_reason of the last generation           */
  LRT_SESSION_PROMPT_TOKENS = 1,    /* tokens of the last prompt (after tokenization)     */
  LRT_SESSION_GENERATED_TOKENS = 2  /* tokens given by steps since the last prompt        */
} lrt_session_info;
LRT_API int32_t lrt_session_get_int(const lrt_session *session, int32_t key, int64_t *out);

/* Called by lrt_generate for each generated token with the token id and its complete UTF-8
 * text (as lrt_session_step gives them; text_len may be 0; the text is valid only during
 * the call). When the generation ends with held-back text, a last call passes token -1 and
 * that text. Return 0 to go on, nonzero to stop (finish reason LRT_FINISH_CALLBACK; no
 * further call, held-back bytes are dropped). The callback must not call functions on the
 * same session (they fail with LRT_ERR_BUSY: the session is in use by lrt_generate). */
typedef int32_t (*lrt_token_callback)(void *user_data, int32_t token, const char *text,
                                      size_t text_len);
/* lrt_session_prompt(session, text, len, flags), then at most max_tokens (>= 0) steps,
 * each passed to callback (may be NULL: generate without seeing the tokens; a smaller
 * LRT_PARAM_MAX_TOKENS also applies). Ends at an
 * end-of-generation token, max_tokens, a full context or when the callback returns
 * nonzero; lrt_session_get_int gives the reason and counts afterwards. Same tokens as the
 * pull API and as the Python package's Model.generate for the same prompt and settings. */
LRT_API int32_t lrt_generate(lrt_session *session, const char *text, size_t len, int32_t flags,
                             int64_t max_tokens, lrt_token_callback callback, void *user_data);

/* ---- kernels ------------------------------------------------------------------------ */

/* Kernel paths. Every path gives the same bits as the scalar reference ("reference"); the
 * others ("avx2", ...) are faster paths for one instruction set, chosen at run time from
 * what the CPU and OS support. The process starts on the best runnable path, unless the
 * environment variable LOOMRT_KERNELS names another runnable one (e.g.
 * LOOMRT_KERNELS=reference; an unknown or unrunnable name means the best path). */

/* Name of the kernel path in use, NUL-terminated ("reference", "avx2", ...). */
LRT_API const char *lrt_kernel_path(void);
/* The index-th kernel path this build and machine can run (index 0 is the best, the last
 * is "reference"): *name (NUL-terminated, static) and *name_len. Returns LRT_ERR_NOT_FOUND
 * when index is past the end, so a loop from 0 lists them all. */
LRT_API int32_t lrt_kernels_available(int32_t index, const char **name, size_t *name_len);
/* Switch the whole process to the kernel path called name[0..len) ("auto" or len 0: the
 * best runnable path). Takes effect for the next kernel call on every thread; results do
 * not change (same bits). Errors: LRT_ERR_NOT_FOUND for a name this build does not know,
 * LRT_ERR_UNSUPPORTED for a path compiled in that this CPU/OS cannot run. */
LRT_API int32_t lrt_kernels_select(const char *name, size_t len);

/* ---- training --------------------------------------------------------------------------

   Train a model's weights in float32 under the same determinism contract as inference
   (docs/training.md): the losses, gradients and weights are bit-identical at any thread
   count, on every kernel path, and for gradient accumulation in any split of the same
   global batch into micro-batches of whole sequences (k micro-batches of b sequences give
   the update of one batch of k*b sequences, bit for bit). Every sum has one written order
   (csrc/train/train.h); transcendental functions are loomrt's own.

   A trainer holds the weights, the gradient accumulators and the AdamW state. A training
   step is one or more lrt_trainer_accumulate calls (the micro-batches), then
   lrt_trainer_apply (clip, optimizer update, clear the accumulators). The loss is the mean
   next-token cross-entropy over all targets of the step; its gradient is what is applied.

   Tensors are named by loomrt, the same names for every architecture (row-major, matrices
   (out, in), vectors with rows = 1):
     tok_embd (vocab, dim), pos_embd (context, dim) [learned positions, GPT-2],
     blk.<l>.attn_norm [.attn_norm_b], blk.<l>.wq [.bq], .wk [.bk], .wv [.bv], .wo [.bo],
     blk.<l>.ffn_norm [.ffn_norm_b], .w_gate [SwiGLU], .w_up [.b_up], .w_down [.b_down],
     out_norm [out_norm_b], lm_head [untied].
   GPT-2's Conv1D matrices are stored (in, out) and its c_attn fuses q, k, v: the Python
   layer (loomrt/train.py) maps between these names and HF's when it reads and writes
   checkpoints.

   A trainer must not be used by two threads at the same time. */

typedef struct lrt_trainer lrt_trainer;

/* A new trainer for the model described by config.json text (json_len bytes, UTF-8):
 * LlamaForCausalLM-style (RMSNorm, RoPE, SwiGLU, grouped-query attention, optional biases;
 * also mistral / qwen2) or GPT2LMHeadModel-style (LayerNorm, learned positions, tanh-GELU,
 * biases), tied or untied LM head -- the keys loomrt reads for inference (unknown keys are
 * ignored). Weights are initialised from seed: matrices N(0, 0.02) (the residual outputs wo
 * and w_down N(0, 0.02 / sqrt(2 * layers)), GPT-2 positions N(0, 0.01)), norm weights 1,
 * biases 0; every element depends only on (seed, tensor, element). threads: worker threads
 * (0: the physical cores). */
LRT_API int32_t lrt_trainer_new(const char *config_json, size_t json_len, uint64_t seed, int32_t threads,
                                lrt_trainer **out);
/* A new trainer starting from the weights of a model (HF folder or GGUF file, any stored
 * format, dequantized to float32 exactly as inference reads them). */
LRT_API int32_t lrt_trainer_open(const char *path, size_t path_len, int32_t threads, lrt_trainer **out);
LRT_API void lrt_trainer_free(lrt_trainer *trainer);

/* Hyperparameters (lrt_trainer_set) and results (lrt_trainer_get), as doubles. */
typedef enum lrt_train_key {
  LRT_TRAIN_LR = 0,            /* peak learning rate (default 1e-3)                          */
  LRT_TRAIN_MIN_LR = 1,        /* cosine schedule: the rate at total_steps (default 0)       */
  LRT_TRAIN_WARMUP_STEPS = 2,  /* linear warmup over the first N updates: lr * t / N (0)     */
  LRT_TRAIN_TOTAL_STEPS = 3,   /* cosine schedule length in updates (default 0)              */
  LRT_TRAIN_SCHEDULE = 4,      /* LRT_SCHEDULE_* (default constant)                          */
  LRT_TRAIN_WEIGHT_DECAY = 5,  /* AdamW decoupled decay of the matrices (default 0)          */
  LRT_TRAIN_BETA1 = 6,         /* default 0.9                                                */
  LRT_TRAIN_BETA2 = 7,         /* default 0.999                                              */
  LRT_TRAIN_EPS = 8,           /* default 1e-8                                               */
  LRT_TRAIN_CLIP_NORM = 9,     /* global gradient norm limit; 0 = no clipping (default 0)    */
  LRT_TRAIN_LR_SCALE = 10,     /* multiplies the scheduled rate (plateau halving; default 1) */
  /* read-only */
  LRT_TRAIN_STEP = 11,         /* updates applied                                            */
  LRT_TRAIN_LOSS = 12,         /* mean loss of the last applied step                         */
  LRT_TRAIN_GRAD_NORM = 13,    /* global gradient norm of the last step, before clipping     */
  LRT_TRAIN_LAST_LR = 14,      /* learning rate the last step used                           */
  LRT_TRAIN_PENDING_TOKENS = 15, /* targets accumulated since the last apply                 */
  LRT_TRAIN_PARAMETERS = 16    /* number of trainable elements                               */
} lrt_train_key;
#define LRT_SCHEDULE_CONSTANT 0 /* lr after warmup                                          */
#define LRT_SCHEDULE_COSINE 1   /* min_lr + (lr - min_lr) (1 + cos(pi p)) / 2 after warmup,
                                   p = (step - warmup) / (total - warmup), capped at 1      */
LRT_API int32_t lrt_trainer_set(lrt_trainer *trainer, int32_t key, double value);
LRT_API int32_t lrt_trainer_get(const lrt_trainer *trainer, int32_t key, double *out);

/* Forward and backward over a micro-batch: tokens is batch rows of seq_len + 1 ids
 * (row-major); in each row the first seq_len ids are the inputs at positions 0.. and the
 * last seq_len the targets. Adds the gradient sums to the accumulators. *loss (may be NULL)
 * gets the micro-batch's mean loss. */
LRT_API int32_t lrt_trainer_accumulate(lrt_trainer *trainer, const int32_t *tokens, int64_t batch, int64_t seq_len,
                                       double *loss);
/* One optimizer update with the accumulated gradient; clears the accumulators.
 * LRT_ERR_STATE when nothing was accumulated. */
LRT_API int32_t lrt_trainer_apply(lrt_trainer *trainer);
/* Mean loss over a batch (same layout as accumulate) without touching the gradients. */
LRT_API int32_t lrt_trainer_eval(lrt_trainer *trainer, const int32_t *tokens, int64_t batch, int64_t seq_len,
                                 double *loss);
/* Logits (vocab floats into out[0..capacity)) of the last of n tokens at positions 0..n-1. */
LRT_API int32_t lrt_trainer_logits(lrt_trainer *trainer, const int32_t *tokens, int64_t n, float *out,
                                   int64_t capacity);

/* The tensors: count, then name / shape of tensor i (name owned by the trainer). */
LRT_API int32_t lrt_trainer_tensor_count(const lrt_trainer *trainer, int64_t *count);
LRT_API int32_t lrt_trainer_tensor_info(const lrt_trainer *trainer, int64_t index, const char **name,
                                        size_t *name_len, int64_t *rows, int64_t *cols);
/* What lrt_trainer_tensor_read copies. */
#define LRT_TENSOR_WEIGHT 0 /* the weights                                                   */
#define LRT_TENSOR_GRAD 1   /* the accumulated mean-loss gradient (what apply would clip)    */
#define LRT_TENSOR_ADAM_M 2 /* AdamW first moment                                            */
#define LRT_TENSOR_ADAM_V 3 /* AdamW second moment                                           */
/* Copy rows * cols floats of tensor index into out (n must equal rows * cols). */
LRT_API int32_t lrt_trainer_tensor_read(const lrt_trainer *trainer, int64_t index, int32_t what, float *out,
                                        int64_t n);
/* Replace the weights of tensor index (n = rows * cols floats). */
LRT_API int32_t lrt_trainer_tensor_write(lrt_trainer *trainer, int64_t index, const float *data, int64_t n);

/* Optimizer state (step, beta powers, AdamW moments) as a little-endian, self-checking
 * blob: saving it with the weights and loading both into a trainer of the same config
 * resumes bit-identically. Save needs no pending accumulation (LRT_ERR_STATE). Load
 * fails with LRT_ERR_FORMAT (not a state, truncated, corrupted), LRT_ERR_UNSUPPORTED
 * (another format or numerics version) or LRT_ERR_INVALID_ARGUMENT (another config) and
 * then leaves the trainer unchanged; it clears the accumulators. */
LRT_API int32_t lrt_trainer_state_size(const lrt_trainer *trainer, size_t *size);
LRT_API int32_t lrt_trainer_state_save(const lrt_trainer *trainer, void *buf, size_t capacity, size_t *written);
LRT_API int32_t lrt_trainer_state_load(lrt_trainer *trainer, const void *buf, size_t len);

/* ---- weaving: several models write one token stream (docs/weaving.md) -----------------

   A weave steps N sessions (N >= 1, each on its own model; the models must share token ids)
   over the same token stream. At each step every session's next-token logits are combined
   elementwise over the shared vocabulary by the mode's formula, in float32 with loomrt's own
   exp/log and fixed orders (bit-identical across thread counts, kernel paths and machines),
   and the weave's seeded sampler (the session sampler: temperature, top-k, top-p, min-p,
   repetition penalty, seed) draws from the combined logits. Every given token leaves an
   exact trace row: the weights in force, each model's probability, rank and top tokens, the
   combined probability and each model's share.

   Vocabulary: ids that every model has (the shared vocabulary, [0, S)) must be the same
   tokens in every model that has a tokenizer (compared byte for byte); ids a model has
   beyond S (a padded superset) are masked out of the combination. Anything else is refused
   at lrt_weave_new with LRT_ERR_INVALID_ARGUMENT naming the first differing token.

   The sessions are borrowed: they must outlive the weave, and must not be used by anyone
   else while it generates (a session changed behind its back ends the generation with
   LRT_ERR_STATE). Model 0 tokenizes text prompts, gives the text of tokens and decides the
   end of generation (its end-of-generation ids). */
typedef struct lrt_weave lrt_weave;

typedef enum lrt_weave_mode {
  LRT_WEAVE_MIX = 0,      /* p = sum_i w_i p_i, weights normalised to sum 1 (N >= 1)          */
  LRT_WEAVE_PRODUCT = 1,  /* logits sum_i w_i z_i: log p = sum_i w_i log p_i - log Z (N >= 1) */
  LRT_WEAVE_CONTRAST = 2, /* w_0 log p_0 - w_1 log p_1 over p_0 >= alpha max p_0 (N == 2:
                             expert, amateur; Li et al. 2022)                                 */
  LRT_WEAVE_PROXY = 3     /* w_0 z_0 + alpha (w_1 z_1 - w_2 z_2) (N == 3: base, expert,
                             anti-expert; proxy-tuning / DExperts)                            */
} lrt_weave_mode;

/* Weave settings (lrt_weave_set_float / _int) besides the LRT_PARAM_* sampler settings. */
#define LRT_WEAVE_ALPHA 100               /* contrast: plausibility cut (default 0.1); proxy:
                                             expert scale (default 1); double >= 0          */
#define LRT_WEAVE_AMATEUR_TEMPERATURE 101 /* contrast: the amateur's temperature, > 0 (1)   */
#define LRT_WEAVE_TRACE_TOP_K 102         /* top tokens kept per model and step, 0..64 (5)  */
#define LRT_WEAVE_PARALLEL 103            /* int: step up to this many models at once, each
                                             on its own thread (its eval uses its session's
                                             threads); 0 or 1: one after another (default 0).
                                             Changes no bit: each model's values are computed
                                             by the same code on whichever thread.          */

/* Weight schedules (lrt_weave_set_schedule). */
#define LRT_WEAVE_SCHEDULE_NONE 0 /* static weights (lrt_weave_set_weights)                  */
#define LRT_WEAVE_SCHEDULE_LIST 1 /* rows of N weights: row k at generated step k, the last
                                     row after the end                                       */
#define LRT_WEAVE_SCHEDULE_RAMP 2 /* knots (step, w_0 .. w_N-1), steps increasing: piecewise
                                     linear between knots, constant outside                 */

/* Integer facts about a weave (lrt_weave_get_int). */
#define LRT_WEAVE_INFO_FINISH_REASON 0 /* lrt_finish_reason of the last generation           */
#define LRT_WEAVE_INFO_PROMPT_TOKENS 1
#define LRT_WEAVE_INFO_GENERATED_TOKENS 2
#define LRT_WEAVE_INFO_VOCAB 3         /* columns of the combined logits                     */
#define LRT_WEAVE_INFO_SHARED_VOCAB 4  /* S: ids >= S are masked                             */
#define LRT_WEAVE_INFO_MODELS 5
#define LRT_WEAVE_INFO_TRACE_ROWS 6    /* trace rows since the last prompt                   */
#define LRT_WEAVE_INFO_MODE 7
#define LRT_WEAVE_INFO_TRACE_TOP_K 8
#define LRT_WEAVE_INFO_PARALLEL 9      /* threads stepping models at once (0: none)          */

/* A weave over sessions[0..n) (1 <= n <= 16, distinct sessions). Mode mix, weights all 1. */
LRT_API int32_t lrt_weave_new(lrt_session *const *sessions, int64_t n, lrt_weave **out);
LRT_API void lrt_weave_free(lrt_weave *weave);
/* LRT_ERR_INVALID_ARGUMENT for a mode the number of models does not fit. */
LRT_API int32_t lrt_weave_set_mode(lrt_weave *weave, int32_t mode);
/* n == the number of models; every weight finite and >= 0, not all 0. */
LRT_API int32_t lrt_weave_set_weights(lrt_weave *weave, const double *weights, int64_t n);
/* kind LRT_WEAVE_SCHEDULE_*; values: LIST rows x N, RAMP knots x (N + 1). NONE clears. */
LRT_API int32_t lrt_weave_set_schedule(lrt_weave *weave, int32_t kind, const double *values, int64_t n_values);
/* A rule evaluated in C at every step on top of the static / scheduled weights:
 *   "none"        no rule (params: none)
 *   "confidence"  w_i <- w_i c_i * (sum_j w_j) / (sum_j w_j c_j), c_i = max_t p_i(t): a
 *                 model counts more where its distribution is peaked (params: none)
 *   "route"       params = 2N weights: the first N outside a fenced code block, the last N
 *                 inside one (the stream so far, prompt included, has an odd number of
 *                 "```" runs); needs model 0's tokenizer.
 * LRT_ERR_NOT_FOUND for an unknown name (the message lists the rules). */
LRT_API int32_t lrt_weave_set_rule(lrt_weave *weave, const char *name, size_t name_len, const double *params,
                                   int64_t n_params);
LRT_API int32_t lrt_weave_set_float(lrt_weave *weave, int32_t key, double value);
LRT_API int32_t lrt_weave_set_int(lrt_weave *weave, int32_t key, int64_t value);
LRT_API int32_t lrt_weave_get_int(const lrt_weave *weave, int32_t key, int64_t *out);
/* Start a generation as lrt_session_prompt / lrt_session_prompt_tokens do, on every session
 * (text is tokenized by model 0). Clears the trace. */
LRT_API int32_t lrt_weave_prompt(lrt_weave *weave, const char *text, size_t len, int32_t flags);
LRT_API int32_t lrt_weave_prompt_tokens(lrt_weave *weave, const int32_t *ids, int64_t n, int32_t flags);
/* The next woven token, with the contract of lrt_session_step (token -1: over). */
LRT_API int32_t lrt_weave_step(lrt_weave *weave, int32_t *token, const char **text, size_t *text_len);
/* The combined logits the last step sampled from (*vocab floats; masked ids are -inf). */
LRT_API int32_t lrt_weave_logits(const lrt_weave *weave, const float **out, int64_t *vocab);
/* Trace row `row` (0 = the first token given since the last prompt). Arrays have n_models
 * entries (n_models must equal the weave's). Any output pointer may be NULL.
 *   weights:  the weights in force (mix: normalised to sum 1)
 *   probs:    p_i(token), each model's own softmax at temperature 1 (contrast: the amateur's
 *             at its temperature)
 *   ranks:    1 + the tokens model i ranks above it (probability, then lower id)
 *   shares:   mix: w_i p_i(t) / p(t) (sums to 1); product, contrast, proxy: model i's
 *             additive contribution to the token's combined logit (product and contrast:
 *             w_i log p_i(t), the amateur's negated; proxy: w_0 z_0(t), alpha w_1 z_1(t),
 *             -alpha w_2 z_2(t))
 *   combined: the combined distribution's p(t) before the sampler's temperature and filters
 *   sampled:  the probability the sampler drew t with (after its filters; 1 when greedy)
 *   dominant: argmax_i w_i p_i(t) (lowest i on ties) */
LRT_API int32_t lrt_weave_trace_row(const lrt_weave *weave, int64_t row, int32_t *token, int32_t *dominant,
                                    double *combined, double *sampled, double *weights, double *probs,
                                    int64_t *ranks, double *shares, int64_t n_models);
/* The top tokens of trace row `row` for model `model` (0..N-1) or the combined distribution
 * (model = -1), most probable first (ties: lower id): up to capacity ids and probabilities;
 * *count gets how many there are (at most LRT_WEAVE_TRACE_TOP_K). */
LRT_API int32_t lrt_weave_trace_top(const lrt_weave *weave, int64_t row, int64_t model, int32_t *ids, double *probs,
                                    int64_t capacity, int64_t *count);

/* ---- inspection: what happens inside the model (docs/inspect.md) ----------------------- */

/* Record, during the session's next evals, for every token evaluated at a position p in
 * [pos_lo, pos_lo + n_pos): the residual stream after the embedding and after each layer,
 *   hidden[((l * n_pos) + (p - pos_lo)) * dim + i]          l = 0 .. layers (0: embedding),
 * and every head's attention probabilities over the key positions k <= p it attends to,
 *   attn[(((l * heads + h) * n_pos) + (p - pos_lo)) * n_key + k]     for p < n_key
 * (entries of keys outside the head's window are not written). Both buffers are the
 * caller's (float32, either may be NULL) and must stay valid while recording is on. The
 * values are copies of what the forward pass computes: logits do not change. Pass both
 * NULL to stop; when off (the default) the hook costs one pointer test per layer. */
LRT_API int32_t lrt_session_inspect(lrt_session *session, float *hidden, float *attn, int64_t pos_lo, int64_t n_pos,
                                    int64_t n_key);
/* The logit lens: final norm and LM head applied to rows x dim hidden states (e.g. a layer's
 * residual stream from lrt_session_inspect), written to logits (rows x vocab). Applied to the
 * last layer's states it gives the model's logits bit for bit. Uses the session's threads;
 * does not change its tokens or logits. */
LRT_API int32_t lrt_session_lens(lrt_session *session, const float *hidden, int64_t rows, float *logits);

/* ---- batches: many sessions advanced in one pass ------------------------------------

   A batch advances several sessions of one model together: one pass reads each weight row
   once for all of them (decoding is memory-bound, so a step of 8 sequences costs far less
   than 8 steps of one). Each session's logits are bit-identical to those of
   lrt_session_eval(session, tokens, n, 0) on that session alone: they do not depend on the
   batch's size, its order, the other sessions' tokens or positions, nor on the thread
   count (every output is the same dot product in the same order; attention reads only the
   session's own cache). Sessions keep their own sampler settings: after lrt_batch_eval,
   call lrt_session_sample (and lrt_session_logits) on each as after lrt_session_eval.

   A batch owns scratch buffers and `threads` worker threads (0: the physical cores); the
   sessions' own threads are not used by it. A batch and the sessions queued in it must not
   be used by another thread during lrt_batch_eval. Sessions of the batch's model only. */
typedef struct lrt_batch lrt_batch;
LRT_API int32_t lrt_batch_new(lrt_model *model, int32_t threads, lrt_batch **out);
/* NULL is allowed. Free batches before their model. */
LRT_API void lrt_batch_free(lrt_batch *batch);
/* Queue tokens[0..n) (n >= 1; copied) to be appended to `session` by the next
 * lrt_batch_eval. A session may be queued once per eval (give all its tokens at once: a
 * prompt chunk, or one sampled token). LRT_ERR_INVALID_ARGUMENT for a session already
 * queued or of another model. */
LRT_API int32_t lrt_batch_add(lrt_batch *batch, lrt_session *session, const int32_t *tokens,
                              int64_t n);
/* Number of sessions queued (-1 for NULL). */
LRT_API int64_t lrt_batch_count(const lrt_batch *batch);
/* Drop the queued entries. */
LRT_API int32_t lrt_batch_clear(lrt_batch *batch);
/* Run the queued entries and empty the queue (also on failure). Every session appends its
 * tokens and keeps the logits of its last one (1 x vocab, lrt_session_logits). Token ids
 * and room in each context are checked first: on failure (LRT_ERR_INVALID_ARGUMENT,
 * LRT_ERR_CONTEXT_FULL naming the entry, LRT_ERR_OUT_OF_MEMORY) no session changes. */
LRT_API int32_t lrt_batch_eval(lrt_batch *batch);

/* ---- exact speculative decoding --------------------------------------------------------

   Speculation proposes k tokens cheaply, evaluates them on the target session in one chunk
   and keeps the longest prefix whose tokens equal what the target's own sampler picks at
   each position; the KV cache is rolled back past the first rejection. Because the logits
   of a position do not depend on how a sequence is chunked, and the sampler's random number
   depends only on (seed, position), the tokens and the logits row behind each token are
   bit-identical to plain decoding (lrt_session_sample, then lrt_session_eval of the token)
   for every draft, k and sampler setting: speculation changes the speed, never the output
   (docs/speculative.md). Receipts made with it verify without it.

   Proposers, tried in this order each round:
     - prompt lookup (LRT_SPEC_LOOKUP > 0): the tokens that followed the most recent earlier
       occurrence of the sequence's last n tokens (n from LRT_SPEC_LOOKUP down to
       LRT_SPEC_LOOKUP_MIN), searched in the prompt and the text so far; no second model;
     - a draft session (lrt_spec_new's draft, may be NULL) on a model with the target's
       vocabulary: a smaller model, or the same weights opened with
       LRT_OPEN_INT8_ACTIVATIONS. It samples with the target's sampler settings and seed,
       so for sampled decoding it proposes what the target would pick whenever the two
       distributions agree closely. The draft session is used by the speculation only.
   The number of proposed tokens adapts to the acceptance (LRT_SPEC_ADAPTIVE), within
   [1, LRT_SPEC_K]: the draft's k grows by 2 after a round that accepted everything and
   shrinks by 1 after one that did not, and the draft stops where its own top probability is
   below 0.5; prompt lookup proposes its i-th token while the acceptance counts it keeps (by
   n-gram length and index) estimate at least a 0.2 chance that tokens 1..i are all accepted.
   These choices change the speed only.

   Use: evaluate the prompt on the target (lrt_session_eval, or lrt_session_prompt*), set the
   target's sampler, then lrt_spec_start and lrt_spec_next once per token. The caller
   decides where the generation ends (end-of-sequence token, length); the target session's
   position may then be ahead of the tokens taken (accepted tokens not taken yet). */

typedef struct lrt_spec lrt_spec;
/* A speculation over target (required) with an optional draft session (NULL: prompt
 * lookup only). The draft must be another session, of a model with the same vocabulary
 * size and, when both have tokenizers, the same token bytes for every id
 * (LRT_ERR_INVALID_ARGUMENT otherwise). Free the speculation before either session. */
LRT_API int32_t lrt_spec_new(lrt_session *target, lrt_session *draft, lrt_spec **out);
LRT_API void lrt_spec_free(lrt_spec *spec);

typedef enum lrt_spec_key {
  LRT_SPEC_K = 0,          /* most tokens proposed per round, 1..64 (default 8)          */
  LRT_SPEC_ADAPTIVE = 1,   /* 1: the round's k adapts within [1, K] (default); 0: always K */
  LRT_SPEC_LOOKUP = 2,     /* prompt lookup: longest n-gram matched, 0 = off (default 0) */
  LRT_SPEC_LOOKUP_MIN = 3, /* shortest n-gram matched, >= 1 (default 1)                  */
  LRT_SPEC_MAX_TOKENS = 4, /* tokens the caller will take after lrt_spec_start, -1 = no
                              limit (default -1): no work is spent past them             */
  /* read-only, counted since lrt_spec_start */
  LRT_SPEC_ROUNDS = 5,     /* target evaluations (chunks) after the prompt               */
  LRT_SPEC_PROPOSED = 6,   /* tokens proposed                                            */
  LRT_SPEC_ACCEPTED = 7,   /* proposed tokens accepted                                   */
  LRT_SPEC_DRAFT_EVALS = 8 /* draft session evaluations                                  */
} lrt_spec_key;
LRT_API int32_t lrt_spec_set_int(lrt_spec *spec, int32_t key, int64_t value);
LRT_API int32_t lrt_spec_get_int(const lrt_spec *spec, int32_t key, int64_t *out);

/* Begin at the target's current state: its last eval's last logits row gives the first
 * token. Copies the target's sampler settings (and seed) to the draft session and clears
 * the counters. LRT_ERR_STATE when the target has no logits. */
LRT_API int32_t lrt_spec_start(lrt_spec *spec);
/* The next token, as plain decoding would give it, and (logits may be NULL) the logits row
 * it was sampled from (vocab floats, valid until the next call on the speculation). Runs a
 * round when no verified token is waiting. LRT_ERR_CONTEXT_FULL when the target's context
 * has no room for the previous token; LRT_ERR_STATE before lrt_spec_start or when the target
 * session was changed by another call since (start again). */
LRT_API int32_t lrt_spec_next(lrt_spec *spec, int32_t *token, const float **logits);

/* ---- log-probabilities ------------------------------------------------------------------ */

/* out (vocab floats) = the log softmax of the last row of the last eval's logits: the
 * model's own distribution, before the sampler's penalty, temperature and filters. One
 * fixed order with loomrt's own exp and log (docs/numerics.md, "Log-probabilities"), so
 * the bits are the same on every platform and, like the logits, whatever else shared a
 * batch. LRT_ERR_STATE before the first eval. */
LRT_API int32_t lrt_session_log_softmax(const lrt_session *session, float *out);

/* ---- KV cache memory ------------------------------------------------------------------ */

/* The KV cache of layer `layer` of a session: *allocated positions of keys and values held
 * now (it grows on demand) and *limit, the most it will ever hold: the session's context
 * for a full-attention layer, min(LRT_INFO_KV_WINDOW_ROWS, context) for a sliding-window
 * layer (a ring buffer). Each position costs 2 x kv_heads x head_dim x 4 bytes. layer -1:
 * the sums over all layers. Either output may be NULL. */
LRT_API int32_t lrt_session_kv_rows(const lrt_session *session, int64_t layer, int64_t *allocated,
                                    int64_t *limit);

/* ---- training across processes (data parallelism; docs/scale-out.md) ---------------------

   The gradient accumulators of a trainer as flat buffers, so that processes can compute the
   gradients of parts of a global batch and one of them add the parts in the global batch's
   order with the bits of one process accumulating the whole batch (csrc/train/train.h):
     - every weight, bias and norm gradient is a per-sequence sum (its tokens in order) added
       to the accumulator sequence after sequence: a sequence's sums, accumulated alone on a
       cleared trainer (lrt_trainer_grad_read), added with lrt_trainer_grad_add in sequence
       order give the same bits;
     - the embedding lookup's gradient is added token after token: it travels as per-token
       rows (lrt_trainer_accumulate_rows) that lrt_trainer_lookup_add adds in token order.
   The gradient buffer is lrt_trainer_grad_size floats (the parameters in tensor order)
   without the lookup's part: an untied tok_embd reads as zeros and is skipped by grad_add;
   a tied head's tok_embd holds the head's part. */
LRT_API int32_t lrt_trainer_grad_size(const lrt_trainer *trainer, int64_t *n);
/* Copy the raw sums (not divided by the count) into out[0..n) (n = grad_size); *loss_sum
 * (may be NULL) gets the pending loss sum, *count (may be NULL) the pending target count. */
LRT_API int32_t lrt_trainer_grad_read(const lrt_trainer *trainer, float *out, int64_t n, double *loss_sum,
                                      int64_t *count);
/* Add a buffer read from a trainer of the same config: acc[i] = acc[i] + in[i] (one float
 * addition per element), loss = loss + loss_sum (double), targets += count (> 0). */
LRT_API int32_t lrt_trainer_grad_add(lrt_trainer *trainer, const float *in, int64_t n, double loss_sum,
                                     int64_t count);
/* Clear the accumulators (gradients, loss, count): a step that is not applied. */
LRT_API int32_t lrt_trainer_grad_clear(lrt_trainer *trainer);
/* All weights as one flat buffer of n = LRT_TRAIN_PARAMETERS floats in tensor order. */
LRT_API int32_t lrt_trainer_weights_read(const lrt_trainer *trainer, float *out, int64_t n);
LRT_API int32_t lrt_trainer_weights_write(lrt_trainer *trainer, const float *in, int64_t n);
/* lrt_trainer_accumulate, and the gradient of the loss sum at each input position's
   embedding row into rows[0..capacity) (batch * seq_len * dim floats, position order): the
   rows the lookup adds to tok_embd row tokens[b][i] (GPT-2: also to pos_embd row i). */
LRT_API int32_t lrt_trainer_accumulate_rows(lrt_trainer *trainer, const int32_t *tokens, int64_t batch,
                                            int64_t seq_len, float *rows, int64_t capacity, double *loss);
/* Add rows from lrt_trainer_accumulate_rows of the same tokens (same layout) to the lookup's
   accumulator, token after token: what accumulating those tokens here adds to it. */
LRT_API int32_t lrt_trainer_lookup_add(lrt_trainer *trainer, const int32_t *tokens, int64_t batch, int64_t seq_len,
                                       const float *rows, int64_t n);

/* ---- thread-pool counters (diagnostics; docs/performance.md) ------------------------------

   A session's thread pool can count what its threads do: off until
   lrt_session_pool_stats_reset(session, 1), which zeroes the counters and turns counting on
   (0 zeroes them and turns it off). Counting changes no value, only adds a clock read or two
   per job. Thread 0 is the calling thread, 1..threads-1 the pool's workers. */
typedef enum lrt_pool_stat_key {
  LRT_POOL_STAT_THREADS = 0, /* the pool's thread count (any thread index)                     */
  LRT_POOL_STAT_ON = 1,      /* 1 while counting, else 0                                        */
  LRT_POOL_STAT_JOBS = 2,    /* thread 0: jobs run (parallel dispatches); worker: jobs it joined */
  LRT_POOL_STAT_TASKS = 3,   /* tasks (row blocks, heads, ...) this thread ran                  */
  LRT_POOL_STAT_SLEEPS = 4,  /* thread 0: waits for other threads' tasks that went to sleep;
                                worker: times it slept (after spinning) before joining a job     */
  LRT_POOL_STAT_RUN_NS = 5,  /* thread 0: nanoseconds inside jobs; workers: 0                   */
  LRT_POOL_STAT_WAIT_NS = 6, /* thread 0: nanoseconds waiting for others' tasks after its share  */
  LRT_POOL_STAT_JOIN_NS = 7  /* worker: nanoseconds from jobs being posted to it joining them,
                                summed over the jobs it joined; thread 0: 0                      */
} lrt_pool_stat_key;
/* *out = counter `key` of thread `thread`. LRT_ERR_INVALID_ARGUMENT for an unknown key or a
 * thread outside [0, threads); LRT_ERR_BUSY while another thread is inside the session. */
LRT_API int32_t lrt_session_pool_stat(const lrt_session *session, int32_t thread, int32_t key, int64_t *out);
/* Zero the counters of the session's pool and turn counting on (on != 0) or off. */
LRT_API int32_t lrt_session_pool_stats_reset(lrt_session *session, int32_t on);

#ifdef __cplusplus
}
#endif
#endif /* LOOMRT_H */
