/* Helpers shared by the C examples (header-only; C99 and C++).
 *
 * - die_api(): report a failed API call (status name + llama_last_error()) and exit 1.
 * - bundled_data_dir(): where the bundled stories260K test model lives, so that the examples
 *   run from any working directory.
 * - now_ms(): a monotonic clock.
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

#include "runllama.h"

#ifdef __GNUC__
#define RL_UNUSED __attribute__((unused))
#else
#define RL_UNUSED
#endif

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

/* Milliseconds from a monotonic clock. */
static RL_UNUSED double now_ms(void) {
#if defined(CLOCK_MONOTONIC)
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0) return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
#endif
    return (double)clock() * 1e3 / (double)CLOCKS_PER_SEC;
}

static RL_UNUSED int file_readable(const char *path) {
    FILE *f = fopen(path, "rb");
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
