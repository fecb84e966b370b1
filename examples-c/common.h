/* Helpers shared by the C examples (header-only; C99 and C++).
 *
 * - die_api(): report a failed API call (status name + llama_last_error()) and exit 1.
 * - bundled_data_dir(): where the bundled stories260K test model lives, so that the examples
 *   run from any working directory.
 * - now_ms(): a monotonic clock.
 * - rl_utf8_argv(): on Windows, replace argv with the command line's UTF-8 form (call it first
 *   thing in main); elsewhere a no-op.
 * - rl_binary_stdout(): on Windows, stop the C runtime from writing "\n" as "\r\n" on stdout,
 *   so the bytes printed are the bytes the library gave; elsewhere a no-op.
 */
#ifndef RUNLLAMA_EXAMPLES_COMMON_H
#define RUNLLAMA_EXAMPLES_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__) || defined(__APPLE__) || defined(__unix__)
#include <unistd.h>
#define RL_HAVE_UNISTD 1
#endif
#ifdef _WIN32
/* Windows only. WIN32_LEAN_AND_MEAN keeps out rpcndr.h, whose `small` macro would break code
 * that names a variable `small`. CommandLineToArgvW is in shell32 (linked by default by MinGW). */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <shellapi.h>
#include <fcntl.h>
#include <io.h>
#include <wchar.h>
#ifdef _MSC_VER
#pragma comment(lib, "shell32.lib")
#endif
#endif

#include "runllama.h"

#ifdef __GNUC__
#define RL_UNUSED __attribute__((unused))
#else
#define RL_UNUSED
#endif

#ifndef RL_NO_LINKED_API /* defined by programs that load the library at run time */
/* Print "<prog>: <what>: <STATUS>: <last error>" to stderr and exit 1. The last error is read
 * first: it is only valid until the next call of the API on this thread. */
static RL_UNUSED void die_api(const char *prog, const char *what, llama_status st) {
    const char *err = llama_last_error();
    char msg[2048];
    size_t n = strlen(err);
    if (n >= sizeof msg) n = sizeof msg - 1;
    memcpy(msg, err, n);
    msg[n] = '\0';
    fprintf(stderr, "%s: %s failed: %s: %s\n", prog, what, llama_status_str(st), msg);
    exit(1);
}
#endif

/* Milliseconds from a monotonic clock. */
static RL_UNUSED double now_ms(void) {
#if defined(_WIN32)
    LARGE_INTEGER freq, now;
    if (QueryPerformanceFrequency(&freq) && QueryPerformanceCounter(&now) && freq.QuadPart > 0)
        return (double)now.QuadPart * 1e3 / (double)freq.QuadPart;
#elif defined(CLOCK_MONOTONIC)
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0) return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
#endif
    return (double)clock() * 1e3 / (double)CLOCKS_PER_SEC;
}

#ifdef _WIN32
/* UTF-8 `s` as a newly allocated UTF-16 string (free() it), or NULL. */
static RL_UNUSED wchar_t *rl_utf8_to_wide(const char *s) {
    wchar_t *w;
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
    if (n <= 0) return NULL;
    w = (wchar_t *)malloc((size_t)n * sizeof *w);
    if (w && MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) != n) {
        free(w);
        w = NULL;
    }
    return w;
}

/* UTF-16 `w` as a newly allocated UTF-8 string (free() it), or NULL. */
static RL_UNUSED char *rl_wide_to_utf8(const wchar_t *w) {
    char *s;
    int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
    if (n <= 0) return NULL;
    s = (char *)malloc((size_t)n);
    if (s && WideCharToMultiByte(CP_UTF8, 0, w, -1, s, n, NULL, NULL) != n) {
        free(s);
        s = NULL;
    }
    return s;
}
#endif

/* Replace argv with the UTF-8 form of the command line. Windows hands main() its arguments in
 * the ANSI code page, which loses characters outside it; the library takes UTF-8 paths. The
 * strings live until the program ends. If anything fails, argc/argv are left as they were.
 * Elsewhere argv is already the bytes given, and this does nothing. */
static RL_UNUSED void rl_utf8_argv(int *argc, char ***argv) {
#ifdef _WIN32
    int n = 0, i;
    char **out;
    LPWSTR *wargv = CommandLineToArgvW(GetCommandLineW(), &n);
    if (!wargv) return;
    out = (char **)calloc((size_t)n + 1, sizeof *out);
    for (i = 0; out && i < n; i++) {
        out[i] = rl_wide_to_utf8(wargv[i]);
        if (!out[i]) {
            while (i > 0) free(out[--i]);
            free(out);
            out = NULL;
        }
    }
    LocalFree(wargv);
    if (!out) return;
    *argc = n;
    *argv = out;
#else
    (void)argc;
    (void)argv;
#endif
}

