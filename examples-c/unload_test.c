/* unload_test: load the library at run time, use it, free everything, unload it; repeat.
 *
 *   unload_test <library file> <data dir> [cycles (default 10)]
 *
 * What a plugin host (or .NET's NativeLibrary.Free) does: dlopen/dlclose on Linux,
 * LoadLibraryW/FreeLibrary on Windows. Each cycle loads the bundled stories260K model with 4
 * worker threads, generates 8 tokens (checked against the reference ids), frees the session and
 * the model, and unloads the library. Freeing the last model must have joined every thread the
 * library started (API.md v2 section 5): on Linux the test counts the process's threads named
 * "runllama-*" after the free, and any left is a failure (a thread still running when the code
 * is unmapped crashes the process). Exits 0 when every cycle passed, 1 otherwise.
 */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nothing is linked: every function comes from the loaded library. */
#define RUNLLAMA_STATIC
#define RL_NO_LINKED_API
#include "common.h"

#if defined(_WIN32)
#include <windows.h>
typedef HMODULE lib_handle;
#else
#include <dirent.h>
#include <dlfcn.h>
typedef void *lib_handle;
#endif

#define PROG "unload_test"

/* The reference greedy continuation of BOS (tests/data/stories260K/expected.txt). */
static const llama_token EXPECTED_IDS[8] = {403, 407, 261, 378, 432, 383, 286, 261};

/* The functions the test calls, looked up by name. */
typedef struct {
    void(LLAMA_CALL *load_params_init)(llama_load_params *, size_t);
    llama_status(LLAMA_CALL *load)(const char *, const llama_load_params *, llama_model **);
    void(LLAMA_CALL *model_free)(llama_model *);
    llama_status(LLAMA_CALL *session_new)(llama_model *, const llama_session_params *, llama_session **);
    void(LLAMA_CALL *session_free)(llama_session *);
    llama_status(LLAMA_CALL *step)(llama_session *, const llama_token *, size_t, llama_token *);
    const char *(LLAMA_CALL *last_error)(void);
} api;

static lib_handle open_library(const char *path) {
#if defined(_WIN32)
    wchar_t wide[4096];
    if (MultiByteToWideChar(CP_UTF8, 0, path, -1, wide, (int)(sizeof wide / sizeof wide[0])) == 0) return NULL;
    return LoadLibraryW(wide);
#else
    return dlopen(path, RTLD_NOW | RTLD_LOCAL);
#endif
}

static int close_library(lib_handle h) {
#if defined(_WIN32)
    return FreeLibrary(h) ? 0 : -1;
#else
    return dlclose(h);
#endif
}

/* Look `name` up into `*slot` (a function pointer); 0 if missing. */
static int lookup(lib_handle h, const char *name, void *slot) {
#if defined(_WIN32)
    FARPROC p = GetProcAddress(h, name); /* already a function pointer */
#else
    void *p = dlsym(h, name);
#endif
    if (!p) {
        fprintf(stderr, "%s: the library has no %s\n", PROG, name);
        return 0;
    }
    memcpy(slot, &p, sizeof p); /* copied, not cast: ISO C has no object/function pointer conversion */
    return 1;
}

/* Threads of this process named "runllama-*" (Linux; -1 where it cannot be counted). */
static int library_threads(void) {
#if defined(__linux__)
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL) {
        char path[300], comm[64] = "";
        FILE *f;
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        f = fopen(path, "r");
        if (!f) continue;
        if (fgets(comm, sizeof comm, f) && strncmp(comm, "runllama-", 9) == 0) n++;
        fclose(f);
    }
    closedir(d);
    return n;
#else
    return -1;
#endif
}

/* One cycle; 0 on success. */
static int cycle(const char *lib_path, const char *model_path, const char *tok_path, int index) {
    api a;
    lib_handle h = open_library(lib_path);
    llama_load_params lp;
    llama_model *m = NULL;
    llama_session *s = NULL;
    llama_token t = 1;
    llama_status st;
    int i, ok = 1, left;
    if (!h) {
        fprintf(stderr, "%s: cycle %d: cannot load %s\n", PROG, index, lib_path);
        return 1;
    }
    if (!lookup(h, "llama_load_params_init", &a.load_params_init) || !lookup(h, "llama_load", &a.load) ||
        !lookup(h, "llama_model_free", &a.model_free) || !lookup(h, "llama_session_new", &a.session_new) ||
        !lookup(h, "llama_session_free", &a.session_free) || !lookup(h, "llama_step", &a.step) ||
        !lookup(h, "llama_last_error", &a.last_error)) {
        close_library(h);
        return 1;
    }
    a.load_params_init(&lp, sizeof lp);
    lp.tokenizer_path = tok_path;
    lp.n_threads = 4;
    st = a.load(model_path, &lp, &m);
    if (st != LLAMA_OK) {
        fprintf(stderr, "%s: cycle %d: llama_load: %d: %s\n", PROG, index, (int)st, a.last_error());
        close_library(h);
        return 1;
    }
    st = a.session_new(m, NULL, &s);
    for (i = 0; i < 8 && st == LLAMA_OK; i++) {
        st = a.step(s, &t, 1, &t);
        if (st == LLAMA_OK && t != EXPECTED_IDS[i]) {
            fprintf(stderr, "%s: cycle %d: id %d is %d, expected %d\n", PROG, index, i, (int)t, (int)EXPECTED_IDS[i]);
            ok = 0;
        }
    }
    if (st != LLAMA_OK) {
        fprintf(stderr, "%s: cycle %d: %d: %s\n", PROG, index, (int)st, a.last_error());
        ok = 0;
    }
    a.session_free(s);
    a.model_free(m);
    left = library_threads();
    if (left > 0) {
        fprintf(stderr, "%s: cycle %d: %d runllama threads still run after the last model was freed\n", PROG, index,
                left);
        ok = 0;
    }
    if (close_library(h) != 0) {
        fprintf(stderr, "%s: cycle %d: unloading the library failed\n", PROG, index);
        ok = 0;
    }
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    char model_path[4200], tok_path[4200];
    int cycles = 10, i, failed = 0;
    rl_utf8_argv(&argc, &argv);
    if (argc < 3 || argc > 4 || (argc == 4 && (cycles = atoi(argv[3])) <= 0)) {
        fprintf(stderr, "usage: %s <library file> <data dir> [cycles]\n", PROG);
        return 2;
    }
    if (!join_path(model_path, sizeof model_path, argv[2], "stories260K.bin") ||
        !join_path(tok_path, sizeof tok_path, argv[2], "tok512.bin")) {
        fprintf(stderr, "%s: the data dir path is too long\n", PROG);
        return 2;
    }
    for (i = 0; i < cycles; i++) failed += cycle(argv[1], model_path, tok_path, i);
    if (failed) {
        fprintf(stderr, "%s: %d of %d cycles FAILED\n", PROG, failed, cycles);
        return 1;
    }
    printf("%s: %d load/step/free/unload cycles passed\n", PROG, cycles);
    return 0;
}
