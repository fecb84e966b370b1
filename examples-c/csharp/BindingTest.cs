// BindingTest.cs: acceptance test of the C# binding (include/RunLlama.cs) on the bundled model.
//
//   mono BindingTest.exe <data dir: tests/data> <scratch dir>   run the checks: one "PASS ..." or
//                                                              "FAIL ..." line each; exit 1 on a failure
//   mono BindingTest.exe layout                                the binding's struct layouts, one line per
//                                                              struct ("struct <Name> <size>") and field
//                                                              ("field <Name> <field> <offset>")
//
// tests/csharp.rs builds and runs it. C# 7.2, no unsafe code.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using RunLlama;

internal static class BindingTest
{
    private static int checks, failures;
    private static string dataDir, storiesDir, scratch;
    private static int[] referenceIds; // the 200 greedy ids after BOS
    private static byte[] expectedText;

    private static void Check(bool ok, string what)
    {
        checks++;
        if (!ok) failures++;
        Console.WriteLine((ok ? "PASS " : "FAIL ") + what);
    }

    private static void Section(string name, Action body)
    {
        var sw = Stopwatch.StartNew();
        try
        {
            body();
            Console.Error.WriteLine("BindingTest: " + name + ": " + sw.ElapsedMilliseconds + " ms");
        }
        catch (Exception e)
        {
            checks++;
            failures++;
            Console.WriteLine("FAIL " + name + ": unexpected exception " + e);
        }
    }

    /// <summary>Runs `body`, expecting an exception of type T; returns it (or null, counting a failure).</summary>
    private static T Throws<T>(string what, Action body) where T : Exception
    {
        try
        {
            body();
        }
        catch (T e)
        {
            Check(true, what + " throws " + typeof(T).Name);
            return e;
        }
        catch (Exception e)
        {
            Check(false, what + ": expected " + typeof(T).Name + ", got " + e.GetType().Name + ": " + e.Message);
            return null;
        }
        Check(false, what + ": expected " + typeof(T).Name + ", nothing thrown");
        return null;
    }

    private static string ModelPath { get { return Path.Combine(storiesDir, "stories260K.bin"); } }
    private static string TokPath { get { return Path.Combine(storiesDir, "tok512.bin"); } }

    private static LlamaModel LoadBundled()
    {
        return LlamaModel.Load(ModelPath, new LoadOptions { TokenizerPath = TokPath });
    }

    private static int[] WithBos(int[] ids, int bos)
    {
        var r = new int[ids.Length + 1];
        r[0] = bos;
        Array.Copy(ids, 0, r, 1, ids.Length);
        return r;
    }

    private static int Main(string[] args)
    {
        if (args.Length == 1 && args[0] == "layout")
        {
            PrintLayout();
            return 0;
        }
        if (args.Length != 2)
        {
            Console.Error.WriteLine("usage: mono BindingTest.exe <tests/data dir> <scratch dir> | layout");
            return 2;
        }
        dataDir = args[0];
        storiesDir = Path.Combine(dataDir, "stories260K");
        scratch = args[1];
        Directory.CreateDirectory(scratch);
        expectedText = File.ReadAllBytes(Path.Combine(storiesDir, "expected.txt"));

        Section("basics", Basics);
        Section("errors", Errors);
        Section("reference", Reference);
        if (referenceIds != null)
        {
            Section("two threads", TwoThreads);
            Section("cancellation", Cancellation);
            Section("long prompt abort", LongPromptAbort);
            Section("late abort", LateAbort);
            Section("disposal order", DisposalOrder);
            Section("non-ASCII path", NonAsciiPath);
        }
        Section("non-ASCII text", NonAsciiText);
        Section("two-call pattern", TwoCallPattern);
        Section("streaming detokenizer", Streaming);
        Section("chat", ChatTokenize);
        Section("model info", ModelInfo);
        Section("log callback", LogCallback);
        Section("progress", Progress);

        if (failures > 0)
        {
            Console.WriteLine("BindingTest: " + failures + " of " + checks + " checks FAILED");
            return 1;
        }
        Console.WriteLine("BindingTest: all " + checks + " checks passed");
        return 0;
    }