/* Make stdout binary: on Windows the C runtime's text mode writes every "\n" as "\r\n".
 * Elsewhere a no-op. Call it before anything is written to stdout. */
static RL_UNUSED void rl_binary_stdout(void) {
#ifdef _WIN32
    fflush(stdout);
    _setmode(_fileno(stdout), _O_BINARY);
#endif
}

static RL_UNUSED int file_readable(const char *path) {
#ifdef _WIN32
    /* fopen() would read `path` in the ANSI code page; our paths are UTF-8. */
    wchar_t *wpath = rl_utf8_to_wide(path);
    FILE *f = wpath ? _wfopen(wpath, L"rb") : NULL;
    free(wpath);
#else
    FILE *f = fopen(path, "rb");
#endif
    if (!f) return 0;
    fclose(f);
    return 1;
}

/* `dir` + "/" + `name` into `out` (capacity `cap`); 0 if it does not fit. */
static RL_UNUSED int join_path(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

/* The directory holding the bundled stories260K.bin + tok512.bin, written into `out`. Tried in
 * order: $RUNLLAMA_DATA_DIR; the compile-time RUNLLAMA_DATA_DIR; <exe dir>/../../tests/data/stories260K
 * (the examples-c/build/ layout); <exe dir>/stories260K; ./tests/data/stories260K.
 * Returns 0 (and a best guess in `out`) when none holds stories260K.bin. */
static RL_UNUSED int bundled_data_dir(const char *argv0, char *out, size_t cap) {
    char cand[4096], probe[4200];
    const char *env = getenv("RUNLLAMA_DATA_DIR");
    char exe_dir[4096];
    const char *tails[2] = {"../../tests/data/stories260K", "stories260K"};
    int i;
    exe_dir[0] = '\0';
    if (env && *env && join_path(probe, sizeof probe, env, "stories260K.bin") && file_readable(probe)) {
        snprintf(out, cap, "%s", env);
        return 1;
    }
#ifdef RUNLLAMA_DATA_DIR
    if (join_path(probe, sizeof probe, RUNLLAMA_DATA_DIR, "stories260K.bin") && file_readable(probe)) {
        snprintf(out, cap, "%s", RUNLLAMA_DATA_DIR);
        return 1;
    }
#endif
#if defined(RL_HAVE_UNISTD) && defined(__linux__)
    {
        ssize_t n = readlink("/proc/self/exe", exe_dir, sizeof exe_dir - 1);
        if (n > 0) exe_dir[n] = '\0';
        else exe_dir[0] = '\0';
    }
#elif defined(_WIN32)
    {
        /* The executable's path, as UTF-8 with '/' separators (Windows takes both). */
        wchar_t wexe[4096];
        DWORD n = GetModuleFileNameW(NULL, wexe, (DWORD)(sizeof wexe / sizeof wexe[0]));
        if (n > 0 && n < (DWORD)(sizeof wexe / sizeof wexe[0])) {
            char *u = rl_wide_to_utf8(wexe);
            if (u && strlen(u) < sizeof exe_dir) {
                char *c;
                snprintf(exe_dir, sizeof exe_dir, "%s", u);
                for (c = exe_dir; *c; c++)
                    if (*c == '\\') *c = '/';
            }
            free(u);
        }
    }
#endif
    if (exe_dir[0] == '\0' && argv0 && strchr(argv0, '/')) snprintf(exe_dir, sizeof exe_dir, "%s", argv0);
    if (exe_dir[0] != '\0') {
        char *slash = strrchr(exe_dir, '/');
        if (slash) *slash = '\0';
        for (i = 0; i < 2; i++) {
            if (join_path(cand, sizeof cand, exe_dir, tails[i]) && join_path(probe, sizeof probe, cand, "stories260K.bin") &&
                file_readable(probe)) {
                snprintf(out, cap, "%s", cand);
                return 1;
            }
        }
    }
    snprintf(out, cap, "%s", "tests/data/stories260K");
    return file_readable("tests/data/stories260K/stories260K.bin");
}

#endif /* RUNLLAMA_EXAMPLES_COMMON_H */
