// RunLlama.cs: a C# binding of runllama's C API, contract v2 (include/runllama.h).
//
// One source file, C# 7.2 at most, no Span, no unsafe code: Mono's `mcs` (6.8+), .NET Framework
// 4.5+, .NET Core and .NET 5+ all build it. Drop it into a project, put librunllama.so /
// runllama.dll / librunllama.dylib where the runtime looks for native libraries, and:
//
//     using (var model = LlamaModel.Load("model.gguf"))
//     using (var session = model.NewSession(new SessionOptions { Temperature = 0 }))
//     {
//         var detok = model.NewStreamingDetokenizer();
//         int[] prompt = model.Tokenize("Once upon a time", addBos: true, parseSpecial: false);
//         Console.Write(detok.Push(prompt));
//         foreach (int t in session.Generate(prompt, 200, cancellationToken))
//             Console.Write(detok.Push(t));
//         Console.Write(detok.Flush());
//     }
//
// Layers:
//   * `Native`: every exported function of the header as a cdecl P/Invoke (library "runllama"),
//     the constants, the structs (LayoutKind.Sequential, reserved fields spelled out, C field
//     names) and the two callback delegate types. Returned strings are IntPtr (the library owns
//     them); text and paths go in as UTF-8 byte[]; size_t is UIntPtr. Nothing here checks errors.
//   * `LlamaModel`, `LlamaSession`, `StreamingDetokenizer`, `Llama`: the managed API. Models and
//     sessions are SafeHandles (`ModelHandle`, `SessionHandle`) inside IDisposable objects.
//
// Errors. A failing call throws `LlamaException` (Status, NativeMessage, Function). The message
// is read with llama_last_error() on the same thread right after the failing call, before any
// other call of the API, so code that hops threads (async/await) gets the right message.
//
// Callbacks. The library calls the log and progress callbacks on the thread that made the API
// call, with no library lock held. An exception must never unwind through native frames, so:
//   * progress (LoadOptions.Progress, and LoadOptions.CancellationToken which is polled from the
//     same callback): an exception thrown by the delegate is caught, the load is cancelled
//     (the callback returns non-zero), and once llama_load has returned the original exception
//     is rethrown by LlamaModel.Load (stack trace preserved with ExceptionDispatchInfo).
//   * log (Llama.SetLogCallback, process-wide): an exception thrown by the delegate is caught and
//     stored for the thread it was raised on (the thread that made the API call). The binding
//     method that made that native call rethrows it once the native call has returned: the
//     native call itself completes, and what it created (a model, a session) is released first.
//     Only the first exception of a call is kept. It takes precedence over a failure status of
//     the same call. When the exception was raised during a raw `Native.*` call (which checks
//     nothing), the next binding method called on that thread throws it.
//     Lines logged while the callback runs, by API calls it makes itself, are not delivered
//     (a failing call logs, so such a callback would otherwise recurse without end).
//   * the binding keeps the delegates it hands to native code alive: one static delegate per
//     callback kind for the whole process (the log callback dispatches to the Action installed
//     last; the progress callback finds its load through a GCHandle passed as user data), so a
//     native caller can never reach a collected delegate, even while the callback is replaced.
//
// Cancellation.
//   * LlamaModel.Load(path, options) with LoadOptions.CancellationToken: the token is polled by
//     the progress callback; a cancelled load throws OperationCanceledException. A progress
//     callback returning true cancels too and throws LlamaException with Status Cancelled.
//   * LlamaSession.Step(tokens, token) and Generate(prompt, maxPositions, token): the token is
//     checked before each step and registered to llama_session_abort while a step runs, so a
//     cancellation stops a long prompt step midway. A cancelled step leaves the session as it
//     was and OperationCanceledException is thrown. When the token is cancelled just after a
//     step has finished, the step's result is returned and the abort it left pending is cleared
//     (llama_session_rewind to the current position), so a late cancellation never cancels a
//     later, unrelated step. (A raw LlamaSession.Abort() stays pending until the next step, or
//     until Reset/Rewind, as the C API says.)
//
// Lifetimes. A session keeps its model alive: `LlamaSession.Model` stays usable (tokenizer,
// EOG tests, Generate) after the LlamaModel it came from was disposed, until the session is
// disposed. Disposing in any order is safe; the finalizers of the SafeHandles free what was not
// disposed. The library joins its threads when the last model is freed.
//
// Threads. A model is thread-safe; a session is used by one thread at a time (a concurrent call
// gets LlamaException with Status Busy); LlamaSession.Abort() may be called from any thread.

