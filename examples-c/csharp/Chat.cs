// Chat.cs: generate text with runllama from C# (include/RunLlama.cs), in the style of
// examples-c/run_model.c.
//
//   mono Chat.exe [-M weights] [-F tokenizer] [-C config] [-V 0|2|3] [-p prompt | -u user message
//                 [-S system message]] [-n positions] [-t temperature] [-s seed] [-k top_k]
//                 [-P top_p] [-r repeat_penalty] [-c n_ctx] [-T threads] [-K f16|f32|q8_0|q4_0|q8_0_q4_0]
//                 [--timeout-ms N]
//
// With no -M it runs the bundled stories260K model (tests/data/stories260K/stories260K.bin with
// tok512.bin, found through $RUNLLAMA_DATA_DIR, then relative to Chat.exe and to the current
// directory). Defaults: greedy, 200 positions (prompt included), so with no arguments stdout is
// exactly tests/data/stories260K/expected.txt followed by one newline, as run_model prints it.
//
// -p: the prompt (with BOS) is run in one batched step, echoed, and continued. -u: a chat prompt
// (the model's template through llama_chat_tokenize, optional -S system message); only the reply
// is printed. Text streams to stdout as UTF-8 while it is generated (StreamingDetokenizer: whole
// characters only); load time and tokens/s go to stderr.
//
// Ctrl-C (Console.CancelKeyPress: on .NET; on Mono only when the console is a terminal) or
// --timeout-ms cancels through one CancellationToken: during load (the progress
// callback) or generation (llama_session_abort stops the running step). Then the text so far
// and a newline are printed, "cancelled" goes to stderr, and the exit status is 130.
// Exit status: 0 ok, 1 an API call failed (status and message on stderr), 2 bad usage, 130 cancelled.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Text;
using System.Threading;
using RunLlama;

internal static class Chat
{
    private const string Prog = "chat";

    private sealed class UsageException : Exception
    {
        public UsageException(string message) : base(message) { }
    }

    private static void PrintUsage(TextWriter w)
    {
        w.Write(
            "usage: mono Chat.exe [options]\n" +
            "  -M <path>   weights: .gguf, .safetensors or a directory, llama2.c .bin\n" +
            "              (default: the bundled stories260K.bin, with -F tok512.bin)\n" +
            "  -F <path>   tokenizer file\n" +
            "  -C <path>   config file\n" +
            "  -V <0|2|3>  LLaMA version (0 = detect, default)\n" +
            "  -p <text>   prompt, echoed and continued (default: start from BOS)\n" +
            "  -u <text>   chat: a user message (the model's chat template); prints the reply\n" +
            "  -S <text>   chat: a system message (with -u)\n" +
            "  -n <int>    positions to run, prompt included (default 200; 0 = the context)\n" +
            "  -t <float>  temperature (default 0 = greedy)\n" +
            "  -s <int>    seed (default 0)\n" +
            "  -k <int>    top-k (default 0 = off)\n" +
            "  -P <float>  top-p (default 1.0 = off)\n" +
            "  -r <float>  repeat penalty (default 1.0 = off)\n" +
            "  -c <int>    context length (default 0 = the model's, at most 4096)\n" +
            "  -T <int>    threads (default 0 = one per core)\n" +
            "  -K <type>   KV cache: f16 (default), f32, q8_0, q4_0, q8_0_q4_0\n" +
            "  --timeout-ms <int>  cancel after this many milliseconds (as Ctrl-C does)\n");
    }

