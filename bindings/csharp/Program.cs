// Program.cs -- the C# twin of bindings/c/example.c: load a model, prompt it, stream tokens.
//
//   mcs -out:example.exe Loomrt.cs Program.cs          (Mono)   or add both to a .NET project
//   LD_LIBRARY_PATH=csrc/build mono example.exe model.gguf "Once upon a time" --max-tokens 32
//
// Text streams to stdout; the summary (ids, FNV-1a 64 hash of the text bytes, finish reason)
// goes to stderr, in the same format as the C example. Options as there: --max-tokens N,
// --seed N, --temperature T, --top-p P, --top-k K, --threads N, --chat, --memory, --callback.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

public static class Program
{
    static ulong hash = 0xcbf29ce484222325UL;
    static readonly List<int> ids = new List<int>();
    static Stream stdout;

    static void Emit(int token, byte[] bytes)
    {
        foreach (byte b in bytes) hash = (hash ^ b) * 0x100000001b3UL;
        if (token >= 0) ids.Add(token);
        stdout.Write(bytes, 0, bytes.Length);
        stdout.Flush();
    }

    public static int Main(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: example.exe MODEL PROMPT [--max-tokens N] [--seed N] [--temperature T] " +
                                    "[--top-p P] [--top-k K] [--threads N] [--chat] [--memory] [--callback]");
            return 2;
        }
        string path = args[0], prompt = args[1];
        long maxTokens = 32, seed = 0, topK = 0;
        int threads = 1;
        double temperature = 0, topP = 1;
        bool chat = false, memory = false, callback = false;
        var inv = CultureInfo.InvariantCulture;
        for (int i = 2; i < args.Length; i++)
        {
            string a = args[i], v = i + 1 < args.Length ? args[i + 1] : "0";
            switch (a)
            {
                case "--max-tokens": maxTokens = long.Parse(v, inv); i++; break;
                case "--seed": seed = long.Parse(v, inv); i++; break;
                case "--top-k": topK = long.Parse(v, inv); i++; break;
                case "--threads": threads = int.Parse(v, inv); i++; break;
                case "--temperature": temperature = double.Parse(v, inv); i++; break;
                case "--top-p": topP = double.Parse(v, inv); i++; break;
                case "--chat": chat = true; break;
                case "--memory": memory = true; break;
                case "--callback": callback = true; break;
                default: Console.Error.WriteLine("unknown option " + a); return 2;
            }
        }
        stdout = Console.OpenStandardOutput();
        try
        {
            using (var model = memory ? new Loomrt.Model(new Dictionary<string, byte[]> { { "model.gguf", File.ReadAllBytes(path) } })
                                      : new Loomrt.Model(path))
            using (var session = new Loomrt.Session(model, 0, threads))
            {
                session.Set(Loomrt.Param.Temperature, temperature);
                session.Set(Loomrt.Param.TopP, topP);
                session.Set(Loomrt.Param.TopK, topK);
                session.Set(Loomrt.Param.Seed, seed);
                string text = prompt;
                var flags = Loomrt.PromptFlags.Default;
                if (chat)
                {
                    text = model.ApplyChat(new List<KeyValuePair<string, string>> {
                        new KeyValuePair<string, string>("user", prompt) });
                    flags = Loomrt.PromptFlags.ParseSpecial; // the rendered text carries its own bos
                }
                if (callback)
                {
                    session.Generate(text, maxTokens, (token, bytes) => { Emit(token, bytes); return false; }, flags);
                }
                else
                {
                    session.Set(Loomrt.Param.MaxTokens, maxTokens);
                    session.Prompt(text, flags);
                    int token;
                    byte[] bytes;
                    bool more;
                    do
                    {   // a game would do one step per frame
                        more = session.StepBytes(out token, out bytes);
                        Emit(token, bytes);
                    } while (more);
                }
                var sb = new StringBuilder("\nids:");
                foreach (int id in ids) sb.Append(' ').Append(id.ToString(inv));
                Console.Error.WriteLine(sb.ToString());
                Console.Error.WriteLine("fnv1a64: " + hash.ToString("x16", inv));
                Console.Error.WriteLine("finish: " + ((int)session.FinishReason).ToString(inv));
            }
        }
        catch (Loomrt.LoomrtException e)
        {
            Console.Error.WriteLine("loomrt error: " + e.Message);
            return 1;
        }
        return 0;
    }
}