using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace RunLlama
{
    /// <summary>The C API's status codes (llama_status).</summary>
    public enum LlamaStatus
    {
        Ok = 0,
        InvalidArgument = -1,
        Io = -2,
        Format = -3,
        Unsupported = -4,
        OutOfMemory = -5,
        ContextFull = -6,
        BufferTooSmall = -7,
        Cancelled = -8,
        Device = -9,
        Internal = -10,
        Busy = -11,
    }

    /// <summary>KV cache element types (LLAMA_KV_*).</summary>
    public enum KvType
    {
        F16 = 0,
        F32 = 1,
        Q8_0 = 2,
        Q4_0 = 3,
        Q8_0_Q4_0 = 4,
    }

    /// <summary>Devices (LLAMA_DEVICE_*).</summary>
    public enum LlamaDevice
    {
        Cpu = 0,
        Cuda = 1,
    }

    /// <summary>The raw C API: constants, structs, callbacks and P/Invoke declarations. No checks.</summary>
    public static class Native
    {
        public const string Library = "runllama";

        public const int LLAMA_API_VERSION = 2;
        public const int LLAMA_DEVICE_CPU = 0;
        public const int LLAMA_DEVICE_CUDA = 1;
        public const int LLAMA_BF16_PRODUCTS_F32 = 0;
        public const int LLAMA_BF16_PRODUCTS_ROUNDED = 1;
        public const int LLAMA_KV_F16 = 0;
        public const int LLAMA_KV_F32 = 1;
        public const int LLAMA_KV_Q8_0 = 2;
        public const int LLAMA_KV_Q4_0 = 3;
        public const int LLAMA_KV_Q8_0_Q4_0 = 4;
        public const uint LLAMA_TOKENIZE_ADD_BOS = 1;
        public const uint LLAMA_TOKENIZE_PARSE_SPECIAL = 2;
        public const uint LLAMA_DETOKENIZE_SKIP_SPECIAL = 1;
        public const uint LLAMA_CHAT_ADD_ASSISTANT = 1;

        public const int LLAMA_OK = 0;
        public const int LLAMA_ERR_INVALID_ARGUMENT = -1;
        public const int LLAMA_ERR_IO = -2;
        public const int LLAMA_ERR_FORMAT = -3;
        public const int LLAMA_ERR_UNSUPPORTED = -4;
        public const int LLAMA_ERR_OUT_OF_MEMORY = -5;
        public const int LLAMA_ERR_CONTEXT_FULL = -6;
        public const int LLAMA_ERR_BUFFER_TOO_SMALL = -7;
        public const int LLAMA_ERR_CANCELLED = -8;
        public const int LLAMA_ERR_DEVICE = -9;
        public const int LLAMA_ERR_INTERNAL = -10;
        public const int LLAMA_ERR_BUSY = -11;

        /// <summary>llama_log_fn: whole log lines, level 0 = debug .. 3 = error. Must not throw.</summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate void LlamaLogFn(int level, IntPtr line, IntPtr user_data);

        /// <summary>llama_progress_fn: fraction in [0,1]; return non-zero to cancel. Must not throw.</summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int LlamaProgressFn(float fraction, IntPtr user_data);

        /// <summary>llama_load_params (72 bytes on 64-bit targets). Initialize with llama_load_params_init.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct LlamaLoadParams
        {
            public uint size;
            public int version;
            public IntPtr config_path;      // const char*, UTF-8, NULL = detect
            public IntPtr tokenizer_path;   // const char*, UTF-8, NULL = detect
            public int device;
            public int n_threads;
            public int use_mmap;
            public uint reserved0;
            public IntPtr progress;         // llama_progress_fn
            public IntPtr progress_user_data;
            public int device_index;
            public uint reserved1;
            public int bf16_products;       // LLAMA_BF16_PRODUCTS_*
            public uint reserved2;
        }

        /// <summary>llama_session_params (40 bytes). Initialize with llama_session_params_init.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct LlamaSessionParams
        {
            public uint size;
            public uint n_ctx;
            public float temperature;
            public int top_k;
            public float top_p;
            public float repeat_penalty;
            public ulong seed;
            public int kv_type;
            public uint reserved0;
        }

        /// <summary>llama_model_hparams (56 bytes); set `size` before llama_model_get_hparams.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct LlamaModelHparams
        {
            public uint size;
            public int version;
            public int n_vocab;
            public int n_embd;
            public int n_layer;
            public int n_head;
            public int n_head_kv;
            public int n_ff;
            public int n_ctx_train;
            public float rope_theta;
            public float norm_eps;
            public uint reserved0;
            public ulong n_params;
        }

        /// <summary>llama_tensor_info; set `size` before llama_model_tensor.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct LlamaTensorInfo
        {
            public uint size;
            public int n_dims;
            public IntPtr name;   // const char*, valid while the model lives
            public IntPtr dtype;  // const char*, static
            [MarshalAs(UnmanagedType.ByValArray, SizeConst = 8)]
            public long[] shape;
        }

        /// <summary>llama_chat_message: two NUL-terminated UTF-8 strings.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct LlamaChatMessage
        {
            public IntPtr role;
            public IntPtr content;
        }

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern uint llama_api_version();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern IntPtr llama_version();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern IntPtr llama_system_info();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern IntPtr llama_last_error();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern IntPtr llama_status_str(int s);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern void llama_set_log_callback(LlamaLogFn callback, IntPtr user_data);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern void llama_load_params_init(ref LlamaLoadParams p, UIntPtr size);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern void llama_session_params_init(ref LlamaSessionParams p, UIntPtr size);

        /// <param name="path">NUL-terminated UTF-8.</param>
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_load(byte[] path, ref LlamaLoadParams p, out ModelHandle out_model);

        /// <param name="tokenizer_path">NUL-terminated UTF-8.</param>
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_load_vocab(byte[] tokenizer_path, int version, out ModelHandle out_model);

        /// <summary>Use ModelHandle.Dispose(); the raw form is for handles obtained elsewhere.</summary>
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern void llama_model_free(IntPtr model);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_model_n_vocab(ModelHandle model);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_model_n_ctx_train(ModelHandle model);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_token_bos(ModelHandle model);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_token_eos(ModelHandle model);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_token_is_eog(ModelHandle model, int t);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_model_describe(ModelHandle model, byte[] @out, UIntPtr capacity, out UIntPtr out_len);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_model_n_tensors(ModelHandle model);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_model_tensor(ModelHandle model, int index, ref LlamaTensorInfo @out);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_model_get_hparams(ModelHandle model, ref LlamaModelHparams @out);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_tokenize(ModelHandle model, byte[] text, UIntPtr text_len, uint flags,
                                                int[] out_tokens, UIntPtr capacity, out UIntPtr out_n_tokens);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_detokenize(ModelHandle model, int[] tokens, UIntPtr n_tokens, uint flags,
                                                  byte[] @out, UIntPtr capacity, out UIntPtr out_len);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_token_to_piece(ModelHandle model, int t, byte[] @out, UIntPtr capacity, out UIntPtr out_len);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_chat_tokenize(ModelHandle model, LlamaChatMessage[] messages, UIntPtr n_messages, uint flags,
                                                     int[] out_tokens, UIntPtr capacity, out UIntPtr out_n_tokens);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_session_new(ModelHandle model, ref LlamaSessionParams p, out SessionHandle out_session);

        /// <summary>Use SessionHandle.Dispose(); the raw form is for handles obtained elsewhere.</summary>
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern void llama_session_free(IntPtr session);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_session_reset(SessionHandle session);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern uint llama_session_n_ctx(SessionHandle session);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern uint llama_session_position(SessionHandle session);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_session_rewind(SessionHandle session, uint position);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern void llama_session_abort(SessionHandle session);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern int llama_step(SessionHandle session, int[] tokens, UIntPtr n_tokens, out int out_next);

        /// <summary>const float*: n_vocab floats owned by the session, or NULL.</summary>
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        public static extern IntPtr llama_session_logits(SessionHandle session);
    }

    /// <summary>An owned llama_model* (or, for a session's view of its model, a reference on another ModelHandle).</summary>
    public sealed class ModelHandle : SafeHandle
    {
        private ModelHandle parent;

        public ModelHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        /// <summary>A second handle on the same model that keeps this one from being freed until it is released.</summary>
        internal ModelHandle NewReference()
        {
            bool added = false;
            DangerousAddRef(ref added);
            var child = new ModelHandle();
            child.parent = this;
            child.SetHandle(handle);
            return child;
        }

        protected override bool ReleaseHandle()
        {
            if (parent != null)
                parent.DangerousRelease();
            else
                Native.llama_model_free(handle);
            return true;
        }
    }

    /// <summary>An owned llama_session*.</summary>
    public sealed class SessionHandle : SafeHandle
    {
        public SessionHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            Native.llama_session_free(handle);
            return true;
        }
    }

    /// <summary>A failed call of the C API: its status, llama_last_error()'s message and the function.</summary>
    public class LlamaException : Exception
    {
        public LlamaStatus Status { get; private set; }
        public string NativeMessage { get; private set; }
        public string Function { get; private set; }

        public LlamaException(string function, LlamaStatus status, string nativeMessage)
            : base(function + " failed: " + Llama.StatusName(status) + ": " + nativeMessage)
        {
            Function = function;
            Status = status;
            NativeMessage = nativeMessage;
        }
    }

    /// <summary>Process-wide functions: version checks, library information, the log callback.</summary>
    public static class Llama
    {
        private static readonly object initLock = new object();
        private static volatile bool checkedOk;
        private static Exception initError;

        // The one log delegate native code ever sees (kept alive by this static field).
        private static readonly Native.LlamaLogFn logThunk = OnLog;
        private static readonly object logLock = new object();
        private static volatile Action<int, string> logCallback;

        [ThreadStatic] private static Exception pendingCallbackException;

        /// <summary>Throws unless the native library is loadable and implements contract v2.</summary>
        public static void EnsureLoaded()
        {
            if (checkedOk) return;
            lock (initLock)
            {
                if (checkedOk) return;
                if (initError == null)
                {
                    try
                    {
                        // A newer library keeps serving this binding (structs are size-versioned);
                        // an older one lacks what it calls.
                        uint v = Native.llama_api_version();
                        if (v < (uint)Native.LLAMA_API_VERSION)
                            initError = new NotSupportedException(
                                "the runllama library implements C API version " + v + ", this binding (RunLlama.cs) needs version " +
                                Native.LLAMA_API_VERSION + " or later: use a library at least as new as include/RunLlama.cs");
                    }
                    catch (DllNotFoundException e)
                    {
                        initError = new DllNotFoundException(
                            "the native runllama library (librunllama.so / runllama.dll / librunllama.dylib) was not found: " + e.Message, e);
                    }
                    catch (EntryPointNotFoundException e)
                    {
                        initError = new NotSupportedException("the runllama library has no llama_api_version: " + e.Message, e);
                    }
                }
                if (initError != null) throw initError;
                checkedOk = true;
            }
        }

        /// <summary>llama_api_version() of the loaded library (no version check).</summary>
        public static int ApiVersion { get { return (int)Native.llama_api_version(); } }

        /// <summary>The library version, e.g. "0.1.0".</summary>
        public static string Version { get { EnsureLoaded(); return Utf8.FromNative(Native.llama_version()); } }

        /// <summary>What this build and CPU use, e.g. "AVX2=1 ... kernels=avx2".</summary>
        public static string SystemInfo { get { EnsureLoaded(); return Utf8.FromNative(Native.llama_system_info()); } }

        /// <summary>llama_status_str as a managed string.</summary>
        public static string StatusName(LlamaStatus status)
        {
            try
            {
                return Utf8.FromNative(Native.llama_status_str((int)status));
            }
            catch (Exception)
            {
                return status.ToString();
            }
        }

        /// <summary>
        /// Installs a process-wide log callback (level 0 = debug .. 3 = error, one line without its
        /// newline), or removes it (null). The callback runs on the thread that made the API call.
        /// An exception it throws is rethrown by the binding method that made that call, once the
        /// native call has returned (see the top of this file).
        /// </summary>
        public static void SetLogCallback(Action<int, string> callback)
        {
            EnsureLoaded();
            lock (logLock)
            {
                if (callback != null)
                {
                    logCallback = callback;
                    Native.llama_set_log_callback(logThunk, IntPtr.Zero);
                }
                else
                {
                    Native.llama_set_log_callback(null, IntPtr.Zero);
                    logCallback = null;
                }
            }
            ThrowPendingCallbackException();
        }

        [ThreadStatic] private static bool inLogCallback;

        private static void OnLog(int level, IntPtr line, IntPtr userData)
        {
            // Lines logged by API calls the callback itself makes are dropped: a failing call logs,
            // so a callback that makes one would otherwise recurse without end.
            if (inLogCallback) return;
            inLogCallback = true;
            try
            {
                Action<int, string> cb = logCallback;
                if (cb != null) cb(level, Utf8.FromNative(line));
            }
            catch (Exception e)
            {
                if (pendingCallbackException == null) pendingCallbackException = e;
            }
            finally
            {
                inLogCallback = false;
            }
        }

        /// <summary>Returns (and forgets) the exception a callback raised on this thread, or null.</summary>
        internal static Exception TakePendingCallbackException()
        {
            Exception e = pendingCallbackException;
            pendingCallbackException = null;
            return e;
        }

        /// <summary>Rethrows (and forgets) an exception a callback raised on this thread, if any.</summary>
        internal static void ThrowPendingCallbackException()
        {
            Exception e = pendingCallbackException;
            if (e != null)
            {
                pendingCallbackException = null;
                ExceptionDispatchInfo.Capture(e).Throw();
            }
        }

        /// <summary>llama_last_error() of this thread, copied.</summary>
        internal static string LastError()
        {
            return Utf8.FromNative(Native.llama_last_error());
        }

        /// <summary>After a native call: throw a pending callback exception (releasing `created` first), then a LlamaException for a failure.</summary>
        internal static void Check(int status, string function, IDisposable created = null)
        {
            // Read the message first: it is valid until the next API call on this thread.
            string message = status != Native.LLAMA_OK ? LastError() : null;
            if (pendingCallbackException != null)
            {
                if (created != null) created.Dispose();
                ThrowPendingCallbackException();
            }
            if (status != Native.LLAMA_OK)
            {
                if (created != null) created.Dispose();
                throw new LlamaException(function, (LlamaStatus)status, message);
            }
        }

        /// <summary>After a native call that reports no status.</summary>
        internal static void AfterCall()
        {
            if (pendingCallbackException != null) ThrowPendingCallbackException();
        }
    }

    /// <summary>UTF-8 helpers (no Marshal.PtrToStringUTF8: .NET Framework lacks it).</summary>
    public static class Utf8
    {
        private static readonly UTF8Encoding Encoder8 = new UTF8Encoding(false, false);

        /// <summary>A copy of the NUL-terminated UTF-8 string at `p` ("" for NULL).</summary>
        public static string FromNative(IntPtr p)
        {
            if (p == IntPtr.Zero) return "";
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            if (n == 0) return "";
            var bytes = new byte[n];
            Marshal.Copy(p, bytes, 0, n);
            return Encoder8.GetString(bytes);
        }

        /// <summary>UTF-8 bytes of `s` followed by a NUL (a C string).</summary>
        public static byte[] ToNative(string s)
        {
            if (s == null) throw new ArgumentNullException("s");
            if (s.IndexOf('\0') >= 0) throw new ArgumentException("the string contains a NUL character", "s");
            int n = Encoder8.GetByteCount(s);
            var bytes = new byte[n + 1];
            Encoder8.GetBytes(s, 0, s.Length, bytes, 0);
            return bytes;
        }

        /// <summary>UTF-8 bytes of `s`, no terminator.</summary>
        public static byte[] GetBytes(string s)
        {
            return Encoder8.GetBytes(s);
        }

        /// <summary>Decodes UTF-8 (invalid bytes become U+FFFD).</summary>
        public static string GetString(byte[] b)
        {
            return Encoder8.GetString(b);
        }

        /// <summary>A NUL-terminated UTF-8 copy of `s` in unmanaged memory (free with Marshal.FreeHGlobal); IntPtr.Zero for null.</summary>
        internal static IntPtr Alloc(string s)
        {
            if (s == null) return IntPtr.Zero;
            byte[] b = ToNative(s);
            IntPtr p = Marshal.AllocHGlobal(b.Length);
            Marshal.Copy(b, 0, p, b.Length);
            return p;
        }
    }

    /// <summary>Options of LlamaModel.Load; null members keep the library's defaults.</summary>
    public sealed class LoadOptions
    {
        /// <summary>0 = detect, 2 = LLaMA 2, 3 = LLaMA 3.</summary>
        public int? Version;
        /// <summary>config.json / MindFormers yaml; null = detect.</summary>
        public string ConfigPath;
        /// <summary>tokenizer.model, tokenizer.json or llama2.c tokenizer.bin; null = detect.</summary>
        public string TokenizerPath;
        public LlamaDevice? Device;
        public int? DeviceIndex;
        /// <summary>0 = one per core.</summary>
        public int? Threads;
        public bool? UseMmap;
        /// <summary>Called with the fraction loaded; return true to cancel (LlamaException, Status Cancelled).</summary>
        public Func<float, bool> Progress;
        /// <summary>Cancels the load (OperationCanceledException).</summary>
        public CancellationToken CancellationToken;
    }

    /// <summary>Options of LlamaModel.NewSession; null members keep the library's defaults.</summary>
    public sealed class SessionOptions
    {
        /// <summary>0 = min(training context, 4096).</summary>
        public int? ContextLength;
        /// <summary>0 = greedy.</summary>
        public float? Temperature;
        public int? TopK;
        public float? TopP;
        public float? RepeatPenalty;
        public ulong? Seed;
        public KvType? KvType;
    }

    /// <summary>One chat message: the binding makes (and frees) the native UTF-8 strings.</summary>
    public sealed class ChatMessage
    {
        public string Role;
        public string Content;

        public ChatMessage(string role, string content)
        {
            Role = role;
            Content = content;
        }
    }

    /// <summary>One stored tensor (llama_model_tensor).</summary>
    public sealed class TensorInfo
    {
        public string Name;
        public string DType;
        public long[] Shape;
    }

    /// <summary>A loaded model (weights + tokenizer), or a vocabulary alone. Thread-safe.</summary>
    public sealed class LlamaModel : IDisposable
    {
        private readonly ModelHandle handle;
        private readonly bool ownsHandle;

        private LlamaModel(ModelHandle handle, bool ownsHandle)
        {
            this.handle = handle;
            this.ownsHandle = ownsHandle;
        }

        private volatile bool disposed;

        /// <summary>The native handle (for Native.* calls).</summary>
        public ModelHandle Handle { get { return handle; } }

        // The handle for a call; ObjectDisposedException once disposed (checked here because
        // Mono's SafeHandle still marshals a disposed handle while other references keep it open).
        private ModelHandle H
        {
            get
            {
                if (disposed || handle.IsClosed) throw new ObjectDisposedException("LlamaModel");
                return handle;
            }
        }

        internal static LlamaModel View(ModelHandle h)
        {
            return new LlamaModel(h, false);
        }

        // Per-load state reached from the static progress delegate through a GCHandle.
        private sealed class LoadState
        {
            public Func<float, bool> Progress;
            public CancellationToken Token;
            public Exception Error;
            public bool CancelledByProgress;
        }

        private static readonly Native.LlamaProgressFn progressThunk = OnProgress;

        private static int OnProgress(float fraction, IntPtr userData)
        {
            LoadState st = null;
            try
            {
                st = (LoadState)GCHandle.FromIntPtr(userData).Target;
                if (st.Token.IsCancellationRequested) return 1;
                if (st.Progress != null && st.Progress(fraction))
                {
                    st.CancelledByProgress = true;
                    return 1;
                }
                return 0;
            }
            catch (Exception e)
            {
                if (st != null && st.Error == null) st.Error = e;
                return 1;
            }
        }

        /// <summary>Loads a model file (GGUF, safetensors file or directory, llama2.c .bin, MindSpore .ckpt).</summary>
        public static LlamaModel Load(string path, LoadOptions options = null)
        {
            if (path == null) throw new ArgumentNullException("path");
            Llama.EnsureLoaded();
            if (options == null) options = new LoadOptions();
            options.CancellationToken.ThrowIfCancellationRequested();
            byte[] cpath = Utf8.ToNative(path);
            var p = new Native.LlamaLoadParams();
            Native.llama_load_params_init(ref p, (UIntPtr)(uint)Marshal.SizeOf(typeof(Native.LlamaLoadParams)));
            if (options.Version.HasValue) p.version = options.Version.Value;
            if (options.Device.HasValue) p.device = (int)options.Device.Value;
            if (options.DeviceIndex.HasValue) p.device_index = options.DeviceIndex.Value;
            if (options.Threads.HasValue) p.n_threads = options.Threads.Value;
            if (options.UseMmap.HasValue) p.use_mmap = options.UseMmap.Value ? 1 : 0;

            var state = new LoadState { Progress = options.Progress, Token = options.CancellationToken };
            GCHandle gch = default(GCHandle);
            ModelHandle h = null;
            int status;
            try
            {
                p.config_path = Utf8.Alloc(options.ConfigPath);
                p.tokenizer_path = Utf8.Alloc(options.TokenizerPath);
                if (state.Progress != null || state.Token.CanBeCanceled)
                {
                    gch = GCHandle.Alloc(state);
                    p.progress = Marshal.GetFunctionPointerForDelegate(progressThunk);
                    p.progress_user_data = GCHandle.ToIntPtr(gch);
                }
                status = Native.llama_load(cpath, ref p, out h);
                // In this order: the message (valid until the next call), then the progress
                // callback's exception, a log callback's exception, cancellation, failure.
                string message = status != Native.LLAMA_OK ? Llama.LastError() : null;
                Exception callbackError = state.Error;
                if (callbackError == null) callbackError = Llama.TakePendingCallbackException();
                if (callbackError != null || status != Native.LLAMA_OK)
                {
                    if (h != null) h.Dispose();
                    if (callbackError != null) ExceptionDispatchInfo.Capture(callbackError).Throw();
                    if (status == Native.LLAMA_ERR_CANCELLED && !state.CancelledByProgress && state.Token.IsCancellationRequested)
                        throw new OperationCanceledException(state.Token);
                    throw new LlamaException("llama_load", (LlamaStatus)status, message);
                }
            }
            finally
            {
                if (gch.IsAllocated) gch.Free();
                if (p.config_path != IntPtr.Zero) Marshal.FreeHGlobal(p.config_path);
                if (p.tokenizer_path != IntPtr.Zero) Marshal.FreeHGlobal(p.tokenizer_path);
            }
            return new LlamaModel(h, true);
        }

        /// <summary>Loads a tokenizer file alone (a vocabulary-only model: tokenizes, cannot make sessions).</summary>
        public static LlamaModel LoadVocab(string tokenizerPath, int version = 0)
        {
            if (tokenizerPath == null) throw new ArgumentNullException("tokenizerPath");
            Llama.EnsureLoaded();
            ModelHandle h;
            int status = Native.llama_load_vocab(Utf8.ToNative(tokenizerPath), version, out h);
            Llama.Check(status, "llama_load_vocab", h);
            return new LlamaModel(h, true);
        }

        public int VocabSize { get { return Int(Native.llama_model_n_vocab(H), "llama_model_n_vocab"); } }
        public int TrainingContextLength { get { return Int(Native.llama_model_n_ctx_train(H), "llama_model_n_ctx_train"); } }
        public int Bos { get { int t = Native.llama_token_bos(H); Llama.AfterCall(); return t; } }
        public int Eos { get { int t = Native.llama_token_eos(H); Llama.AfterCall(); return t; } }

        /// <summary>Whether `token` ends generation (EOS, &lt;|eot_id|&gt;, &lt;|end_of_text|&gt;).</summary>
        public bool IsEndOfGeneration(int token)
        {
            int r = Native.llama_token_is_eog(H, token);
            Llama.AfterCall();
            return r != 0;
        }

        private static int Int(int value, string function)
        {
            // These return a negative status for a NULL model (impossible through a SafeHandle).
            if (value < 0) Llama.Check(value, function);
            Llama.AfterCall();
            return value;
        }

        /// <summary>llama_model_describe's JSON.</summary>
        public string Describe()
        {
            ModelHandle h = H;
            byte[] json = TwoCall("llama_model_describe", 4096,
                                  (byte[] b, UIntPtr cap, out UIntPtr n) => Native.llama_model_describe(h, b, cap, out n));
            return Encoding.UTF8.GetString(json);
        }

        /// <summary>The resolved hyper-parameters.</summary>
        public Native.LlamaModelHparams GetHparams()
        {
            var hp = new Native.LlamaModelHparams();
            hp.size = (uint)Marshal.SizeOf(typeof(Native.LlamaModelHparams));
            Llama.Check(Native.llama_model_get_hparams(H, ref hp), "llama_model_get_hparams");
            return hp;
        }

        /// <summary>The stored tensors (name, dtype, shape).</summary>
        public IList<TensorInfo> GetTensors()
        {
            int n = Int(Native.llama_model_n_tensors(H), "llama_model_n_tensors");
            var list = new List<TensorInfo>(n);
            for (int i = 0; i < n; i++)
            {
                var ti = new Native.LlamaTensorInfo();
                ti.size = (uint)Marshal.SizeOf(typeof(Native.LlamaTensorInfo));
                ti.shape = new long[8];
                Llama.Check(Native.llama_model_tensor(H, i, ref ti), "llama_model_tensor");
                var shape = new long[Math.Max(0, Math.Min(ti.n_dims, 8))];
                Array.Copy(ti.shape, shape, shape.Length);
                list.Add(new TensorInfo { Name = Utf8.FromNative(ti.name), DType = Utf8.FromNative(ti.dtype), Shape = shape });
            }
            return list;
        }

        /// <summary>Tokenizes UTF-8 text (two-call pattern inside).</summary>
        public int[] Tokenize(string text, bool addBos, bool parseSpecial)
        {
            if (text == null) throw new ArgumentNullException("text");
            return TokenizeUtf8(Utf8.GetBytes(text), addBos, parseSpecial);
        }

        /// <summary>Tokenizes UTF-8 bytes.</summary>
        public int[] TokenizeUtf8(byte[] utf8, bool addBos, bool parseSpecial)
        {
            if (utf8 == null) throw new ArgumentNullException("utf8");
            uint flags = (addBos ? Native.LLAMA_TOKENIZE_ADD_BOS : 0) | (parseSpecial ? Native.LLAMA_TOKENIZE_PARSE_SPECIAL : 0);
            ModelHandle h = H;
            var len = (UIntPtr)(uint)utf8.Length;
            // The first buffer fits whatever the tokenizer makes (byte fallback: at most one id per
            // byte, plus BOS and a prefix), so one call does it.
            return TwoCall("llama_tokenize", utf8.Length + 4,
                           (int[] b, UIntPtr cap, out UIntPtr n) => Native.llama_tokenize(h, utf8, len, flags, b, cap, out n));
        }

        /// <summary>The model's chat prompt as ids (LLaMA 2 [INST] or LLaMA 3 headers).</summary>
        public int[] ChatTokenize(IList<ChatMessage> messages, bool addAssistant)
        {
            if (messages == null) throw new ArgumentNullException("messages");
            var native = new Native.LlamaChatMessage[messages.Count];
            try
            {
                for (int i = 0; i < messages.Count; i++)
                {
                    ChatMessage m = messages[i];
                    if (m == null || m.Role == null || m.Content == null)
                        throw new ArgumentException("messages[" + i + "]: null message, role or content", "messages");
                    native[i].role = Utf8.Alloc(m.Role);
                    native[i].content = Utf8.Alloc(m.Content);
                }
                uint flags = addAssistant ? Native.LLAMA_CHAT_ADD_ASSISTANT : 0;
                ModelHandle h = H;
                var count = (UIntPtr)(uint)native.Length;
                return TwoCall("llama_chat_tokenize", 256,
                               (int[] b, UIntPtr cap, out UIntPtr n) => Native.llama_chat_tokenize(h, native, count, flags, b, cap, out n));
            }
            finally
            {
                for (int i = 0; i < native.Length; i++)
                {
                    if (native[i].role != IntPtr.Zero) Marshal.FreeHGlobal(native[i].role);
                    if (native[i].content != IntPtr.Zero) Marshal.FreeHGlobal(native[i].content);
                }
            }
        }

        /// <summary>llama_detokenize as raw bytes (may end inside a UTF-8 character).</summary>
        public byte[] DetokenizeUtf8(int[] tokens, bool skipSpecial = false)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            uint flags = skipSpecial ? Native.LLAMA_DETOKENIZE_SKIP_SPECIAL : 0;
            ModelHandle h = H;
            var count = (UIntPtr)(uint)tokens.Length;
            return TwoCall("llama_detokenize", checked(tokens.Length * 8 + 16),
                           (byte[] b, UIntPtr cap, out UIntPtr n) => Native.llama_detokenize(h, tokens, count, flags, b, cap, out n));
        }

        /// <summary>llama_detokenize as a string (invalid UTF-8 becomes U+FFFD).</summary>
        public string Detokenize(int[] tokens, bool skipSpecial = false)
        {
            return Utf8.GetString(DetokenizeUtf8(tokens, skipSpecial));
        }

        /// <summary>The raw bytes of one token (maybe part of a UTF-8 character).</summary>
        public byte[] TokenToPiece(int token)
        {
            ModelHandle h = H;
            return TwoCall("llama_token_to_piece", 64,
                           (byte[] b, UIntPtr cap, out UIntPtr n) => Native.llama_token_to_piece(h, token, b, cap, out n));
        }

        /// <summary>A new streaming detokenizer for this model.</summary>
        public StreamingDetokenizer NewStreamingDetokenizer(bool skipSpecial = false)
        {
            return new StreamingDetokenizer(this, skipSpecial);
        }

        /// <summary>Starts a session (KV cache + sampler). It keeps the model alive.</summary>
        public LlamaSession NewSession(SessionOptions options = null)
        {
            if (options == null) options = new SessionOptions();
            var p = new Native.LlamaSessionParams();
            Native.llama_session_params_init(ref p, (UIntPtr)(uint)Marshal.SizeOf(typeof(Native.LlamaSessionParams)));
            if (options.ContextLength.HasValue)
            {
                if (options.ContextLength.Value < 0) throw new ArgumentOutOfRangeException("options", "ContextLength < 0");
                p.n_ctx = (uint)options.ContextLength.Value;
            }
            if (options.Temperature.HasValue) p.temperature = options.Temperature.Value;
            if (options.TopK.HasValue) p.top_k = options.TopK.Value;
            if (options.TopP.HasValue) p.top_p = options.TopP.Value;
            if (options.RepeatPenalty.HasValue) p.repeat_penalty = options.RepeatPenalty.Value;
            if (options.Seed.HasValue) p.seed = options.Seed.Value;
            if (options.KvType.HasValue) p.kv_type = (int)options.KvType.Value;
            SessionHandle sh;
            int st = Native.llama_session_new(H, ref p, out sh);
            Llama.Check(st, "llama_session_new", sh);
            ModelHandle reference = null;
            try
            {
                reference = H.NewReference();
            }
            finally
            {
                if (reference == null) sh.Dispose();
            }
            return new LlamaSession(sh, reference);
        }

        /// <summary>One call of a two-call-pattern function: fill `buffer` (null when `capacity` is 0), set `length` to the size of the result.</summary>
        internal delegate int TwoCallFn<T>(T[] buffer, UIntPtr capacity, out UIntPtr length);

        /// <summary>
        /// Diagnostics for the binding's tests, off by default: while set on a thread, the first
        /// call of every two-call function made on that thread is a size query (capacity 0, no
        /// buffer), so every non-empty result comes from the second call. Internal; BindingTest
        /// sets it through reflection.
        /// </summary>
        [ThreadStatic] internal static bool ForceSizeQuery;

        /// <summary>
        /// The C API's two-call pattern, for all of its functions here: a first call with a
        /// buffer of `firstCapacity` (a guess that fits the usual results, so that one call does
        /// it and the library logs no LLAMA_ERR_BUFFER_TOO_SMALL line); when that is too small, a
        /// second call with a buffer of exactly the size the first one reported. Returns the
        /// result, exactly as long as the library said.
        /// </summary>
        internal static T[] TwoCall<T>(string function, int firstCapacity, TwoCallFn<T> call)
        {
            T[] buf = ForceSizeQuery || firstCapacity <= 0 ? null : new T[firstCapacity];
            UIntPtr n;
            int st = call(buf, (UIntPtr)(uint)(buf == null ? 0 : buf.Length), out n);
            if (st == Native.LLAMA_ERR_BUFFER_TOO_SMALL)
            {
                buf = new T[checked((int)n.ToUInt64())];
                st = call(buf, (UIntPtr)(uint)buf.Length, out n);
            }
            Llama.Check(st, function);
            int len = checked((int)n.ToUInt64());
            int have = buf == null ? 0 : buf.Length;
            if (len > have)
                throw new LlamaException(function, LlamaStatus.Internal, "reported " + len + " elements for a buffer of " + have);
            if (len == have && buf != null) return buf;
            var r = new T[len];
            if (len > 0) Array.Copy(buf, r, len);
            return r;
        }

        /// <summary>Releases the caller's reference (sessions keep the native model alive).</summary>
        public void Dispose()
        {
            if (ownsHandle)
            {
                disposed = true;
                handle.Dispose();
            }
        }
    }

    /// <summary>A session: KV cache + sampler. One thread at a time; Abort from any thread.</summary>
    public sealed class LlamaSession : IDisposable
    {
        private readonly SessionHandle handle;
        private readonly ModelHandle modelRef;
        private readonly LlamaModel model;

        internal LlamaSession(SessionHandle handle, ModelHandle modelRef)
        {
            this.handle = handle;
            this.modelRef = modelRef;
            model = LlamaModel.View(modelRef);
        }

        private volatile bool disposed;

        /// <summary>The native handle (for Native.* calls).</summary>
        public SessionHandle Handle { get { return handle; } }

        private SessionHandle H
        {
            get
            {
                if (disposed || handle.IsClosed) throw new ObjectDisposedException("LlamaSession");
                return handle;
            }
        }

        /// <summary>The session's model; usable until the session is disposed, even after the LlamaModel it came from was.</summary>
        public LlamaModel Model { get { return model; } }

        /// <summary>The context length in tokens.</summary>
        public int ContextLength { get { uint n = Native.llama_session_n_ctx(H); Llama.AfterCall(); return (int)n; } }

        /// <summary>Tokens in the KV cache.</summary>
        public int Position { get { uint n = Native.llama_session_position(H); Llama.AfterCall(); return (int)n; } }

        /// <summary>Appends `tokens` (one batched pass) and returns the sampled next token (not appended).</summary>
        public int Step(int[] tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            int next;
            int st = Native.llama_step(H, tokens, (UIntPtr)(uint)tokens.Length, out next);
            Llama.Check(st, "llama_step");
            return next;
        }

        /// <summary>Step(new[] { token }).</summary>
        public int Step(int token)
        {
            return Step(new[] { token });
        }

        /// <summary>
        /// Step with cancellation: throws OperationCanceledException when `cancellationToken` is
        /// cancelled before or during the step (then the session is unchanged). A cancellation that
        /// arrives after the step finished does not lose its result; its pending abort is cleared.
        /// </summary>
        public int Step(int[] tokens, CancellationToken cancellationToken)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            cancellationToken.ThrowIfCancellationRequested();
            if (!cancellationToken.CanBeCanceled) return Step(tokens);
            int next, st;
            string message = null;
            using (cancellationToken.Register(AbortCallback, this))
            {
                st = Native.llama_step(H, tokens, (UIntPtr)(uint)tokens.Length, out next);
                if (st != Native.LLAMA_OK) message = Llama.LastError();
            }
            // The registration is gone (Dispose waited for a running callback): an abort that
            // landed after the step finished is still pending; forget it.
            bool cancelled = cancellationToken.IsCancellationRequested;
            if (cancelled && st != Native.LLAMA_ERR_CANCELLED)
            {
                Native.llama_session_rewind(H, Native.llama_session_position(H));
            }
            Llama.AfterCall();
            if (st == Native.LLAMA_ERR_CANCELLED && cancelled) throw new OperationCanceledException(cancellationToken);
            if (st != Native.LLAMA_OK) throw new LlamaException("llama_step", (LlamaStatus)st, message);
            return next;
        }

        private static readonly Action<object> AbortCallback = AbortFromToken;

        private static void AbortFromToken(object state)
        {
            // Straight to the library: Abort() would rethrow, on the cancelling thread, a log
            // callback exception that thread left pending from unrelated work.
            try
            {
                Native.llama_session_abort(((LlamaSession)state).H);
            }
            catch (ObjectDisposedException)
            {
                // Disposed meanwhile: nothing runs any more.
            }
        }

        /// <summary>
        /// Greedy/sampled generation as run_model does it: steps `prompt` (at least one token), then
        /// yields each sampled token and steps it, until an end-of-generation token is sampled (not
        /// yielded) or the position reaches `maxPositions` (prompt included; 0 or more than the
        /// context = the context length). Cancellation throws OperationCanceledException from
        /// MoveNext (session unchanged by the cancelled step). Steps run lazily, as the caller enumerates.
        /// </summary>
        public IEnumerable<int> Generate(int[] prompt, int maxPositions = 0, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (prompt == null) throw new ArgumentNullException("prompt");
            if (prompt.Length == 0) throw new ArgumentException("the prompt needs at least one token (e.g. BOS)", "prompt");
            return GenerateCore((int[])prompt.Clone(), maxPositions, cancellationToken);
        }

        private IEnumerable<int> GenerateCore(int[] prompt, int maxPositions, CancellationToken cancellationToken)
        {
            int n_ctx = ContextLength;
            int limit = maxPositions <= 0 || maxPositions > n_ctx ? n_ctx : maxPositions;
            int next = Step(prompt, cancellationToken);
            var one = new int[1];
            while (!model.IsEndOfGeneration(next))
            {
                yield return next;
                if (Position >= limit) yield break;
                one[0] = next;
                next = Step(one, cancellationToken);
            }
        }

        /// <summary>Empties the KV cache, restarts the sampler from its seed, clears a pending abort.</summary>
        public void Reset()
        {
            Llama.Check(Native.llama_session_reset(H), "llama_session_reset");
        }

        /// <summary>Forgets positions >= `position`; clears a pending abort.</summary>
        public void Rewind(int position)
        {
            if (position < 0) throw new ArgumentOutOfRangeException("position");
            Llama.Check(Native.llama_session_rewind(H, (uint)position), "llama_session_rewind");
        }

        /// <summary>From any thread: cancels the running step or, if none runs, the next one.</summary>
        public void Abort()
        {
            Native.llama_session_abort(H);
            Llama.AfterCall();
        }

        /// <summary>A copy of the last step's logits (n_vocab floats), or null before the first step.</summary>
        public float[] GetLogits()
        {
            int n = model.VocabSize;
            IntPtr p = Native.llama_session_logits(H);
            Llama.AfterCall();
            if (p == IntPtr.Zero) return null;
            var r = new float[n];
            Marshal.Copy(p, r, 0, n);
            return r;
        }

        public void Dispose()
        {
            disposed = true;
            handle.Dispose();
            modelRef.Dispose();
        }
    }

    /// <summary>
    /// Turns generated token ids into text as they come, yielding only whole characters: a token's
    /// bytes can be part of a UTF-8 character (CJK, emoji via byte tokens), so incomplete trailing
    /// bytes are held until the rest arrives. The concatenation of everything returned by Push
    /// and Flush equals llama_detokenize of all the tokens pushed (for valid UTF-8), including
    /// SentencePiece's dropped leading space: until the first byte of text, the tokens pushed so
    /// far are detokenized as a whole by the library; from then on each token adds its piece
    /// (llama_token_to_piece, or nothing for a token llama_detokenize's skip-special drops).
    /// </summary>
    public sealed class StreamingDetokenizer
    {
        private readonly LlamaModel model;
        private readonly bool skipSpecial;
        private readonly List<int> prefix = new List<int>();
        private bool started;
        private byte[] pending = new byte[16];
        private int pendingLength;
        private Dictionary<int, bool> skipped;

        public StreamingDetokenizer(LlamaModel model, bool skipSpecial = false)
        {
            if (model == null) throw new ArgumentNullException("model");
            this.model = model;
            this.skipSpecial = skipSpecial;
        }

        /// <summary>Adds one token; returns the text completed by it (maybe "").</summary>
        public string Push(int token)
        {
            if (!started)
            {
                prefix.Add(token);
                byte[] text = model.DetokenizeUtf8(prefix.ToArray(), skipSpecial);
                if (text.Length == 0) return "";
                started = true;
                prefix.Clear();
                Append(text);
            }
            else if (!IsSkipped(token))
            {
                Append(model.TokenToPiece(token));
            }
            return TakeComplete();
        }

        /// <summary>Adds several tokens; returns the text they complete.</summary>
        public string Push(IEnumerable<int> tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            var sb = new StringBuilder();
            foreach (int t in tokens) sb.Append(Push(t));
            return sb.ToString();
        }

        /// <summary>The held bytes of an unfinished character, decoded (U+FFFD for what is incomplete); then empty.</summary>
        public string Flush()
        {
            string s = pendingLength == 0 ? "" : Encoding.UTF8.GetString(pending, 0, pendingLength);
            pendingLength = 0;
            return s;
        }

        /// <summary>Forgets everything (a new sequence starts: its leading space is handled again).</summary>
        public void Reset()
        {
            prefix.Clear();
            started = false;
            pendingLength = 0;
        }

        private bool IsSkipped(int token)
        {
            if (!skipSpecial) return false;
            if (skipped == null) skipped = new Dictionary<int, bool>();
            bool s;
            if (!skipped.TryGetValue(token, out s))
            {
                var one = new[] { token };
                s = model.DetokenizeUtf8(one, true).Length == 0 && model.DetokenizeUtf8(one, false).Length != 0;
                skipped[token] = s;
            }
            return s;
        }

        private void Append(byte[] b)
        {
            if (pendingLength + b.Length > pending.Length)
                Array.Resize(ref pending, Math.Max(pending.Length * 2, pendingLength + b.Length));
            Buffer.BlockCopy(b, 0, pending, pendingLength, b.Length);
            pendingLength += b.Length;
        }

        // Decodes the longest prefix of the held bytes that does not end inside a character.
        private string TakeComplete()
        {
            int n = CompleteLength(pending, pendingLength);
            if (n == 0) return "";
            string s = Encoding.UTF8.GetString(pending, 0, n);
            Buffer.BlockCopy(pending, n, pending, 0, pendingLength - n);
            pendingLength -= n;
            return s;
        }

        /// <summary>Bytes of `b[0..n)` up to (excluding) a trailing incomplete UTF-8 sequence.</summary>
        internal static int CompleteLength(byte[] b, int n)
        {
            int i = n - 1, cont = 0;
            while (i >= 0 && cont < 3 && (b[i] & 0xC0) == 0x80)
            {
                i--;
                cont++;
            }
            if (i < 0) return n;
            byte lead = b[i];
            int need = lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : (lead & 0xF8) == 0xF0 ? 4 : 1;
            return n - i < need ? i : n;
        }
    }
}