    private static int ParseInt(string opt, string v, int lo, int hi)
    {
        int r;
        if (!int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out r) || r < lo || r > hi)
            throw new UsageException(opt + " expects an integer in [" + lo + ", " + hi + "], got \"" + v + "\"");
        return r;
    }

    private static float ParseFloat(string opt, string v)
    {
        float r;
        if (!float.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out r) || float.IsNaN(r))
            throw new UsageException(opt + " expects a number, got \"" + v + "\"");
        return r;
    }

    /// <summary>The directory with the bundled stories260K.bin, or null.</summary>
    private static string BundledDataDir()
    {
        var candidates = new List<string>();
        string env = Environment.GetEnvironmentVariable("RUNLLAMA_DATA_DIR");
        if (!string.IsNullOrEmpty(env)) candidates.Add(env);
        string exeDir = AppDomain.CurrentDomain.BaseDirectory;
        foreach (string rel in new[] { "../../../tests/data/stories260K", "../../tests/data/stories260K", "stories260K" })
            candidates.Add(Path.GetFullPath(Path.Combine(exeDir, rel)));
        candidates.Add(Path.GetFullPath(Path.Combine("tests", "data", "stories260K")));
        foreach (string c in candidates)
            if (File.Exists(Path.Combine(c, "stories260K.bin"))) return c;
        return null;
    }

    private static int Main(string[] args)
    {
        try
        {
            return Run(args);
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine(Prog + ": " + e.Message);
            PrintUsage(Console.Error);
            return 2;
        }
    }

    private static int Run(string[] args)
    {
        string modelPath = null, tokenizerPath = null, configPath = null, prompt = null, user = null, system = null;
        int version = 0, steps = 200, topK = 0, nCtx = 0, threads = 0, timeoutMs = -1;
        float temperature = 0f, topP = 1f, repeatPenalty = 1f;
        ulong seed = 0;
        KvType kv = KvType.F16;

        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a == "-h" || a == "--help")
            {
                PrintUsage(Console.Out);
                return 0;
            }
            if (i + 1 >= args.Length) throw new UsageException("option " + a + " needs a value");
            string v = args[++i];
            switch (a)
            {
                case "-M": modelPath = v; break;
                case "-F": tokenizerPath = v; break;
                case "-C": configPath = v; break;
                case "-V":
                    version = ParseInt(a, v, 0, 3);
                    if (version == 1) throw new UsageException("-V must be 0, 2 or 3");
                    break;
                case "-p": prompt = v; break;
                case "-u": user = v; break;
                case "-S": system = v; break;
                case "-n": steps = ParseInt(a, v, 0, int.MaxValue); break;
                case "-t":
                    temperature = ParseFloat(a, v);
                    if (temperature < 0f) throw new UsageException("-t must be >= 0");
                    break;
                case "-s":
                    if (!ulong.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out seed))
                        throw new UsageException("-s expects a non-negative integer, got \"" + v + "\"");
                    break;
                case "-k": topK = ParseInt(a, v, 0, int.MaxValue); break;
                case "-P":
                    topP = ParseFloat(a, v);
                    if (topP <= 0f || topP > 1f) throw new UsageException("-P must be in (0, 1]");
                    break;
                case "-r":
                    repeatPenalty = ParseFloat(a, v);
                    if (repeatPenalty <= 0f) throw new UsageException("-r must be > 0");
                    break;
                case "-c": nCtx = ParseInt(a, v, 0, int.MaxValue); break;
                case "-T": threads = ParseInt(a, v, 0, 4096); break;
                case "-K":
                    switch (v)
                    {
                        case "f16": kv = KvType.F16; break;
                        case "f32": kv = KvType.F32; break;
                        case "q8_0": kv = KvType.Q8_0; break;
                        case "q4_0": kv = KvType.Q4_0; break;
                        case "q8_0_q4_0": kv = KvType.Q8_0_Q4_0; break;
                        default: throw new UsageException("-K must be f16, f32, q8_0, q4_0 or q8_0_q4_0");
                    }
                    break;
                case "--timeout-ms": timeoutMs = ParseInt(a, v, 0, int.MaxValue); break;
                default: throw new UsageException("unknown option " + a);
            }
        }
        if (prompt != null && user != null) throw new UsageException("-p and -u exclude each other");
        if (system != null && user == null) throw new UsageException("-S needs -u");

        if (modelPath == null)
        {
            string dir = BundledDataDir();
            if (dir == null)
            {
                Console.Error.WriteLine(Prog + ": the bundled model was not found (set RUNLLAMA_DATA_DIR to tests/data/stories260K)");
                return 1;
            }
            modelPath = Path.Combine(dir, "stories260K.bin");
            if (tokenizerPath == null) tokenizerPath = Path.Combine(dir, "tok512.bin");
        }

        // UTF-8 out whatever the locale, no BOM; flushed per write so text streams.
        var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false));
        stdout.AutoFlush = true;

        using (var cts = new CancellationTokenSource())
        {
            ConsoleCancelEventHandler onCtrlC = (s, e) =>
            {
                e.Cancel = true; // keep the process: the generation loop stops and exits 130
                cts.Cancel();
            };
            Console.CancelKeyPress += onCtrlC;
            if (timeoutMs >= 0) cts.CancelAfter(timeoutMs);
            try
            {
                return Generate(stdout, cts.Token, modelPath, tokenizerPath, configPath, version, threads, prompt, user, system,
                                steps, nCtx, temperature, topK, topP, repeatPenalty, seed, kv);
            }
            catch (OperationCanceledException)
            {
                stdout.Write("\n");
                Console.Error.WriteLine(Prog + ": cancelled");
                return 130;
            }
            catch (LlamaException e)
            {
                Console.Error.WriteLine(Prog + ": " + e.Message);
                return 1;
            }
            finally
            {
                Console.CancelKeyPress -= onCtrlC;
            }
        }
    }

    private static int Generate(TextWriter stdout, CancellationToken ct, string modelPath, string tokenizerPath, string configPath,
                                int version, int threads, string prompt, string user, string system, int steps, int nCtx,
                                float temperature, int topK, float topP, float repeatPenalty, ulong seed, KvType kv)
    {
        var sw = Stopwatch.StartNew();
        var load = new LoadOptions
        {
            Version = version,
            TokenizerPath = tokenizerPath,
            ConfigPath = configPath,
            Threads = threads,
            CancellationToken = ct,
        };
        using (var model = LlamaModel.Load(modelPath, load))
        using (var session = model.NewSession(new SessionOptions
        {
            ContextLength = nCtx,
            Temperature = temperature,
            TopK = topK,
            TopP = topP,
            RepeatPenalty = repeatPenalty,
            Seed = seed,
            KvType = kv,
        }))
        {
            double loadMs = sw.Elapsed.TotalMilliseconds;
            int ctxLen = session.ContextLength;
            if (steps <= 0 || steps > ctxLen) steps = ctxLen;

            int[] tokens;
            if (user != null)
            {
                var messages = new List<ChatMessage>();
                if (system != null) messages.Add(new ChatMessage("system", system));
                messages.Add(new ChatMessage("user", user));
                tokens = model.ChatTokenize(messages, true);
            }
            else
            {
                tokens = model.Tokenize(prompt ?? "", true, false);
            }
            if (tokens.Length > ctxLen)
            {
                Console.Error.WriteLine(Prog + ": the prompt is " + tokens.Length + " tokens, more than the context of " + ctxLen);
                return 1;
            }

            var detok = model.NewStreamingDetokenizer();
            string echoed = detok.Push(tokens); // the prompt's text: echoed for -p, dropped for a chat prompt
            if (user == null) stdout.Write(echoed);

            int generated = 0;
            int bos = model.Bos;
            sw.Restart();
            if (tokens.Length <= steps)
            {
                foreach (int t in session.Generate(tokens, steps, ct))
                {
                    if (t == bos) break; // as llama2.c (and run_model): BOS ends the story
                    stdout.Write(detok.Push(t));
                    generated++;
                }
            }
            stdout.Write(detok.Flush());
            stdout.Write("\n");
            double genMs = sw.Elapsed.TotalMilliseconds;
            Console.Error.WriteLine(Prog + ": load " + loadMs.ToString("F2", CultureInfo.InvariantCulture) + " ms");
            Console.Error.WriteLine(Prog + ": prompt " + tokens.Length + " tokens; generated " + generated + " tokens in " +
                                    genMs.ToString("F2", CultureInfo.InvariantCulture) + " ms, " +
                                    (genMs > 0 ? (generated * 1000.0 / genMs).ToString("F1", CultureInfo.InvariantCulture) : "0") +
                                    " tokens/s");
            return 0;
        }
    }
}