    private static void PrintLayout()
    {
        foreach (Type t in typeof(Native).GetNestedTypes(BindingFlags.Public))
        {
            if (!t.IsValueType || t.IsEnum) continue;
            Console.WriteLine("struct " + t.Name + " " + Marshal.SizeOf(t));
            foreach (FieldInfo f in t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
                Console.WriteLine("field " + t.Name + " " + f.Name + " " + Marshal.OffsetOf(t, f.Name).ToInt64());
        }
    }

    private static void Basics()
    {
        Check(Llama.ApiVersion == 2, "llama_api_version() == 2 (" + Llama.ApiVersion + ")");
        Llama.EnsureLoaded();
        Check(Llama.Version.Length > 0 && Llama.Version.Contains("."), "Version \"" + Llama.Version + "\"");
        Check(Llama.SystemInfo.Contains("kernels="), "SystemInfo \"" + Llama.SystemInfo + "\"");
        Check(Llama.StatusName(LlamaStatus.Format) == "LLAMA_ERR_FORMAT", "StatusName(Format)");
        Check(Marshal.SizeOf(typeof(Native.LlamaLoadParams)) == 72 && Marshal.SizeOf(typeof(Native.LlamaSessionParams)) == 40 &&
              Marshal.SizeOf(typeof(Native.LlamaModelHparams)) == 56, "struct sizes 64/40/56");
        var p = new Native.LlamaLoadParams();
        Native.llama_load_params_init(ref p, (UIntPtr)64u);
        Check(p.size == 64 && p.use_mmap == 1 && p.version == 0 && p.progress == IntPtr.Zero, "llama_load_params_init defaults");
        var sp = new Native.LlamaSessionParams();
        sp.kv_type = 77;
        Native.llama_session_params_init(ref sp, (UIntPtr)32u);
        Check(sp.size == 32 && sp.top_p == 1f && sp.repeat_penalty == 1f && sp.kv_type == 77,
              "llama_session_params_init writes at most `size` bytes");
    }

    private static void Errors()
    {
        string missing = Path.Combine(scratch, "no-such-model.gguf");
        var e = Throws<LlamaException>("Load(missing file)", () => LlamaModel.Load(missing).Dispose());
        if (e != null)
            Check(e.Status == LlamaStatus.Io && e.NativeMessage.Contains(missing) && e.Message.Contains("LLAMA_ERR_IO") &&
                  e.Function == "llama_load", "missing file: Io, the message names the path: " + e.Message);

        string junk = Path.Combine(scratch, "junk.bin");
        var sb = new StringBuilder();
        for (int i = 0; i < 20; i++) sb.Append("definitely not a model file, just some text bytes\n");
        File.WriteAllText(junk, sb.ToString());
        e = Throws<LlamaException>("Load(garbage)", () => LlamaModel.Load(junk).Dispose());
        if (e != null)
            Check(e.Status == LlamaStatus.Format && e.NativeMessage.Contains(junk), "garbage file: Format, names the path: " + e.Message);

        e = Throws<LlamaException>("LoadVocab(missing)", () => LlamaModel.LoadVocab(missing).Dispose());
        if (e != null) Check(e.Status == LlamaStatus.Io, "LoadVocab(missing): Io");

        using (var vocab = LlamaModel.LoadVocab(TokPath, 2))
        {
            e = Throws<LlamaException>("NewSession on a vocabulary", () => vocab.NewSession().Dispose());
            if (e != null) Check(e.Status == LlamaStatus.Unsupported, "vocabulary-only session: Unsupported");
        }

        using (var m = LoadBundled())
        {
            e = Throws<LlamaException>("TokenToPiece(512)", () => m.TokenToPiece(512));
            if (e != null) Check(e.Status == LlamaStatus.InvalidArgument, "token out of range: InvalidArgument: " + e.NativeMessage);
            using (var s = m.NewSession(new SessionOptions { ContextLength = 8 }))
            {
                Check(s.ContextLength == 8, "ContextLength 8");
                e = Throws<LlamaException>("9 tokens into 8", () => s.Step(new int[9]));
                if (e != null) Check(e.Status == LlamaStatus.ContextFull && s.Position == 0, "ContextFull, position 0");
                e = Throws<LlamaException>("Step(id 600)", () => s.Step(new[] { 1, 600 }));
                if (e != null) Check(e.Status == LlamaStatus.InvalidArgument && s.Position == 0, "bad id: InvalidArgument");
                Throws<ArgumentException>("Generate(empty prompt)", () => s.Generate(new int[0]));
                e = Throws<LlamaException>("Rewind past the end", () => s.Rewind(3));
                if (e != null) Check(e.Status == LlamaStatus.InvalidArgument, "rewind: InvalidArgument");
            }
            e = Throws<LlamaException>("KvType 9", () => m.NewSession(new SessionOptions { KvType = (KvType)9 }).Dispose());
            if (e != null) Check(e.Status == LlamaStatus.InvalidArgument, "bad kv_type: InvalidArgument: " + e.NativeMessage);
            // The message belongs to the thread that failed: another thread's success does not clear it,
            // and another thread's failure does not change it.
            string mine = null, other = null;
            try { m.TokenToPiece(-5); } catch (LlamaException x) { mine = x.NativeMessage; }
            var th = new Thread(() =>
            {
                try { LlamaModel.Load(missing).Dispose(); } catch (LlamaException x) { other = x.NativeMessage; }
            });
            th.Start();
            th.Join();
            Check(mine != null && other != null && mine != other && Utf8.FromNative(Native.llama_last_error()) == mine,
                  "last error is per thread (" + mine + " | " + other + ")");
        }
        LlamaModel disposed = LoadBundled();
        disposed.Dispose();
        Throws<ObjectDisposedException>("Tokenize on a disposed model", () => disposed.Tokenize("x", true, false));
    }

    private static void Reference()
    {
        using (var m = LoadBundled())
        using (var s = m.NewSession())
        {
            Check(m.VocabSize == 512 && m.Bos == 1 && m.Eos == 2, "n_vocab 512, BOS 1, EOS 2");
            Check(s.GetLogits() == null, "no logits before the first step");
            var ids = s.Generate(new[] { m.Bos }, 200).ToArray();
            Check(ids.Length == 200 && s.Position == 200, "200 tokens generated (" + ids.Length + "), position " + s.Position);
            byte[] text = m.DetokenizeUtf8(WithBos(ids, m.Bos));
            bool same = text.SequenceEqual(expectedText);
            Check(same, "Detokenize(BOS + generated) is expected.txt (" + text.Length + " bytes)");
            if (same) referenceIds = ids;
            float[] logits = s.GetLogits();
            int argmax = 0;
            for (int i = 1; i < logits.Length; i++)
                if (logits[i] > logits[argmax]) argmax = i;
            // The last step's logits predict the token after the last yielded one; rerun that step to compare.
            s.Rewind(199);
            int next = s.Step(ids[198]);
            logits = s.GetLogits();
            argmax = 0;
            for (int i = 1; i < logits.Length; i++)
                if (logits[i] > logits[argmax]) argmax = i;
            Check(logits.Length == 512 && next == ids[199] && argmax == next, "logits: 512 floats whose argmax is the greedy id");
        }
    }

    private static void TwoThreads()
    {
        using (var m = LoadBundled())
        {
            var results = new int[2][];
            var errors = new Exception[2];
            var threads = new Thread[2];
            for (int k = 0; k < 2; k++)
            {
                int kk = k;
                threads[k] = new Thread(() =>
                {
                    try
                    {
                        using (var s = m.NewSession())
                        {
                            for (int round = 0; round < 2; round++)
                            {
                                s.Reset();
                                results[kk] = s.Generate(new[] { 1 }, 200).ToArray();
                                if (!results[kk].SequenceEqual(referenceIds)) break;
                            }
                        }
                    }
                    catch (Exception e)
                    {
                        errors[kk] = e;
                    }
                });
            }
            foreach (var t in threads) t.Start();
            foreach (var t in threads) t.Join();
            for (int k = 0; k < 2; k++)
                Check(errors[k] == null && results[k] != null && results[k].SequenceEqual(referenceIds),
                      "thread " + k + ": its own session on the shared model generates the reference ids" +
                      (errors[k] != null ? " (" + errors[k] + ")" : ""));
        }
    }

    private static void Cancellation()
    {
        using (var m = LoadBundled())
        using (var s = m.NewSession())
        using (var cts = new CancellationTokenSource())
        {
            // Cancel from another thread after 10 tokens: the next step is cancelled, the session
            // unchanged, and it goes on from there.
            var got = new List<int>();
            int posAtCancel = -1;
            var oce = Throws<OperationCanceledException>("Generate cancelled from another thread", () =>
            {
                foreach (int t in s.Generate(new[] { 1 }, 200, cts.Token))
                {
                    got.Add(t);
                    if (got.Count == 10)
                    {
                        posAtCancel = s.Position;
                        var th = new Thread(() => cts.Cancel());
                        th.Start();
                        th.Join();
                    }
                }
            });
            Check(oce != null && oce.CancellationToken == cts.Token, "OperationCanceledException carries the token");
            Check(got.Count == 10 && s.Position == posAtCancel && posAtCancel == 10,
                  "cancelled after 10 tokens, position unchanged (" + s.Position + ")");
            int next = s.Step(got[9]);
            Check(next == referenceIds[10], "the session continues after the cancellation");

            // A token that is already cancelled: nothing runs.
            int pos = s.Position;
            Throws<OperationCanceledException>("Step with a cancelled token", () => s.Step(new[] { next }, cts.Token));
            Check(s.Position == pos, "position unchanged");
        }

        // Cancel at a random moment of an endless generation, many times, from a timer thread:
        // always OperationCanceledException, and the session always usable afterwards.
        using (var m = LoadBundled())
        using (var s = m.NewSession())
        {
            var rng = new Random(1);
            int ok = 0;
            for (int round = 0; round < 20; round++)
            {
                using (var cts = new CancellationTokenSource())
                {
                    cts.CancelAfter(rng.Next(0, 8));
                    try
                    {
                        while (true)
                        {
                            s.Reset();
                            foreach (int t in s.Generate(new[] { 1 }, 0, cts.Token)) { }
                        }
                    }
                    catch (OperationCanceledException)
                    {
                        s.Reset();
                        var ids = s.Generate(new[] { 1 }, 30).ToArray();
                        if (ids.SequenceEqual(referenceIds.Take(30))) ok++;
                    }
                }
            }
            Check(ok == 20, "20 random-time cancellations; each time the session then generates the reference (" + ok + ")");
        }
    }

    private static readonly double[] Fractions = { 0, 0.2, 0.4, 0.6, 0.8, 1.5 };

    private static void LongPromptAbort()
    {
        using (var m = LoadBundled())
        using (var s = m.NewSession())
        {
            // A 250-token prompt: BOS and the reference ids.
            var prompt = new int[250];
            prompt[0] = 1;
            for (int i = 1; i < prompt.Length; i++) prompt[i] = referenceIds[(i - 1) % referenceIds.Length];
            var sw = Stopwatch.StartNew();
            int expectedNext = s.Step(prompt);
            double ms = sw.Elapsed.TotalMilliseconds;
            s.Reset();
            int cancelled = 0, completed = 0, bad = 0, midRun = 0;
            for (int round = 0; round < Fractions.Length; round++)
            {
                using (var cts = new CancellationTokenSource())
                {
                    var canceller = new Thread(() =>
                    {
                        Thread.Sleep(TimeSpan.FromMilliseconds(ms * Fractions[round % Fractions.Length]));
                        cts.Cancel();
                    });
                    canceller.Start();
                    bool before = cts.IsCancellationRequested;
                    try
                    {
                        int next = s.Step(prompt, cts.Token);
                        completed++;
                        if (next != expectedNext || s.Position != prompt.Length) bad++;
                    }
                    catch (OperationCanceledException)
                    {
                        cancelled++;
                        if (!before) midRun++;
                        if (s.Position != 0) bad++;
                    }
                    canceller.Join();
                    // Whatever happened, no abort is left pending: a plain step works.
                    s.Reset();
                    if (s.Step(new[] { 1 }) != referenceIds[0]) bad++;
                    s.Reset();
                }
            }
            Check(bad == 0 && midRun > 0, "abort of a running 250-token step (" + ms.ToString("F1") + " ms): " + cancelled +
                  " cancelled (" + midRun + " after the step began), " + completed + " completed, " + bad + " wrong");
        }
    }

    private static void LateAbort()
    {
        using (var m = LoadBundled())
        using (var s = m.NewSession())
        {
            var ids = s.Generate(new[] { 1 }, 50).ToArray();
            // An abort after the generation ended (from another thread): the next step is cancelled ...
            var th = new Thread(() => s.Abort());
            th.Start();
            th.Join();
            int pos = s.Position;
            var e = Throws<LlamaException>("Step after a late Abort()", () => s.Step(ids[49]));
            Check(e != null && e.Status == LlamaStatus.Cancelled && s.Position == pos, "Cancelled, session unchanged");
            Check(s.Step(ids[49]) == referenceIds[50], "... and only that one step");

            // ... but Reset clears it: the next conversation runs in full.
            th = new Thread(() => s.Abort());
            th.Start();
            th.Join();
            s.Reset();
            var again = s.Generate(new[] { 1 }, 200).ToArray();
            Check(again.SequenceEqual(referenceIds), "a late abort does not cancel the next conversation after Reset");

            // Rewind clears it too.
            s.Abort();
            s.Rewind(10);
            Check(s.Step(referenceIds[9]) == referenceIds[10], "Rewind clears a pending abort");

            // A token cancelled after its generation finished does not leave an abort behind.
            using (var cts = new CancellationTokenSource())
            {
                s.Reset();
                var first = s.Generate(new[] { 1 }, 20, cts.Token).ToArray();
                cts.Cancel();
                Check(first.SequenceEqual(referenceIds.Take(20)) && s.Step(first[19]) == referenceIds[20],
                      "cancelling a finished generation's token leaves the session usable");
            }
        }
    }

    private static void DisposalOrder()
    {
        var m = LoadBundled();
        var s = m.NewSession();
        var s2 = m.NewSession();
        m.Dispose(); // the sessions keep the model alive
        Throws<ObjectDisposedException>("the disposed LlamaModel", () => m.Tokenize("x", true, false));
        var ids = s.Generate(new[] { 1 }, 40).ToArray();
        Check(ids.SequenceEqual(referenceIds.Take(40)), "a session steps after its model was disposed");
        Check(s.Model.Tokenize("Once upon a time", true, false).SequenceEqual(new[] { 1, 403, 407, 261, 378 }),
              "session.Model still tokenizes");
        LlamaModel view = s.Model;
        s.Dispose();
        Throws<ObjectDisposedException>("session.Model after the session was disposed", () => view.Tokenize("x", true, false));
        Check(s2.Generate(new[] { 1 }, 10).SequenceEqual(referenceIds.Take(10)), "the last session still works");
        s2.Dispose();
        s2.Dispose(); // twice is fine
        Throws<ObjectDisposedException>("Step on a disposed session", () => s2.Step(1));

        // Nothing disposed: the finalizers free it all. Each model runs its own worker threads
        // (named runllama-N), which the library joins when the model's last reference (its own,
        // its sessions') is freed; so once the finalizers have run, the count of those threads
        // is back where it was. The models and sessions are made on a thread of their own that
        // has ended by then, so that no stale stack slot keeps them reachable.
        Collect();
        int baseline = LibraryThreads(), during = -1;
        var weak = new List<WeakReference>();
        var leaker = new Thread(() =>
        {
            for (int i = 0; i < 5; i++)
            {
                var mm = LoadBundled();
                var ss = mm.NewSession();
                ss.Step(1);
                weak.Add(new WeakReference(mm));
                weak.Add(new WeakReference(ss));
            }
            // A new thread names itself once it runs: wait a moment for the last ones.
            var sw = Stopwatch.StartNew();
            while ((during = LibraryThreads()) >= 0 && during < baseline + 5 && sw.ElapsedMilliseconds < 2000) Thread.Sleep(10);
        });
        leaker.Start();
        leaker.Join();
        int after = -1;
        var deadline = Stopwatch.StartNew();
        do
        {
            Collect();
            after = LibraryThreads();
            if (after == baseline) break;
            Thread.Sleep(20); // a joined thread's /proc entry may linger a moment
        } while (deadline.ElapsedMilliseconds < 5000);
        bool collected = weak.All(w => !w.IsAlive);
        if (baseline < 0)
            Check(collected, "undisposed models and sessions were collected (no /proc: their threads not counted)");
        else
            Check(collected && during >= baseline + 5 && after == baseline,
                  "finalizers released undisposed models and sessions: runllama-* threads " + baseline + " before, " + during +
                  " with 5 undisposed models, " + after + " after the finalizers" + (collected ? "" : " (some still reachable)"));
        using (var mm = LoadBundled())
        using (var ss = mm.NewSession())
            Check(ss.Step(1) == referenceIds[0], "a model loads and steps after the finalizers ran");
    }

    private static void Collect()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        GC.WaitForPendingFinalizers();
    }

