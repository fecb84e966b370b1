/* callback_unwind: host callbacks that never return normally must not leave the library
 * locked. A .NET exception thrown in a callback under Mono skips the native frames between the
 * throw and the managed caller, like longjmp does here; the contract (API.md v2 section 3) says
 * a callback must not do that, and that the library stays usable if one does.
 *
 *   callback_unwind <data dir with stories260K.bin and tok512.bin>
 *
 * Also: a log callback that calls llama_system_info() while the first llama_system_info()
 * logs (RUNLLAMA_CPU=not-a-path in the environment makes it log). Each step runs under alarm():
 * a call that blocks for ever (a lock left held) kills the program. The jumps leak what the skipped frames owned (an error message or a load's
 * buffers): this program is not run under LeakSanitizer. Exits 0 when every check passed.
 */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runllama.h"

static jmp_buf g_escape;
static int g_failures = 0;

#define CHECK(cond, what)                                                                                      \
    do {                                                                                                       \
        if (!(cond)) {                                                                                         \
            g_failures++;                                                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #cond, what);                          \
        }                                                                                                      \
    } while (0)

static void LLAMA_CALL jumping_log(int32_t level, const char *line, void *user_data) {
    (void)level;
    (void)line;
    (void)user_data;
    longjmp(g_escape, 1);
}

static int32_t LLAMA_CALL jumping_progress(float fraction, void *user_data) {
    (void)user_data;
    if (fraction > 0.0f) longjmp(g_escape, 1);
    return 0;
}

static int g_info_calls = 0;
/* Logs the system info line: a natural thing for a log callback to do. */
static void LLAMA_CALL info_log(int32_t level, const char *line, void *user_data) {
    (void)level;
    (void)line;
    (void)user_data;
    if (llama_system_info()[0] != '\0') g_info_calls++;
}

static int g_lines = 0;
static void LLAMA_CALL counting_log(int32_t level, const char *line, void *user_data) {
    (void)level;
    (void)line;
    (void)user_data;
    g_lines++;
}

/* Load the bundled model with `lp` (tokenizer path set here); 1 if it loaded. */
static int load_ok(const char *model_path, const char *tok_path, llama_load_params *lp) {
    llama_model *m = NULL;
    llama_session *s = NULL;
    llama_token t = 1;
    int ok;
    lp->tokenizer_path = tok_path;
    ok = llama_load(model_path, lp, &m) == LLAMA_OK && llama_session_new(m, NULL, &s) == LLAMA_OK &&
         llama_step(s, &t, 1, &t) == LLAMA_OK && t == 403;
    llama_session_free(s);
    llama_model_free(m);
    return ok;
}

int main(int argc, char **argv) {
    char model_path[4096], tok_path[4096];
    llama_load_params lp;
    volatile int jumped;
    llama_model *m = NULL;
    if (argc != 2) {
        fprintf(stderr, "usage: %s <data dir>\n", argv[0]);
        return 2;
    }
    snprintf(model_path, sizeof model_path, "%s/stories260K.bin", argv[1]);
    snprintf(tok_path, sizeof tok_path, "%s/tok512.bin", argv[1]);
    llama_load_params_init(&lp, sizeof lp);

    alarm(30);
    /* The first llama_system_info() of the process logs when RUNLLAMA_CPU is not a kernel path
       (the test sets it so); the callback calling llama_system_info() must not deadlock. */
    llama_set_log_callback(info_log, NULL);
    CHECK(llama_system_info()[0] != '\0', "llama_system_info");
    if (getenv("RUNLLAMA_CPU") && strcmp(getenv("RUNLLAMA_CPU"), "not-a-path") == 0)
        CHECK(g_info_calls == 1, "the RUNLLAMA_CPU warning did not reach the log callback");

    /* The log callback escapes from the error report of a failed load... */
    llama_set_log_callback(jumping_log, NULL);
    jumped = 0;
    if (setjmp(g_escape) == 0) {
        llama_load("/nonexistent/callback_unwind.gguf", NULL, &m);
    } else {
        jumped = 1;
    }
    CHECK(jumped, "the log callback was not called for a failed load");
    /* ...after which the sink can be replaced (it blocked for ever when a lock stayed held). */
    llama_set_log_callback(counting_log, NULL);
    CHECK(llama_load("/nonexistent/again.gguf", NULL, &m) == LLAMA_ERR_IO, "a second failed load");
    CHECK(g_lines > 0, "the new log callback was not called");
    CHECK(strstr(llama_last_error(), "again.gguf") != NULL, "the error message of the second load");
    llama_set_log_callback(NULL, NULL);
    CHECK(load_ok(model_path, tok_path, &lp), "a load after the escape");

    /* The progress callback escapes from the middle of a load: later loads work. */
    lp.progress = jumping_progress;
    jumped = 0;
    if (setjmp(g_escape) == 0) {
        llama_load(model_path, &lp, &m);
    } else {
        jumped = 1;
    }
    CHECK(jumped, "the progress callback was not called");
    lp.progress = NULL;
    CHECK(load_ok(model_path, tok_path, &lp), "a load after the progress callback escaped");
    llama_set_log_callback(counting_log, NULL);
    llama_set_log_callback(NULL, NULL);
    alarm(0);

    if (g_failures) {
        fprintf(stderr, "callback_unwind: %d checks FAILED\n", g_failures);
        return 1;
    }
    printf("callback_unwind: the library stays usable after callbacks escape\n");
    return 0;
}
