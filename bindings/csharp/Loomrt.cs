// Loomrt.cs -- C# binding of libloomrt (P/Invoke). One file, no dependencies; works on .NET
// (Core / 5+), Mono and Unity (Mono and IL2CPP backends) and Godot 4 C#.
//
// UTF-8 is marshalled by hand with byte arrays (Encoding.UTF8 + explicit lengths), never with
// the runtime's string marshalling, so every runtime sends and receives the same bytes.
// Handles are SafeHandle subclasses: a model or session is freed exactly once, even when
// the program forgets to Dispose it.
//
//   using (var model = new Loomrt.Model("model.gguf"))
//   using (var session = new Loomrt.Session(model, 0, 2)) {
//       session.Prompt("Once upon a time");
//       while (session.Step(out int token, out string text)) Console.Write(text);
//   }
//
// `Native` declares every function of loomrt.h (the test suite checks it against the header).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace Loomrt
{
    /// <summary>Status codes (loomrt.h LRT_OK / LRT_ERR_*).</summary>
    public enum Status
    {
        Ok = 0, InvalidArgument = -1, NotFound = -2, IO = -3, Format = -4, Unsupported = -5,
        OutOfMemory = -6, ContextFull = -7, State = -8, Internal = -9, BufferTooSmall = -10,
        Busy = -11, Numeric = -12,
    }

    public enum ChatFormat { Model = 0, ChatML = 1, Llama3 = 2, Llama2 = 3, Zephyr = 4 }

    public enum FinishReason { None = 0, Eos = 1, Length = 2, Context = 3, Callback = 4 }

    public enum Param
    {
        Temperature = 0, TopK = 1, TopP = 2, MinP = 3, RepeatPenalty = 4, Seed = 5, RepeatLastN = 6,
        MaxTokens = 7,
    }

    public enum ModelInfo
    {
        VocabSize = 0, ContextLength = 1, HiddenSize = 2, Layers = 3, Heads = 4, KvHeads = 5, HeadDim = 6,
        FfnSize = 7, Parameters = 8, WeightBytes = 9, ResidentBytes = 10, BosId = 11, EosCount = 12,
        TiedEmbeddings = 13, IsGguf = 14, TokenizerSize = 15, TokenizerBosId = 16, TokenizerEosId = 17,
        EogCount = 18, SlidingWindow = 19, SlidingLayers = 20, KvWindowRows = 21,
    }

    public enum ModelString { Architecture = 0, Dtype = 1, Source = 2, Name = 3, ChatTemplate = 4 }

    public enum SessionInfo { FinishReason = 0, PromptTokens = 1, GeneratedTokens = 2 }

    /// <summary>lrt_session_pool_stat keys (LRT_POOL_STAT_*; diagnostics).</summary>
    public enum PoolStat { Threads = 0, On = 1, Jobs = 2, Tasks = 3, Sleeps = 4, RunNs = 5, WaitNs = 6, JoinNs = 7 }

    [Flags]
    public enum PromptFlags { None = 0, AddSpecial = 1, ParseSpecial = 2, Keep = 4, Default = 3 }
    /// <summary>lrt_model_open flags (LRT_OPEN_*; combine with |, pass as int).</summary>
    public static class OpenFlags
    {
        public const int AllowUnknownConfigKeys = 1;
        public const int CopyBuffers = 2;
        /// <summary>F32/F16/BF16 weight matrices to Q8_0 at open (docs/numerics.md).</summary>
        public const int QuantizeQ8_0 = 4;
        /// <summary>Opt-in int8-activation mode for Q8_0/Q4_0/Q4_1 weights (docs/numerics.md).</summary>
        public const int Int8Activations = 8;
        /// <summary>Only the tokenizer (tokenizer.json / GGUF metadata): no weights, no sessions.</summary>
        public const int TokenizerOnly = 64;
    }

    /// <summary>A failed loomrt call: the status and the library's message.</summary>
    public class LoomrtException : Exception
    {
        public readonly Status Status;
        public LoomrtException(Status status, string message) : base(status + ": " + message) { Status = status; }
    }

    /// <summary>int32_t (*)(void *user_data, int32_t token, const char *text, size_t text_len)</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate int TokenCallback(IntPtr userData, int token, IntPtr text, UIntPtr textLen);

    /// <summary>The C functions, one to one (see csrc/include/loomrt.h for their contracts).</summary>
    public static class Native
    {
        // "loomrt" resolves to libloomrt.so / libloomrt.dylib / loomrt.dll next to the program, in
        // Unity's Plugins folder, or on the library path (LD_LIBRARY_PATH, DYLD_LIBRARY_PATH, PATH).
        public const string Lib = "loomrt";
        const CallingConvention CC = CallingConvention.Cdecl;

        // versions and errors
        [DllImport(Lib, CallingConvention = CC)] public static extern IntPtr lrt_version_string();
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_version_number();
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_abi_version();
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_numerics_version();
        [DllImport(Lib, CallingConvention = CC)] public static extern IntPtr lrt_last_error();
        [DllImport(Lib, CallingConvention = CC)] public static extern IntPtr lrt_status_name(int status);

        // models
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_open(byte[] path, UIntPtr pathLen, int flags, out ModelHandle model);
        [DllImport(Lib, CallingConvention = CC)] public static extern void lrt_model_close(IntPtr model);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_get_int(ModelHandle model, int key, out long value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_eos_id(ModelHandle model, long index, out int id);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_eog_id(ModelHandle model, long index, out int id);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_get_str(ModelHandle model, int key, out IntPtr str, out UIntPtr len);
        [DllImport(Lib, CallingConvention = CC)] public static extern long lrt_model_meta_count(ModelHandle model);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_meta_key(ModelHandle model, long i, out IntPtr key, out UIntPtr keyLen);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_meta_type(ModelHandle model, byte[] key, UIntPtr keyLen, out int type, out int elemType, out long count);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_meta_str(ModelHandle model, byte[] key, UIntPtr keyLen, long index, out IntPtr str, out UIntPtr len);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_meta_int(ModelHandle model, byte[] key, UIntPtr keyLen, long index, out long value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_meta_uint(ModelHandle model, byte[] key, UIntPtr keyLen, long index, out ulong value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_meta_float(ModelHandle model, byte[] key, UIntPtr keyLen, long index, out double value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_open_memory(long nFiles, IntPtr[] names, UIntPtr[] namesLens, IntPtr[] data, UIntPtr[] sizes, int flags, out ModelHandle model);

        // sessions
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_new(ModelHandle model, long context, int threads, out SessionHandle session);
        [DllImport(Lib, CallingConvention = CC)] public static extern void lrt_session_free(IntPtr session);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_reset(SessionHandle session);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_truncate(SessionHandle session, long pos);
        [DllImport(Lib, CallingConvention = CC)] public static extern long lrt_session_position(SessionHandle session);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_kv_rows(SessionHandle session, long layer, out long allocated, out long limit);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_pool_stat(SessionHandle session, int thread, int key, out long value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_pool_stats_reset(SessionHandle session, int on);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_eval(SessionHandle session, int[] tokens, long n, int allLogits);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_logits(SessionHandle session, out IntPtr logits, out long rows, out long vocab);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_set_float(SessionHandle session, int param, double value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_set_int(SessionHandle session, int param, long value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_sample(SessionHandle session, out int token);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_candidates(SessionHandle session, out IntPtr ids, out IntPtr probs, out long count);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_state_size(SessionHandle session, out UIntPtr size);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_state_save(SessionHandle session, byte[] buf, UIntPtr cap, out UIntPtr written);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_state_load(SessionHandle session, byte[] buf, UIntPtr len);

        // tokenizer
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_tokenize(ModelHandle model, byte[] text, UIntPtr textLen, int flags, int[] ids, long capacity, out long nIds);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_token_bytes(ModelHandle model, int id, out IntPtr bytes, out UIntPtr len);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_detokenize(ModelHandle model, int[] ids, long n, int flags, byte[] text, UIntPtr capacity, out UIntPtr textLen);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_model_has_tokenizer(ModelHandle model, out int has);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_token_text(ModelHandle model, int id, out IntPtr text, out UIntPtr len);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_token_id(ModelHandle model, byte[] text, UIntPtr len, out int id);

        // chat and generation
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_chat_detect(ModelHandle model, out int format);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_chat_apply(ModelHandle model, int format, long nMessages, IntPtr[] roles, UIntPtr[] rolesLens, IntPtr[] contents, UIntPtr[] contentsLens, int addGenerationPrompt, byte[] output, UIntPtr capacity, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_prompt(SessionHandle session, byte[] text, UIntPtr len, int flags);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_prompt_tokens(SessionHandle session, int[] ids, long n, int flags);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_step(SessionHandle session, out int token, out IntPtr text, out UIntPtr textLen);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_get_int(SessionHandle session, int key, out long value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_generate(SessionHandle session, byte[] text, UIntPtr len, int flags, long maxTokens, TokenCallback callback, IntPtr userData);

        // kernels
        [DllImport(Lib, CallingConvention = CC)] public static extern IntPtr lrt_kernel_path();
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_kernels_available(int index, out IntPtr name, out UIntPtr nameLen);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_kernels_select(byte[] name, UIntPtr len);

        // training (docs/training.md); the trainer handle is a plain pointer: free it with lrt_trainer_free
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_new(byte[] configJson, UIntPtr jsonLen, ulong seed, int threads, out IntPtr trainer);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_open(byte[] path, UIntPtr pathLen, int threads, out IntPtr trainer);
        [DllImport(Lib, CallingConvention = CC)] public static extern void lrt_trainer_free(IntPtr trainer);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_set(IntPtr trainer, int key, double value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_get(IntPtr trainer, int key, out double value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_accumulate(IntPtr trainer, int[] tokens, long batch, long seqLen, out double loss);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_apply(IntPtr trainer);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_eval(IntPtr trainer, int[] tokens, long batch, long seqLen, out double loss);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_logits(IntPtr trainer, int[] tokens, long n, float[] output, long capacity);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_tensor_count(IntPtr trainer, out long count);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_tensor_info(IntPtr trainer, long index, out IntPtr name, out UIntPtr nameLen, out long rows, out long cols);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_tensor_read(IntPtr trainer, long index, int what, float[] output, long n);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_tensor_write(IntPtr trainer, long index, float[] data, long n);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_state_size(IntPtr trainer, out UIntPtr size);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_state_save(IntPtr trainer, byte[] buf, UIntPtr cap, out UIntPtr written);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_state_load(IntPtr trainer, byte[] buf, UIntPtr len);

        // weaving (docs/weaving.md): several sessions, one token stream; free with lrt_weave_free before the sessions
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_new(IntPtr[] sessions, long n, out IntPtr weave);
        [DllImport(Lib, CallingConvention = CC)] public static extern void lrt_weave_free(IntPtr weave);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_set_mode(IntPtr weave, int mode);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_set_weights(IntPtr weave, double[] weights, long n);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_set_schedule(IntPtr weave, int kind, double[] values, long nValues);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_set_rule(IntPtr weave, byte[] name, UIntPtr nameLen, double[] prms, long nParams);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_set_float(IntPtr weave, int key, double value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_set_int(IntPtr weave, int key, long value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_get_int(IntPtr weave, int key, out long value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_prompt(IntPtr weave, byte[] text, UIntPtr len, int flags);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_prompt_tokens(IntPtr weave, int[] ids, long n, int flags);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_step(IntPtr weave, out int token, out IntPtr text, out UIntPtr textLen);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_logits(IntPtr weave, out IntPtr logits, out long vocab);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_trace_row(IntPtr weave, long row, out int token, out int dominant, out double combined, out double sampled, double[] weights, double[] probs, long[] ranks, double[] shares, long nModels);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_weave_trace_top(IntPtr weave, long row, long model, int[] ids, double[] probs, long capacity, out long count);
        // inspection (docs/inspect.md): hidden states, attention, logit lens
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_inspect(IntPtr session, IntPtr hidden, IntPtr attn, long posLo, long nPos, long nKey);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_lens(IntPtr session, float[] hidden, long rows, float[] logits);
        // batches: many sessions of one model advanced in one pass (each session's logits as if alone)
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_batch_new(ModelHandle model, int threads, out BatchHandle batch);
        [DllImport(Lib, CallingConvention = CC)] public static extern void lrt_batch_free(IntPtr batch);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_batch_add(BatchHandle batch, SessionHandle session, int[] tokens, long n);
        [DllImport(Lib, CallingConvention = CC)] public static extern long lrt_batch_count(BatchHandle batch);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_batch_clear(BatchHandle batch);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_batch_eval(BatchHandle batch);
        // exact speculative decoding
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_spec_new(SessionHandle target, IntPtr draft, out IntPtr spec);
        [DllImport(Lib, CallingConvention = CC)] public static extern void lrt_spec_free(IntPtr spec);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_spec_set_int(IntPtr spec, int key, long value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_spec_get_int(IntPtr spec, int key, out long value);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_spec_start(IntPtr spec);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_spec_next(IntPtr spec, out int token, out IntPtr logits);
        // log-probabilities: log softmax of the last logits row (vocab floats), fixed order
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_session_log_softmax(SessionHandle session, float[] output);
        // training across processes: flat gradient sums and weights (docs/scale-out.md)
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_grad_size(IntPtr trainer, out long n);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_grad_read(IntPtr trainer, float[] output, long n, out double lossSum, out long count);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_grad_add(IntPtr trainer, float[] input, long n, double lossSum, long count);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_grad_clear(IntPtr trainer);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_weights_read(IntPtr trainer, float[] output, long n);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_weights_write(IntPtr trainer, float[] input, long n);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_accumulate_rows(IntPtr trainer, int[] tokens, long batch, long seqLen, float[] rows, long capacity, out double loss);
        [DllImport(Lib, CallingConvention = CC)] public static extern int lrt_trainer_lookup_add(IntPtr trainer, int[] tokens, long batch, long seqLen, float[] rows, long n);

        /// <summary>Throw LoomrtException for a negative status.</summary>
        public static void Check(int status)
        {
            if (status >= 0) return;
            throw new LoomrtException((Status)status, Utf8.FromCString(lrt_last_error()));
        }
    }

    /// <summary>UTF-8 by hand: byte arrays with explicit lengths both ways.</summary>
    public static class Utf8
    {
        // no BOM; invalid bytes (never produced by lrt_session_step) would decode as U+FFFD
        static readonly UTF8Encoding Enc = new UTF8Encoding(false, false);

        public static byte[] Bytes(string s) { return Enc.GetBytes(s ?? ""); }

        public static byte[] Copy(IntPtr p, UIntPtr len)
        {
            var b = new byte[(int)len.ToUInt64()];
            if (b.Length > 0) Marshal.Copy(p, b, 0, b.Length);
            return b;
        }

        public static string FromBytes(byte[] b) { return Enc.GetString(b); }

        public static string FromPtr(IntPtr p, UIntPtr len) { return FromBytes(Copy(p, len)); }

        public static string FromCString(IntPtr p)
        {
            if (p == IntPtr.Zero) return "";
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            return FromPtr(p, (UIntPtr)n);
        }
    }

    public sealed class ModelHandle : SafeHandle
    {
        public ModelHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { Native.lrt_model_close(handle); return true; }
    }

    public sealed class SessionHandle : SafeHandle
    {
        public SessionHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { Native.lrt_session_free(handle); return true; }
    }

    public sealed class BatchHandle : SafeHandle
    {
        public BatchHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { Native.lrt_batch_free(handle); return true; }
    }

    /// <summary>Library facts.</summary>
    public static class Library
    {
        public static string Version { get { return Utf8.FromCString(Native.lrt_version_string()); } }
        public static int AbiVersion { get { return Native.lrt_abi_version(); } }
        public static string KernelPath { get { return Utf8.FromCString(Native.lrt_kernel_path()); } }
    }

    /// <summary>An opened model: read-only, share it between threads (one Session per thread).</summary>
    public sealed class Model : IDisposable
    {
        public readonly ModelHandle Handle;

        /// <summary>Open a HuggingFace folder or a .gguf file.</summary>
        public Model(string path, int flags = 0)
        {
            var p = Utf8.Bytes(path);
            ModelHandle h;
            int st = Native.lrt_model_open(p, (UIntPtr)p.Length, flags, out h);
            Handle = h;
            Native.Check(st);
        }

        /// <summary>Open files held in memory (e.g. {"model.gguf": bytes} from a packed asset).
        /// loomrt copies them (LRT_OPEN_COPY_BUFFERS), so the arrays may be dropped afterwards.</summary>
        public Model(IDictionary<string, byte[]> files, int flags = 0)
        {
            int n = files.Count, i = 0;
            var pins = new List<GCHandle>();
            var names = new IntPtr[n];
            var nameLens = new UIntPtr[n];
            var data = new IntPtr[n];
            var sizes = new UIntPtr[n];
            try
            {
                foreach (var kv in files)
                {
                    var nb = Utf8.Bytes(kv.Key);
                    var gn = GCHandle.Alloc(nb, GCHandleType.Pinned);
                    var gd = GCHandle.Alloc(kv.Value, GCHandleType.Pinned);
                    pins.Add(gn);
                    pins.Add(gd);
                    names[i] = gn.AddrOfPinnedObject();
                    nameLens[i] = (UIntPtr)nb.Length;
                    data[i] = gd.AddrOfPinnedObject();
                    sizes[i] = (UIntPtr)kv.Value.Length;
                    i++;
                }
                ModelHandle h;
                int st = Native.lrt_model_open_memory(n, names, nameLens, data, sizes, flags | OpenFlags.CopyBuffers, out h);
                Handle = h;
                Native.Check(st);
            }
            finally
            {
                foreach (var g in pins) g.Free();
            }
        }

        public long Info(ModelInfo key)
        {
            long v;
            Native.Check(Native.lrt_model_get_int(Handle, (int)key, out v));
            return v;
        }

        public string String(ModelString key)
        {
            IntPtr p;
            UIntPtr n;
            Native.Check(Native.lrt_model_get_str(Handle, (int)key, out p, out n));
            return Utf8.FromPtr(p, n);
        }

        public bool HasTokenizer
        {
            get { int h; Native.Check(Native.lrt_model_has_tokenizer(Handle, out h)); return h != 0; }
        }

        public int[] Tokenize(string text, PromptFlags flags = PromptFlags.Default)
        {
            var b = Utf8.Bytes(text);
            var ids = new int[b.Length + 8];
            long n;
            int st = Native.lrt_tokenize(Handle, b, (UIntPtr)b.Length, (int)flags & 3, ids, ids.Length, out n);
            if (st == (int)Status.BufferTooSmall)
            {
                ids = new int[n];
                st = Native.lrt_tokenize(Handle, b, (UIntPtr)b.Length, (int)flags & 3, ids, ids.Length, out n);
            }
            Native.Check(st);
            Array.Resize(ref ids, (int)n);
            return ids;
        }

        public byte[] DetokenizeBytes(int[] ids, bool skipSpecial = false)
        {
            var buf = new byte[16 * ids.Length + 16];
            UIntPtr n;
            int st = Native.lrt_detokenize(Handle, ids, ids.Length, skipSpecial ? 1 : 0, buf, (UIntPtr)buf.Length, out n);
            if (st == (int)Status.BufferTooSmall)
            {
                buf = new byte[(int)n.ToUInt64()];
                st = Native.lrt_detokenize(Handle, ids, ids.Length, skipSpecial ? 1 : 0, buf, (UIntPtr)buf.Length, out n);
            }
            Native.Check(st);
            Array.Resize(ref buf, (int)n.ToUInt64());
            return buf;
        }

        public string Detokenize(int[] ids, bool skipSpecial = false) { return Utf8.FromBytes(DetokenizeBytes(ids, skipSpecial)); }

        public ChatFormat DetectChatFormat()
        {
            int f;
            Native.Check(Native.lrt_chat_detect(Handle, out f));
            return (ChatFormat)f;
        }

        /// <summary>Render (role, content) messages with a chat format (default: the model's own).</summary>
        public string ApplyChat(IList<KeyValuePair<string, string>> messages, ChatFormat format = ChatFormat.Model,
                                bool addGenerationPrompt = true)
        {
            int n = messages.Count;
            var pins = new List<GCHandle>();
            var roles = new IntPtr[n];
            var roleLens = new UIntPtr[n];
            var contents = new IntPtr[n];
            var contentLens = new UIntPtr[n];
            try
            {
                for (int i = 0; i < n; i++)
                {
                    var r = Utf8.Bytes(messages[i].Key);
                    var c = Utf8.Bytes(messages[i].Value);
                    var gr = GCHandle.Alloc(r, GCHandleType.Pinned);
                    var gc = GCHandle.Alloc(c, GCHandleType.Pinned);
                    pins.Add(gr);
                    pins.Add(gc);
                    roles[i] = gr.AddrOfPinnedObject();
                    roleLens[i] = (UIntPtr)r.Length;
                    contents[i] = gc.AddrOfPinnedObject();
                    contentLens[i] = (UIntPtr)c.Length;
                }
                UIntPtr need;
                int st = Native.lrt_chat_apply(Handle, (int)format, n, roles, roleLens, contents, contentLens,
                                               addGenerationPrompt ? 1 : 0, null, UIntPtr.Zero, out need);
                if (st != (int)Status.BufferTooSmall) Native.Check(st);
                var buf = new byte[(int)need.ToUInt64()];
                Native.Check(Native.lrt_chat_apply(Handle, (int)format, n, roles, roleLens, contents, contentLens,
                                                   addGenerationPrompt ? 1 : 0, buf, (UIntPtr)buf.Length, out need));
                return Utf8.FromBytes(buf);
            }
            finally
            {
                foreach (var g in pins) g.Free();
            }
        }

        public void Dispose() { Handle.Dispose(); }
    }

    /// <summary>KV cache, sampler and generation state over a model. Use one per thread.</summary>
    public sealed class Session : IDisposable
    {
        public readonly SessionHandle Handle;
        public readonly Model Model; // keeps the model alive while the session exists

        public Session(Model model, long context = 0, int threads = 1)
        {
            Model = model;
            SessionHandle h;
            int st = Native.lrt_session_new(model.Handle, context, threads, out h);
            Handle = h;
            Native.Check(st);
        }

        public void Set(Param p, double value) { Native.Check(Native.lrt_session_set_float(Handle, (int)p, value)); }
        public void Set(Param p, long value) { Native.Check(Native.lrt_session_set_int(Handle, (int)p, value)); }

        public long Info(SessionInfo key)
        {
            long v;
            Native.Check(Native.lrt_session_get_int(Handle, (int)key, out v));
            return v;
        }

        public FinishReason FinishReason { get { return (FinishReason)Info(SessionInfo.FinishReason); } }

        /// <summary>Start a generation (pull API): tokenize and evaluate the prompt.</summary>
        public void Prompt(string text, PromptFlags flags = PromptFlags.Default)
        {
            var b = Utf8.Bytes(text);
            Native.Check(Native.lrt_session_prompt(Handle, b, (UIntPtr)b.Length, (int)flags));
        }

        public void PromptTokens(int[] ids, PromptFlags flags = PromptFlags.None)
        {
            Native.Check(Native.lrt_session_prompt_tokens(Handle, ids, ids.Length, (int)flags));
        }

        /// <summary>Next token and its complete UTF-8 bytes. Returns false when the generation is
        /// over (token = -1; bytes then hold any held-back text, usually empty).</summary>
        public bool StepBytes(out int token, out byte[] bytes)
        {
            IntPtr p;
            UIntPtr n;
            Native.Check(Native.lrt_session_step(Handle, out token, out p, out n));
            bytes = Utf8.Copy(p, n);
            return token >= 0;
        }

        /// <summary>Next token and its text (complete characters only; may be ""). Returns false
        /// when the generation is over (then text holds any held-back text).</summary>
        public bool Step(out int token, out string text)
        {
            byte[] b;
            bool more = StepBytes(out token, out b);
            text = Utf8.FromBytes(b);
            return more;
        }

        /// <summary>Push API: lrt_generate with a callback (token, bytes) that returns true to stop.
        /// The delegate is kept alive for the call. Under IL2CPP pass only static callbacks marked
        /// [AOT.MonoPInvokeCallback] to Native.lrt_generate; this wrapper works on Mono and .NET.</summary>
        public void Generate(string text, long maxTokens, Func<int, byte[], bool> onToken,
                             PromptFlags flags = PromptFlags.Default)
        {
            var b = Utf8.Bytes(text);
            TokenCallback cb = (ud, token, ptr, len) => onToken(token, Utf8.Copy(ptr, len)) ? 1 : 0;
            int st = Native.lrt_generate(Handle, b, (UIntPtr)b.Length, (int)flags, maxTokens, cb, IntPtr.Zero);
            GC.KeepAlive(cb);
            Native.Check(st);
        }

        public void Dispose() { Handle.Dispose(); }
    }
}