    /// <summary>Threads of this process named runllama-* (the library's workers); -1 without /proc.</summary>
    private static int LibraryThreads()
    {
        // Only on Linux: under wine, /proc/self/task is the Linux process's, whose thread names
        // Windows' SetThreadDescription does not reach.
        if (Environment.OSVersion.Platform != PlatformID.Unix || !Directory.Exists("/proc/self/task")) return -1;
        int n = 0;
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(task, "comm")).StartsWith("runllama-", StringComparison.Ordinal)) n++;
            }
            catch (IOException)
            {
                // The thread ended meanwhile.
            }
        }
        return n;
    }

    private static void NonAsciiPath()
    {
        string dir = Path.Combine(scratch, "模型 ü");
        Directory.CreateDirectory(dir);
        string bin = Path.Combine(dir, "故事 é.bin"), tok = Path.Combine(dir, "词表 ñ.bin");
        File.Copy(ModelPath, bin, true);
        File.Copy(TokPath, tok, true);
        using (var m = LlamaModel.Load(bin, new LoadOptions { TokenizerPath = tok, Version = 2 }))
        using (var s = m.NewSession())
            Check(s.Generate(new[] { 1 }, 30).SequenceEqual(referenceIds.Take(30)), "load from " + dir + " (UTF-8 path)");
        string missing = Path.Combine(dir, "缺失 😀.gguf");
        var e = Throws<LlamaException>("Load(missing non-ASCII path)", () => LlamaModel.Load(missing).Dispose());
        if (e != null) Check(e.Status == LlamaStatus.Io && e.NativeMessage.Contains(missing), "the message names the path: " + e.NativeMessage);
        using (var v = LlamaModel.LoadVocab(tok))
            Check(v.Tokenize("Hello world", true, false).SequenceEqual(new[] { 1, 346, 306, 414, 263, 304, 341 }), "LoadVocab from a UTF-8 path");
    }

    private const string Multilingual =
        "Héllo wörld, naïve café — Ωμέγα. 你好，世界！为了解决广大人民群众的问题。こんにちは 안녕하세요 🦙🎉👩‍👩‍👧 ok\n\ttabs  and  spaces";

    private static void NonAsciiText()
    {
        string llama2 = Path.Combine(dataDir, "tokenizers", "llama2", "tokenizer.model");
        string llama3 = Path.Combine(dataDir, "tokenizers", "llama3", "tokenizer.model");
        using (var v2 = LlamaModel.LoadVocab(llama2, 2))
        {
            int[] ids = v2.Tokenize(Multilingual, true, false);
            Check(ids[0] == 1 && v2.Detokenize(ids) == Multilingual, "LLaMA 2: tokenize/detokenize round trip of CJK, emoji, accents");
            Check(v2.Tokenize("Hello world", true, false).SequenceEqual(new[] { 1, 15043, 3186 }), "LLaMA 2: Hello world ids");
            Check(v2.Tokenize("", false, false).Length == 0, "empty text: no ids");
            var big = new StringBuilder();
            for (int i = 0; i < 300; i++) big.Append("🦙 ");
            Check(v2.Detokenize(v2.Tokenize(big.ToString(), false, false)) == big.ToString(),
                  "LLaMA 2: round trip of 300 emoji in byte tokens (" + Encoding.UTF8.GetByteCount(big.ToString()) + " bytes)");
        }
        using (var v3 = LlamaModel.LoadVocab(llama3, 3))
        {
            int[] ids = v3.Tokenize(Multilingual, true, false);
            Check(ids[0] == 128000 && v3.Detokenize(ids, true) == Multilingual, "LLaMA 3: round trip");
            int[] sp = v3.Tokenize("<|start_header_id|>user<|end_header_id|>", false, true);
            int[] plain = v3.Tokenize("<|start_header_id|>user<|end_header_id|>", false, false);
            Check(sp.Length == 3 && plain.Length > 3, "LLaMA 3: parseSpecial makes control ids");
        }
        using (var m = LoadBundled())
        {
            string t = "Lily ate a café crème 🍰 with 你好";
            Check(m.Detokenize(m.Tokenize(t, true, false)) == t, "tok512: round trip (byte fallback)");
        }
    }

    // The lines the library logs (debug level) for a LLAMA_ERR_BUFFER_TOO_SMALL of `function` while
    // `body` runs on this thread: one per first call of the two-call pattern whose buffer was too
    // small, which the binding follows with a second call ("f: LLAMA_ERR_BUFFER_TOO_SMALL: the
    // result needs N elements, the buffer holds M").
    private static List<string> TooSmallLines(string function, Action body)
    {
        var lines = new List<string>();
        string prefix = function + ": LLAMA_ERR_BUFFER_TOO_SMALL";
        Llama.SetLogCallback((level, line) =>
        {
            if (level == 0 && line.StartsWith(prefix, StringComparison.Ordinal)) lines.Add(line);
        });
        try
        {
            body();
        }
        finally
        {
            Llama.SetLogCallback(null);
        }
        return lines;
    }

    // References straight from the C API, with buffers far larger than the results.
    private static int[] RawTokenize(LlamaModel m, string text, uint flags)
    {
        byte[] b = Utf8.GetBytes(text);
        var o = new int[b.Length * 2 + 64];
        UIntPtr n;
        int st = Native.llama_tokenize(m.Handle, b, (UIntPtr)(uint)b.Length, flags, o, (UIntPtr)(uint)o.Length, out n);
        return st == Native.LLAMA_OK ? o.Take((int)n.ToUInt64()).ToArray() : null;
    }

    private static byte[] RawDetokenize(LlamaModel m, int[] ids)
    {
        var o = new byte[1 << 20];
        UIntPtr n;
        int st = Native.llama_detokenize(m.Handle, ids, (UIntPtr)(uint)ids.Length, 0, o, (UIntPtr)(uint)o.Length, out n);
        return st == Native.LLAMA_OK ? o.Take((int)n.ToUInt64()).ToArray() : null;
    }

    private static byte[] RawPiece(LlamaModel m, int id)
    {
        var o = new byte[4096];
        UIntPtr n;
        int st = Native.llama_token_to_piece(m.Handle, id, o, (UIntPtr)(uint)o.Length, out n);
        return st == Native.LLAMA_OK ? o.Take((int)n.ToUInt64()).ToArray() : null;
    }

    // The binding's internal diagnostics switch: while true on a thread, the first call of each
    // two-call function is a size query (capacity 0), so the second call makes every result.
    private static readonly FieldInfo ForceSizeQuery =
        typeof(LlamaModel).GetField("ForceSizeQuery", BindingFlags.NonPublic | BindingFlags.Static);

    // The binding's two-call pattern (first call with a guessed buffer; when the library answers
    // LLAMA_ERR_BUFFER_TOO_SMALL, a second call with the size it reported). The library's debug
    // line for each LLAMA_ERR_BUFFER_TOO_SMALL shows which calls needed the second call.
    private static void TwoCallPattern()
    {
        string llama2 = Path.Combine(dataDir, "tokenizers", "llama2", "tokenizer.model");
        string llama3 = Path.Combine(dataDir, "tokenizers", "llama3", "tokenizer.model");
        using (var v3 = LlamaModel.LoadVocab(llama3, 3))
        {
            // The first 40 ordinary ids whose pieces are 17..64 bytes (runs of '=', '-', spaces,
            // ...), and the first whose piece is longer than 64 bytes.
            var longIds = new List<int>();
            int longest = -1, longestLen = 0;
            for (int id = 0; id < 128000 && (longIds.Count < 40 || longest < 0); id++)
            {
                byte[] piece = RawPiece(v3, id);
                if (piece == null) continue;
                if (piece.Length > 16 && piece.Length <= 64 && longIds.Count < 40) longIds.Add(id);
                if (piece.Length > 64 && longest < 0)
                {
                    longest = id;
                    longestLen = piece.Length;
                }
            }
            int[] ids = longIds.ToArray();
            byte[] want = RawDetokenize(v3, ids);
            byte[] got = null;
            List<string> lines = TooSmallLines("llama_detokenize", () => got = v3.DetokenizeUtf8(ids));
            Check(ids.Length == 40 && want != null && want.Length > 8 * ids.Length + 16 && got != null && got.SequenceEqual(want) &&
                  lines.Count == 1 && lines[0].Contains("needs " + want.Length + " "),
                  "DetokenizeUtf8 of " + ids.Length + " long pieces (" + (want == null ? 0 : want.Length) +
                  " bytes): the first buffer was too small, the second call's text is llama_detokenize's (" + string.Join(" | ", lines) + ")");

            byte[] wantPiece = RawPiece(v3, longest);
            byte[] gotPiece = null;
            lines = TooSmallLines("llama_token_to_piece", () => gotPiece = v3.TokenToPiece(longest));
            Check(longestLen > 64 && gotPiece != null && gotPiece.SequenceEqual(wantPiece) && lines.Count == 1 &&
                  lines[0].Contains("needs " + longestLen + " "),
                  "TokenToPiece(" + longest + "), " + longestLen + " bytes: the second call made it (" + string.Join(" | ", lines) + ")");

            // Usual results fit the first buffer: one call each, no LLAMA_ERR_BUFFER_TOO_SMALL.
            int n = 0;
            lines = TooSmallLines("llama_", () =>
            {
                int[] t = v3.Tokenize(Multilingual, true, false);
                n = t.Length;
                v3.Detokenize(t);
                v3.TokenToPiece(t[1]);
                v3.DetokenizeUtf8(new[] { longIds[0] });
            });
            Check(n > 10 && lines.Count == 0, "short results take one call (" + string.Join(" | ", lines) + ")");
        }

        // Every function through its second call: the internal switch makes each first call a
        // size query. (Tokenize's first buffer always fits, so only this reaches its second call.)
        Check(ForceSizeQuery != null && ForceSizeQuery.FieldType == typeof(bool), "the binding's internal ForceSizeQuery switch exists");
        if (ForceSizeQuery == null) return;
        foreach (var spec in new[] { Tuple.Create(llama2, 2), Tuple.Create(llama3, 3), Tuple.Create(TokPath, 2) })
        {
            string name = Path.GetFileName(Path.GetDirectoryName(spec.Item1)) + "/" + Path.GetFileName(spec.Item1);
            using (var v = LlamaModel.LoadVocab(spec.Item1, spec.Item2))
            {
                var chat = new[] { new ChatMessage("system", "Be brief."), new ChatMessage("user", "Hi 你好") };
                int[] wantIds = RawTokenize(v, Multilingual, Native.LLAMA_TOKENIZE_ADD_BOS);
                byte[] wantText = RawDetokenize(v, wantIds);
                byte[] wantPiece = RawPiece(v, wantIds[1]);
                int[] wantChat = v.ChatTokenize(chat, true);
                int[] ids = null, empty = null, chatIds = null;
                byte[] text = null, piece = null;
                var tok = new List<string>();
                var detok = new List<string>();
                var pieceLines = new List<string>();
                var chatLines = new List<string>();
                var emptyLines = new List<string>();
                ForceSizeQuery.SetValue(null, true);
                try
                {
                    tok = TooSmallLines("llama_tokenize", () => ids = v.Tokenize(Multilingual, true, false));
                    detok = TooSmallLines("llama_detokenize", () => text = v.DetokenizeUtf8(wantIds));
                    pieceLines = TooSmallLines("llama_token_to_piece", () => piece = v.TokenToPiece(wantIds[1]));
                    chatLines = TooSmallLines("llama_chat_tokenize", () => chatIds = v.ChatTokenize(chat, true));
                    emptyLines = TooSmallLines("llama_", () => empty = v.Tokenize("", false, false));
                }
                finally
                {
                    ForceSizeQuery.SetValue(null, false);
                }
                Check(ids != null && ids.SequenceEqual(wantIds) && tok.Count == 1 && tok[0].Contains("holds 0"),
                      name + ": Tokenize through the second call == llama_tokenize (" + string.Join(" | ", tok) + ")");
                Check(text != null && text.SequenceEqual(wantText) && detok.Count == 1 && detok[0].Contains("holds 0"),
                      name + ": DetokenizeUtf8 through the second call == llama_detokenize");
                Check(piece != null && piece.SequenceEqual(wantPiece) && pieceLines.Count == 1 && pieceLines[0].Contains("holds 0"),
                      name + ": TokenToPiece through the second call == llama_token_to_piece");
                Check(chatIds != null && chatIds.SequenceEqual(wantChat) && chatLines.Count == 1 && chatLines[0].Contains("holds 0"),
                      name + ": ChatTokenize through the second call == its one-call result");
                Check(empty != null && empty.Length == 0 && emptyLines.Count == 0, name + ": an empty result needs no second call");
            }
        }
        using (var m = LoadBundled())
        {
            string want = m.Describe();
            string got = null;
            ForceSizeQuery.SetValue(null, true);
            List<string> lines;
            try
            {
                lines = TooSmallLines("llama_model_describe", () => got = m.Describe());
            }
            finally
            {
                ForceSizeQuery.SetValue(null, false);
            }
            Check(got == want && want.Length > 0 && lines.Count == 1 && lines[0].Contains("holds 0"), "Describe through the second call");
            lines = TooSmallLines("llama_", () => m.Tokenize(Multilingual, true, false));
            Check(lines.Count == 0, "the switch is off again: one call");
        }
    }

    private static string StreamAll(LlamaModel m, int[] ids, bool skipSpecial, out bool partialSeen)
    {
        var d = m.NewStreamingDetokenizer(skipSpecial);
        var sb = new StringBuilder();
        partialSeen = false;
        foreach (int t in ids)
        {
            string piece = d.Push(t);
            if (piece.IndexOf('\uFFFD') >= 0) partialSeen = true;
            if (piece.Length > 0 && char.IsHighSurrogate(piece[piece.Length - 1])) partialSeen = true;
            sb.Append(piece);
        }
        sb.Append(d.Flush());
        return sb.ToString();
    }

    private static void Streaming()
    {
        string llama2 = Path.Combine(dataDir, "tokenizers", "llama2", "tokenizer.model");
        string llama3 = Path.Combine(dataDir, "tokenizers", "llama3", "tokenizer.model");
        string[] texts = { Multilingual, "   leading spaces 你好", "🦙", "é", " x", "" };
        bool partial;
        foreach (var spec in new[] { Tuple.Create(llama2, 2), Tuple.Create(llama3, 3), Tuple.Create(TokPath, 2) })
        {
            using (var v = LlamaModel.LoadVocab(spec.Item1, spec.Item2))
            {
                foreach (string text in texts)
                {
                    foreach (bool bos in new[] { true, false })
                    {
                        int[] ids = v.Tokenize(text, bos, false);
                        string whole = v.Detokenize(ids);
                        string streamed = StreamAll(v, ids, false, out partial);
                        Check(streamed == whole && !partial, Path.GetFileName(Path.GetDirectoryName(spec.Item1)) + "/" +
                              Path.GetFileName(spec.Item1) + (bos ? " BOS " : " ") + "streamed == llama_detokenize: \"" +
                              Escape(text) + "\"");
                    }
                }
                // Special ids: with and without skip.
                int[] special = v.Tokenize(spec.Item2 == 3 ? "<|begin_of_text|>Hi 你<|eot_id|>好" : "<s>Hi 你</s>好", true, true);
                foreach (bool skip in new[] { false, true })
                    Check(StreamAll(v, special, skip, out partial) == v.Detokenize(special, skip),
                          "special tokens, skipSpecial " + skip + ": streamed == llama_detokenize");
            }
        }
        // Byte tokens split characters: the LLaMA 2 vocabulary has 你 but spells rare characters in
        // byte tokens, 3-4 per character: the detokenizer must hold them back.
        using (var v = LlamaModel.LoadVocab(llama2, 2))
        {
            int[] ids = v.Tokenize("龘𠀀🦙", false, false);
            var d = v.NewStreamingDetokenizer();
            int empty = 0;
            foreach (int t in ids)
                if (d.Push(t).Length == 0) empty++;
            Check(ids.Length > 3 && empty > 0 && d.Flush() == "", "byte tokens are held until the character is whole (" + ids.Length +
                  " ids, " + empty + " pushes gave nothing)");
        }
        // Generated text of the bundled model, as the example streams it.
        using (var m = LoadBundled())
        {
            string s = StreamAll(m, WithBos(referenceIds ?? new int[0], 1), false, out partial);
            Check(Encoding.UTF8.GetBytes(s).SequenceEqual(expectedText), "the reference story streamed is expected.txt");
        }
    }

    private static string Escape(string s)
    {
        return s.Replace("\n", "\\n").Replace("\t", "\\t");
    }

    private static void ChatTokenize()
    {
        using (var m = LoadBundled())
        {
            var msgs = new List<ChatMessage> { new ChatMessage("system", "Be brief."), new ChatMessage("user", "Hi 你好") };
            int[] ids = m.ChatTokenize(msgs, true);
            int[] want = m.Tokenize("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi 你好 [/INST]", true, false);
            Check(ids.SequenceEqual(want), "ChatTokenize (LLaMA 2 template) == Tokenize of the [INST] text");
            msgs.Add(new ChatMessage("robot", "x"));
            var e = Throws<LlamaException>("ChatTokenize with a bad role", () => m.ChatTokenize(msgs, false));
            if (e != null) Check(e.Status == LlamaStatus.InvalidArgument, "bad role: InvalidArgument");
            Throws<ArgumentException>("a null content", () => m.ChatTokenize(new[] { new ChatMessage("user", null) }, true));
        }
        using (var v3 = LlamaModel.LoadVocab(Path.Combine(dataDir, "tokenizers", "llama3", "tokenizer.model"), 3))
        {
            var longMsg = new StringBuilder();
            for (int i = 0; i < 200; i++) longMsg.Append("word 词 ");
            int[] ids = null;
            List<string> tooSmall = TooSmallLines("llama_chat_tokenize", () =>
                ids = v3.ChatTokenize(new[] { new ChatMessage("user", longMsg.ToString()) }, true));
            Check(ids.Length > 256 && ids[0] == 128000 && v3.Detokenize(ids).Contains("<|start_header_id|>assistant<|end_header_id|>") &&
                  tooSmall.Count == 1 && tooSmall[0].Contains("needs " + ids.Length + " "),
                  "LLaMA 3 chat, " + ids.Length + " ids: the first buffer was too small, the second call made them (" +
                  string.Join(" | ", tooSmall) + ")");
        }
    }

    private static void ModelInfo()
    {
        using (var m = LoadBundled())
        {
            var hp = m.GetHparams();
            Check(hp.n_vocab == 512 && hp.n_embd == 64 && hp.n_layer == 5 && hp.n_head == 8 && hp.n_head_kv == 4 && hp.n_params > 0,
                  "hparams: vocab " + hp.n_vocab + ", embd " + hp.n_embd + ", layers " + hp.n_layer + ", heads " + hp.n_head + "/" +
                  hp.n_head_kv + ", params " + hp.n_params);
            var tensors = m.GetTensors();
            Check(tensors.Count > 0 && tensors.All(t => t.Name.Length > 0 && t.DType == "F32" && t.Shape.Length > 0),
                  tensors.Count + " tensors with names, F32, shapes");
            string json = m.Describe();
            Check(json.StartsWith("{") && json.Contains("\"n_vocab\""), "Describe: JSON (" + json.Length + " bytes)");
            Check(m.TrainingContextLength > 0, "n_ctx_train " + m.TrainingContextLength);
        }
    }

    private static void LogCallback()
    {
        // A callback that throws: the exception surfaces from the binding call that logged, once
        // the native call has returned; the model that call loaded is released.
        int calls = 0;
        Llama.SetLogCallback((level, line) =>
        {
            calls++;
            throw new InvalidOperationException("boom from the log callback");
        });
        var e = Throws<InvalidOperationException>("Load with a throwing log callback", () => LoadBundled().Dispose());
        Check(e != null && e.Message == "boom from the log callback" && calls > 0, "the callback's own exception (" + calls + " calls)");
        var e2 = Throws<InvalidOperationException>("a failing load with a throwing log callback",
                                                   () => LlamaModel.Load(Path.Combine(scratch, "missing.gguf")).Dispose());
        Check(e2 != null, "the callback's exception wins over the load's failure");
        Llama.SetLogCallback(null);

        // Afterwards everything works: set, unset, set again, load again.
        var lines = new List<string>();
        bool badLevel = false, reentrantOk = true;
        Llama.SetLogCallback((level, line) =>
        {
            if (level < 0 || level > 3) badLevel = true;
            lines.Add(line);
            // A callback may call the API.
            if (!Llama.SystemInfo.Contains("kernels=")) reentrantOk = false;
        });
        using (var m = LoadBundled())
        using (var s = m.NewSession())
            Check(s.Step(1) == referenceIds[0], "load and step with a log callback");
        Check(lines.Count > 0 && !badLevel && reentrantOk && lines.All(l => l.IndexOf('\n') < 0 || l.IndexOf('\n') == l.Length - 1),
              lines.Count + " log lines, levels 0..3, whole lines, the callback may call the API: " + (lines.Count > 0 ? lines[0] : ""));
        Llama.SetLogCallback(null);
        int before = lines.Count;
        LoadBundled().Dispose();
        Check(lines.Count == before, "no lines after SetLogCallback(null)");
        Llama.SetLogCallback((level, line) => lines.Add(line));
        LoadBundled().Dispose();
        Check(lines.Count > before, "set again: lines again");
        Llama.SetLogCallback(null);

        // A callback that fails an API call of its own (caught) while a load fails: the load's
        // exception still carries the load's message (the library keeps the caller's last error).
        string missing = Path.Combine(scratch, "missing-again.gguf");
        int innerFailures = 0;
        using (var vocab = LlamaModel.LoadVocab(TokPath))
        {
            Llama.SetLogCallback((level, line) =>
            {
                try { vocab.TokenToPiece(9999); } catch (LlamaException) { innerFailures++; }
            });
            var le = Throws<LlamaException>("a failing load whose log callback fails a call", () => LlamaModel.Load(missing).Dispose());
            Llama.SetLogCallback(null);
            Check(le != null && innerFailures > 0 && le.Status == LlamaStatus.Io && le.NativeMessage.Contains(missing),
                  "the outer error is the load's: " + (le != null ? le.NativeMessage : "") + " (" + innerFailures + " inner failures)");
        }

        // A callback that removes itself: no deadlock, no more lines.
        int selfRemoving = 0;
        Llama.SetLogCallback((level, line) =>
        {
            selfRemoving++;
            Llama.SetLogCallback(null);
        });
        LoadBundled().Dispose();
        LoadBundled().Dispose();
        Check(selfRemoving == 1, "a callback may remove itself (" + selfRemoving + " calls)");

        // Another thread's callback exception stays on that thread.
        Exception onOther = null;
        Llama.SetLogCallback((level, line) => { throw new ApplicationException("other thread"); });
        var th = new Thread(() =>
        {
            try { LoadBundled().Dispose(); } catch (Exception x) { onOther = x; }
        });
        th.Start();
        th.Join();
        Llama.SetLogCallback(null);
        Check(onOther is ApplicationException, "a callback exception is rethrown on the thread that made the call");
        using (var m = LoadBundled())
            Check(m.VocabSize == 512, "this thread has nothing pending");
    }

    private static void Progress()
    {
        var fractions = new List<float>();
        using (var m = LlamaModel.Load(ModelPath, new LoadOptions { TokenizerPath = TokPath, Progress = f => { fractions.Add(f); return false; } }))
            Check(fractions.Count > 0 && fractions[fractions.Count - 1] == 1f && fractions.All(f => f >= 0 && f <= 1),
                  "progress: " + fractions.Count + " calls, ending at 1");

        var e = Throws<LlamaException>("progress returning true", () =>
            LlamaModel.Load(ModelPath, new LoadOptions { TokenizerPath = TokPath, Progress = f => true }).Dispose());
        if (e != null) Check(e.Status == LlamaStatus.Cancelled, "progress cancel: Cancelled");

        var ex = Throws<FormatException>("progress throwing", () =>
            LlamaModel.Load(ModelPath, new LoadOptions { TokenizerPath = TokPath, Progress = f => { throw new FormatException("from progress"); } }).Dispose());
        Check(ex != null && ex.Message == "from progress", "the progress callback's exception is rethrown by Load");

        using (var cts = new CancellationTokenSource())
        {
            int n = 0;
            var oce = Throws<OperationCanceledException>("Load cancelled by its token", () =>
                LlamaModel.Load(ModelPath, new LoadOptions
                {
                    TokenizerPath = TokPath,
                    CancellationToken = cts.Token,
                    Progress = f => { if (++n == 1) cts.Cancel(); return false; },
                }).Dispose());
            Check(oce != null && oce.CancellationToken == cts.Token, "OperationCanceledException with the load's token");
        }
        // A progress callback that calls the API (no library lock is held).
        int inner = -1;
        using (var m = LlamaModel.Load(ModelPath, new LoadOptions
        {
            TokenizerPath = TokPath,
            Progress = f =>
            {
                using (var v = LlamaModel.LoadVocab(TokPath)) inner = v.Tokenize("Hello", true, false).Length;
                return false;
            },
        }))
            Check(inner > 1, "the progress callback may load and tokenize");
    }
}
