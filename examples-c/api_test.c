/* api_test: acceptance test of the runllama C API contract (API.md, version 2), in C99.
 *
 *   api_test <data dir> [temp dir]
 *
 * <data dir> holds the bundled stories260K model: stories260K.bin and tok512.bin
 * (tests/data/stories260K). [temp dir] is where a garbage file is written (default $TMPDIR or
 * /tmp). Every check prints what failed (expression, values, llama_last_error()); the program
 * goes on after a failed check and exits 1 if any failed, 0 if all passed.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "runllama.h"

static int g_checks = 0, g_failures = 0;
static const char *g_section = "";
static char g_last_error[4096];

/* Copy of llama_last_error() taken right after the call under test. */
static const char *last_error(void) {
    snprintf(g_last_error, sizeof g_last_error, "%s", llama_last_error());
    return g_last_error;
}

static void check_impl(int ok, const char *file, int line, const char *expr, const char *fmt, ...) {
    g_checks++;
    if (ok) return;
    g_failures++;
    fprintf(stderr, "FAIL [%s] %s:%d: %s", g_section, file, line, expr);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs(" -- ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
}

/* CHECK(cond, printf-style details): record a failure and go on. */
#define CHECK(cond, ...) check_impl((cond) ? 1 : 0, __FILE__, __LINE__, #cond, __VA_ARGS__)

/* A status check: prints the status name and the last error message. */
#define CHECK_STATUS(call, expected)                                                                         \
    do {                                                                                                       \
        llama_status st_ = (call);                                                                             \
        const char *err_ = last_error();                                                                       \
        check_impl(st_ == (expected), __FILE__, __LINE__, #call " == " #expected, "got %s (%d), last error: \"%s\"", \
                   llama_status_str(st_), (int)st_, err_);                                                    \
    } while (0)

/* A precondition for the rest of a section: stop the program if it fails. */
#define REQUIRE(cond, ...)                                                                                     \
    do {                                                                                                       \
        int ok_ = (cond) ? 1 : 0;                                                                              \
        check_impl(ok_, __FILE__, __LINE__, #cond, __VA_ARGS__);                                               \
        if (!ok_) {                                                                                            \
            fprintf(stderr, "api_test: stopping: a required check failed (%d of %d checks failed)\n", g_failures, \
                    g_checks);                                                                                 \
            exit(1);                                                                                           \
        }                                                                                                      \
    } while (0)

/* EXPECTED.md (tests/data/stories260K): the 200 greedy ids after BOS, llama2.c's reference. */
static const llama_token EXPECTED_IDS[200] = {
    403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
    410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
    266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415,
    426, 13,  438, 310, 439, 419, 357, 336, 432, 313, 438, 310, 432, 278, 316, 439, 419, 298, 414, 267,
    265, 282, 295, 433, 426, 436, 317, 286, 296, 418, 269, 279, 292, 416, 439, 413, 409, 416, 327, 263,
    415, 294, 267, 400, 426, 338, 336, 432, 313, 442, 391, 267, 337, 335, 364, 420, 268, 388, 432, 398,
    359, 280, 303, 439, 413, 272, 417, 264, 312, 426, 436, 13,  438, 310, 286, 296, 418, 269, 279, 292,
    416, 439, 413, 409, 416, 327, 263, 415, 294, 267, 400, 426, 338, 336, 432, 313, 442, 439, 423, 262,
    304, 420, 422, 432, 317, 426, 359, 279, 292, 416, 439, 413, 409, 416, 327, 263, 415, 294, 267, 400,
    426, 436, 13,  438, 310, 279, 292, 416, 439, 413, 391, 267, 281, 421, 427, 311, 357, 432, 384, 358,
};

/* EXPECTED.md: detokenize([1] + ids), 464 bytes. */
static const char EXPECTED_TEXT[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
    "big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to "
    "play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
    "Lily didn't want to help her mom, so she";

static char g_model_path[4200], g_tok_path[4200];

static llama_load_params load_params(void) {
    llama_load_params lp;
    llama_load_params_init(&lp, sizeof lp);
    lp.tokenizer_path = g_tok_path;
    lp.n_threads = 2;
    return lp;
}

static llama_model *load_bundled(void) {
    llama_model *m = NULL;
    llama_load_params lp = load_params();
    llama_status st = llama_load(g_model_path, &lp, &m);
    const char *err = last_error();
    REQUIRE(st == LLAMA_OK && m != NULL, "llama_load(%s): %s: %s", g_model_path, llama_status_str(st), err);
    return m;
}

static llama_session *new_session(llama_model *m, uint32_t n_ctx, float temperature, uint64_t seed) {
    llama_session *s = NULL;
    llama_session_params sp;
    llama_status st;
    llama_session_params_init(&sp, sizeof sp);
    sp.n_ctx = n_ctx;
    sp.temperature = temperature;
    sp.seed = seed;
    st = llama_session_new(m, &sp, &s);
    REQUIRE(st == LLAMA_OK && s != NULL, "llama_session_new: %s: %s", llama_status_str(st), last_error());
    return s;
}

static int argmax(const float *x, int n) {
    int i, best = 0;
    for (i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* ---------------------------------------------------------------------------------------- */

static void test_basics(void) {
    static const struct {
        llama_status s;
        const char *name;
    } names[] = {
        {LLAMA_OK, "LLAMA_OK"},
        {LLAMA_ERR_INVALID_ARGUMENT, "LLAMA_ERR_INVALID_ARGUMENT"},
        {LLAMA_ERR_IO, "LLAMA_ERR_IO"},
        {LLAMA_ERR_FORMAT, "LLAMA_ERR_FORMAT"},
        {LLAMA_ERR_UNSUPPORTED, "LLAMA_ERR_UNSUPPORTED"},
        {LLAMA_ERR_OUT_OF_MEMORY, "LLAMA_ERR_OUT_OF_MEMORY"},
        {LLAMA_ERR_CONTEXT_FULL, "LLAMA_ERR_CONTEXT_FULL"},
        {LLAMA_ERR_BUFFER_TOO_SMALL, "LLAMA_ERR_BUFFER_TOO_SMALL"},
        {LLAMA_ERR_CANCELLED, "LLAMA_ERR_CANCELLED"},
        {LLAMA_ERR_DEVICE, "LLAMA_ERR_DEVICE"},
        {LLAMA_ERR_INTERNAL, "LLAMA_ERR_INTERNAL"},
        {LLAMA_ERR_BUSY, "LLAMA_ERR_BUSY"},
    };
    size_t i;
    const char *v, *info, *e;
    llama_load_params lp;
    llama_session_params sp;
    g_section = "basics";

    /* Before any failing call, the last error is "" (and never NULL). */
    e = llama_last_error();
    CHECK(e != NULL, "llama_last_error() returned NULL");
    if (e) CHECK(e[0] == '\0', "initial last error is \"%s\"", e);

    CHECK(llama_api_version() == LLAMA_API_VERSION, "library %u, header %u", (unsigned)llama_api_version(),
          (unsigned)LLAMA_API_VERSION);
    CHECK(LLAMA_API_VERSION == 2, "header says %d", LLAMA_API_VERSION);
    v = llama_version();
    CHECK(v != NULL && v[0] != '\0', "llama_version() is %s", v ? "empty" : "NULL");
    CHECK(v != NULL && strchr(v, '.') != NULL, "llama_version() \"%s\" is not like \"0.1.0\"", v ? v : "(null)");
    info = llama_system_info();
    CHECK(info != NULL && info[0] != '\0', "llama_system_info() is %s", info ? "empty" : "NULL");
    CHECK(info != NULL && strstr(info, "CUDA=") != NULL, "llama_system_info() \"%s\" has no CUDA=", info ? info : "(null)");
    CHECK(llama_system_info() == info, "llama_system_info() is not a stable pointer");

    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *n = llama_status_str(names[i].s);
        CHECK(n != NULL && strcmp(n, names[i].name) == 0, "llama_status_str(%d) = \"%s\", expected \"%s\"", (int)names[i].s,
              n ? n : "(null)", names[i].name);
    }
    {
        llama_status unknown[] = {1, -12, -999, INT32_MIN, INT32_MAX};
        for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
            const char *n = llama_status_str(unknown[i]);
            CHECK(n != NULL && strcmp(n, "LLAMA_ERR_UNKNOWN") == 0, "llama_status_str(%ld) = \"%s\"", (long)unknown[i],
                  n ? n : "(null)");
        }
    }

    /* Defaults, by llama_*_params_init and by value (the same). */
    memset(&lp, 0xAB, sizeof lp);
    llama_load_params_init(&lp, sizeof lp);
    CHECK(lp.size == sizeof(llama_load_params), "load params size %u, sizeof %u", (unsigned)lp.size,
          (unsigned)sizeof(llama_load_params));
    CHECK(lp.version == 0 && lp.config_path == NULL && lp.tokenizer_path == NULL && lp.device == LLAMA_DEVICE_CPU &&
              lp.n_threads == 0 && lp.use_mmap == 1 && lp.reserved0 == 0 && lp.progress == NULL &&
              lp.progress_user_data == NULL && lp.device_index == 0 && lp.reserved1 == 0 &&
              lp.bf16_products == LLAMA_BF16_PRODUCTS_F32 && lp.reserved2 == 0,
          "unexpected load defaults");
    {
        llama_load_params by_value = llama_load_params_default();
        CHECK(memcmp(&by_value, &lp, sizeof lp) == 0, "llama_load_params_default() differs from _init");
    }
    memset(&sp, 0xAB, sizeof sp);
    llama_session_params_init(&sp, sizeof sp);
    CHECK(sp.size == sizeof(llama_session_params), "session params size %u, sizeof %u", (unsigned)sp.size,
          (unsigned)sizeof(llama_session_params));
    CHECK(sp.n_ctx == 0 && sp.temperature == 0.0f && sp.top_k == 0 && sp.top_p == 1.0f && sp.repeat_penalty == 1.0f &&
              sp.seed == 0 && sp.kv_type == LLAMA_KV_F16 && sp.reserved0 == 0,
          "unexpected session defaults");
    {
        llama_session_params by_value = llama_session_params_default();
        CHECK(memcmp(&by_value, &sp, sizeof sp) == 0, "llama_session_params_default() differs from _init");
    }
}

/* The versioned structs: the library writes and reads at most `size` bytes. */
static void test_struct_versions(llama_model *m) {
    union {
        llama_load_params p;
        unsigned char bytes[sizeof(llama_load_params) + 16];
    } lbox;
    union {
        llama_session_params p;
        unsigned char bytes[sizeof(llama_session_params) + 16];
    } sbox;
    size_t i, v1_load = offsetof(llama_load_params, device_index), v1_session = offsetof(llama_session_params, kv_type);
    int untouched = 1;
    llama_session *s = NULL;
    llama_token t = 1, next = -1;
    llama_model_hparams hp;
    g_section = "struct versions";

    /* Initialising a version-1-sized struct writes exactly that many bytes. */
    memset(&lbox, 0xAB, sizeof lbox);
    llama_load_params_init(&lbox.p, v1_load);
    CHECK(lbox.p.size == v1_load && lbox.p.use_mmap == 1, "v1-sized init: size %u", (unsigned)lbox.p.size);
    for (i = v1_load; i < sizeof lbox.bytes; i++) untouched &= lbox.bytes[i] == 0xAB;
    CHECK(untouched, "llama_load_params_init wrote past the size it was given");
    memset(&sbox, 0xAB, sizeof sbox);
    llama_session_params_init(&sbox.p, v1_session);
    untouched = 1;
    for (i = v1_session; i < sizeof sbox.bytes; i++) untouched &= sbox.bytes[i] == 0xAB;
    CHECK(sbox.p.size == v1_session && untouched, "llama_session_params_init wrote past %u bytes", (unsigned)v1_session);
    /* A size that is no version's sizeof: an error, nothing written. */
    memset(&sbox, 0xAB, sizeof sbox);
    llama_session_params_init(&sbox.p, 6);
    CHECK(sbox.bytes[0] == 0xAB && last_error()[0] != '\0', "init with size 6 wrote or said nothing");
    llama_session_params_init(NULL, sizeof sbox.p);
    CHECK(last_error()[0] != '\0', "init of NULL said nothing");

    /* A version-1 struct (no kv_type, garbage beyond it) is read as far as its size. */
    sbox.p.size = (uint32_t)v1_session;
    llama_session_params_init(&sbox.p, v1_session);
    sbox.p.n_ctx = 64;
    CHECK_STATUS(llama_session_new(m, &sbox.p, &s), LLAMA_OK);
    if (s) {
        CHECK(llama_session_n_ctx(s) == 64, "n_ctx %u", (unsigned)llama_session_n_ctx(s));
        CHECK_STATUS(llama_step(s, &t, 1, &next), LLAMA_OK);
        CHECK(next == EXPECTED_IDS[0], "first id %d", (int)next);
        llama_session_free(s);
        s = NULL;
    }
    /* A larger struct from a newer header: its tail must be zero. */
    memset(&sbox, 0, sizeof sbox);
    llama_session_params_init(&sbox.p, sizeof sbox.bytes);
    CHECK(sbox.p.size == sizeof sbox.bytes && sbox.p.top_p == 1.0f, "init of a larger struct: size %u", (unsigned)sbox.p.size);
    CHECK_STATUS(llama_session_new(m, &sbox.p, &s), LLAMA_OK);
    llama_session_free(s);
    s = NULL;
    sbox.bytes[sizeof(llama_session_params) + 3] = 1;
    CHECK_STATUS(llama_session_new(m, &sbox.p, &s), LLAMA_ERR_UNSUPPORTED);
    CHECK(s == NULL, "a session from an unsupported struct");
    /* Sizes that end inside a field. */
    llama_session_params_init(&sbox.p, sizeof sbox.p);
    sbox.p.size = (uint32_t)offsetof(llama_session_params, seed) + 4;
    CHECK_STATUS(llama_session_new(m, &sbox.p, &s), LLAMA_ERR_INVALID_ARGUMENT);
    /* The reserved fields are ignored. */
    llama_load_params_init(&lbox.p, sizeof lbox.p);
    lbox.p.reserved0 = 0xFFFFFFFFu;
    lbox.p.reserved1 = 0x12345678u;
    lbox.p.reserved2 = 0x9ABCDEF0u;
    lbox.p.tokenizer_path = g_tok_path;
    {
        llama_model *m2 = NULL;
        CHECK_STATUS(llama_load(g_model_path, &lbox.p, &m2), LLAMA_OK);
        llama_model_free(m2);
        /* bf16_products: either choice loads; anything else is invalid. */
        lbox.p.bf16_products = LLAMA_BF16_PRODUCTS_ROUNDED;
        CHECK_STATUS(llama_load(g_model_path, &lbox.p, &m2), LLAMA_OK);
        llama_model_free(m2);
        m2 = NULL;
        lbox.p.bf16_products = 2;
        CHECK_STATUS(llama_load(g_model_path, &lbox.p, &m2), LLAMA_ERR_INVALID_ARGUMENT);
        CHECK(m2 == NULL, "a model from invalid bf16_products");
        /* A struct of the size before bf16_products: what lies beyond is not read. */
        lbox.p.size = (uint32_t)offsetof(llama_load_params, bf16_products);
        CHECK_STATUS(llama_load(g_model_path, &lbox.p, &m2), LLAMA_OK);
        llama_model_free(m2);
        m2 = NULL;
        lbox.p.size = (uint32_t)sizeof lbox.p;
        lbox.p.bf16_products = LLAMA_BF16_PRODUCTS_F32;
    }
    /* device_index: negative is invalid; CUDA is a device error in a build without it. */
    lbox.p.device_index = -1;
    {
        llama_model *m2 = NULL;
        CHECK_STATUS(llama_load(g_model_path, &lbox.p, &m2), LLAMA_ERR_INVALID_ARGUMENT);
        lbox.p.device_index = 3;
        lbox.p.device = LLAMA_DEVICE_CUDA;
        CHECK_STATUS(llama_load(g_model_path, &lbox.p, &m2), LLAMA_ERR_DEVICE);
        CHECK(m2 == NULL, "a model from a failed load");
    }

    /* Out-structs: an older, smaller llama_model_hparams gets its fields and nothing more. */
    memset(&hp, 0xAB, sizeof hp);
    hp.size = (uint32_t)offsetof(llama_model_hparams, n_ff);
    CHECK_STATUS(llama_model_get_hparams(m, &hp), LLAMA_OK);
    CHECK(hp.size == offsetof(llama_model_hparams, n_ff) && hp.n_head_kv == 4 && hp.n_vocab == 512,
          "hparams of a smaller struct: size %u, n_head_kv %d", (unsigned)hp.size, (int)hp.n_head_kv);
    CHECK(((unsigned char *)&hp)[offsetof(llama_model_hparams, n_ff)] == 0xAB, "wrote past the host's size");
    hp.size = 3;
    CHECK_STATUS(llama_model_get_hparams(m, &hp), LLAMA_ERR_INVALID_ARGUMENT);
}

static void test_load_errors(const char *tmp_dir) {
    llama_model *m = (llama_model *)(uintptr_t)1; /* must be overwritten with NULL */
    llama_load_params lp;
    char missing[4300], garbage[4300];
    const char *err;
    llama_status st;
    FILE *f;
    int i;
    g_section = "load errors";

    /* A missing file: LLAMA_ERR_IO, the message names the path. */
    join_path(missing, sizeof missing, tmp_dir, "runllama-api-test-no-such-model.gguf");
    remove(missing);
    st = llama_load(missing, NULL, &m);
    err = last_error();
    CHECK(st == LLAMA_ERR_IO, "missing file: got %s: %s", llama_status_str(st), err);
    CHECK(strstr(err, missing) != NULL, "the message \"%s\" does not name the path %s", err, missing);
    CHECK(m == NULL, "*out_model not set to NULL on failure");

    /* A garbage file: LLAMA_ERR_FORMAT, the message names the path. */
    {
        /* A name of our own: several api_test processes may share the temp dir. */
        char name[128];
#ifdef RL_HAVE_UNISTD
        snprintf(name, sizeof name, "runllama-api-test-garbage-%ld.bin", (long)getpid());
#else
        snprintf(name, sizeof name, "runllama-api-test-garbage-%ld.bin", (long)time(NULL));
#endif
        join_path(garbage, sizeof garbage, tmp_dir, name);
    }
    f = fopen(garbage, "wb");
    REQUIRE(f != NULL, "cannot create %s", garbage);
    for (i = 0; i < 4096; i++) fputc("this is not a model; "[i % 21], f);
    fclose(f);
    m = (llama_model *)(uintptr_t)1;
    st = llama_load(garbage, NULL, &m);
    err = last_error();
    CHECK(st == LLAMA_ERR_FORMAT, "garbage file: got %s: %s", llama_status_str(st), err);
    CHECK(strstr(err, garbage) != NULL, "the message \"%s\" does not name the path %s", err, garbage);
    CHECK(m == NULL, "*out_model not set to NULL on failure");
    /* An empty file too. */
    f = fopen(garbage, "wb");
    REQUIRE(f != NULL, "cannot create %s", garbage);
    fclose(f);
    st = llama_load(garbage, NULL, &m);
    err = last_error();
    CHECK(st == LLAMA_ERR_FORMAT || st == LLAMA_ERR_IO, "empty file: got %s: %s", llama_status_str(st), err);
    remove(garbage);

    /* A missing tokenizer file: IO. */
    lp = load_params();
    lp.tokenizer_path = missing;
    st = llama_load(g_model_path, &lp, &m);
    err = last_error();
    CHECK(st == LLAMA_ERR_IO, "missing tokenizer: got %s: %s", llama_status_str(st), err);
    CHECK(strstr(err, missing) != NULL, "the message \"%s\" does not name the path %s", err, missing);

    /* NULL arguments. */
    CHECK_STATUS(llama_load(NULL, NULL, &m), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK(last_error()[0] != '\0', "no message after an error");
    CHECK_STATUS(llama_load(g_model_path, NULL, NULL), LLAMA_ERR_INVALID_ARGUMENT);

    /* Params whose size is no version's sizeof. */
    lp = load_params();
    lp.size = (uint32_t)offsetof(llama_load_params, progress) + 4;
    CHECK_STATUS(llama_load(g_model_path, &lp, &m), LLAMA_ERR_INVALID_ARGUMENT);
    lp.size = 0;
    CHECK_STATUS(llama_load(g_model_path, &lp, &m), LLAMA_ERR_INVALID_ARGUMENT);
    lp.size = 1u << 20;
    CHECK_STATUS(llama_load(g_model_path, &lp, &m), LLAMA_ERR_INVALID_ARGUMENT);

    /* Bad values. */
    lp = load_params();
    lp.version = 1;
    CHECK_STATUS(llama_load(g_model_path, &lp, &m), LLAMA_ERR_INVALID_ARGUMENT);
    lp = load_params();
    lp.device = 7;
    CHECK_STATUS(llama_load(g_model_path, &lp, &m), LLAMA_ERR_INVALID_ARGUMENT);
    lp = load_params();
    lp.n_threads = -1;
    CHECK_STATUS(llama_load(g_model_path, &lp, &m), LLAMA_ERR_INVALID_ARGUMENT);
    /* CUDA: either it works (a CUDA build on a GPU machine) or LLAMA_ERR_DEVICE. */
    lp = load_params();
    lp.device = LLAMA_DEVICE_CUDA;
    m = NULL;
    st = llama_load(g_model_path, &lp, &m);
    err = last_error();
    CHECK(st == LLAMA_OK || st == LLAMA_ERR_DEVICE, "device CUDA: got %s: %s", llama_status_str(st), err);
    llama_model_free(m);

    /* Success clears the last error. */
    m = load_bundled();
    CHECK(llama_last_error()[0] == '\0', "last error after a successful load is \"%s\"", llama_last_error());
    llama_model_free(m);

    /* use_mmap = 0 works too. */
    lp = load_params();
    lp.use_mmap = 0;
    m = NULL;
    CHECK_STATUS(llama_load(g_model_path, &lp, &m), LLAMA_OK);
    llama_model_free(m);
}

static void test_null_and_invalid(llama_model *m) {
    llama_session *s = (llama_session *)(uintptr_t)1;
    llama_session_params sp;
    llama_token t = 1, next = -1, toks[4];
    size_t n = 0;
    char buf[16];
    g_section = "NULL and invalid arguments";

    CHECK(llama_model_n_vocab(NULL) == LLAMA_ERR_INVALID_ARGUMENT, "n_vocab(NULL) = %d", (int)llama_model_n_vocab(NULL));
    CHECK(llama_model_n_ctx_train(NULL) == LLAMA_ERR_INVALID_ARGUMENT, "n_ctx_train(NULL) = %d",
          (int)llama_model_n_ctx_train(NULL));
    CHECK(llama_token_bos(NULL) == -1, "bos(NULL) = %d", (int)llama_token_bos(NULL));
    CHECK(llama_token_eos(NULL) == -1, "eos(NULL) = %d", (int)llama_token_eos(NULL));
    CHECK(llama_token_is_eog(NULL, 2) == 0, "is_eog(NULL, 2) != 0");
    CHECK_STATUS(llama_model_describe(NULL, NULL, 0, &n), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_model_describe(m, NULL, 0, NULL), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_model_describe(m, NULL, 16, &n), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_tokenize(NULL, "a", 1, 0, toks, 4, &n), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_tokenize(m, "a", 1, 0, toks, 4, NULL), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_tokenize(m, NULL, 3, 0, toks, 4, &n), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_tokenize(m, "a", 1, 0x100, toks, 4, &n), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_tokenize(m, "\xff\xfe", 2, 0, toks, 4, &n), LLAMA_ERR_INVALID_ARGUMENT); /* bad UTF-8 */
    CHECK_STATUS(llama_tokenize(m, NULL, 0, LLAMA_TOKENIZE_ADD_BOS, toks, 4, &n), LLAMA_OK); /* empty text */
    CHECK(n == 1 && toks[0] == 1, "empty text + BOS gave %lu tokens, first %d", (unsigned long)n, (int)toks[0]);
    CHECK_STATUS(llama_detokenize(NULL, &t, 1, 0, buf, sizeof buf, &n), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_detokenize(m, NULL, 1, 0, buf, sizeof buf, &n), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_detokenize(m, &t, 1, 0x10, buf, sizeof buf, &n), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_token_to_piece(NULL, 1, buf, sizeof buf, &n), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_token_to_piece(m, 1, buf, sizeof buf, NULL), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_chat_tokenize(NULL, NULL, 0, 0, toks, 4, &n), LLAMA_ERR_INVALID_ARGUMENT);

    CHECK_STATUS(llama_session_new(NULL, NULL, &s), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK(s == NULL, "*out_session not set to NULL on failure");
    CHECK_STATUS(llama_session_new(m, NULL, NULL), LLAMA_ERR_INVALID_ARGUMENT);
    sp = llama_session_params_default();
    sp.size = 2;
    CHECK_STATUS(llama_session_new(m, &sp, &s), LLAMA_ERR_INVALID_ARGUMENT);
    sp.size = (uint32_t)sizeof sp - 2;
    CHECK_STATUS(llama_session_new(m, &sp, &s), LLAMA_ERR_INVALID_ARGUMENT);
    sp = llama_session_params_default();
    sp.temperature = -1.0f;
    CHECK_STATUS(llama_session_new(m, &sp, &s), LLAMA_ERR_INVALID_ARGUMENT);
    sp = llama_session_params_default();
    sp.top_p = 0.0f;
    CHECK_STATUS(llama_session_new(m, &sp, &s), LLAMA_ERR_INVALID_ARGUMENT);
    sp = llama_session_params_default();
    sp.top_k = -1;
    CHECK_STATUS(llama_session_new(m, &sp, &s), LLAMA_ERR_INVALID_ARGUMENT);

    CHECK_STATUS(llama_step(NULL, &t, 1, &next), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_session_reset(NULL), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_session_rewind(NULL, 0), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK(llama_session_position(NULL) == 0, "position(NULL) != 0");
    CHECK(llama_session_logits(NULL) == NULL, "logits(NULL) != NULL");
    llama_session_abort(NULL);
    llama_session_free(NULL);
    llama_model_free(NULL);
    llama_set_log_callback(NULL, NULL);

    /* Session-level invalid arguments. */
    s = new_session(m, 0, 0.0f, 0);
    CHECK_STATUS(llama_step(s, NULL, 1, &next), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_step(s, &t, 0, &next), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_step(s, &t, 1, NULL), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK(llama_session_position(s) == 0, "position %u after failed steps", (unsigned)llama_session_position(s));
    CHECK(llama_session_logits(s) == NULL, "logits not NULL after failed steps");
    llama_session_free(s);
}

static void test_model_info(llama_model *m) {
    g_section = "model info";
    CHECK(llama_model_n_vocab(m) == 512, "n_vocab %d", (int)llama_model_n_vocab(m));
    CHECK(llama_model_n_ctx_train(m) == 512, "n_ctx_train %d", (int)llama_model_n_ctx_train(m));
    CHECK(llama_token_bos(m) == 1, "bos %d", (int)llama_token_bos(m));
    CHECK(llama_token_eos(m) == 2, "eos %d", (int)llama_token_eos(m));
    CHECK(llama_token_is_eog(m, 2) == 1, "is_eog(eos) != 1");
    CHECK(llama_token_is_eog(m, 1) == 0, "is_eog(bos) != 0");
    CHECK(llama_token_is_eog(m, 403) == 0, "is_eog(403) != 0");
    CHECK(llama_token_is_eog(m, 512) == 0 && llama_token_is_eog(m, -1) == 0, "is_eog(out of range) != 0");
}

static void test_describe(llama_model *m) {
    size_t need = 12345, len = 0;
    char *buf;
    llama_status st;
    const char *keys[] = {"\"format\"", "\"version\"", "\"n_vocab\"", "\"n_embd\"", "\"n_layer\"", "\"n_head\"",
                          "\"n_head_kv\"", "\"n_ff\"", "\"rope_theta\"", "\"norm_eps\"", "\"dtype\"", "\"n_params\"",
                          "\"device\"", "\"tensors\"", "\"shape\"", "\"name\""};
    size_t i;
    g_section = "llama_model_describe";

    st = llama_model_describe(m, NULL, 0, &need);
    CHECK(st == LLAMA_ERR_BUFFER_TOO_SMALL, "size query: got %s: %s", llama_status_str(st), last_error());
    REQUIRE(need > 2 && need < (1u << 24), "needed length %lu", (unsigned long)need);
    buf = (char *)malloc(need + 1);
    REQUIRE(buf != NULL, "malloc");

    /* Too small by one: nothing written, the length still reported. */
    memset(buf, '#', need + 1);
    len = 0;
    st = llama_model_describe(m, buf, need - 1, &len);
    CHECK(st == LLAMA_ERR_BUFFER_TOO_SMALL, "capacity need-1: got %s", llama_status_str(st));
    CHECK(len == need, "*out_len %lu, expected %lu", (unsigned long)len, (unsigned long)need);
    for (i = 0; i < need + 1; i++)
        if (buf[i] != '#') break;
    CHECK(i == need + 1, "the too-small call wrote byte %lu", (unsigned long)i);

    /* Exactly the length: OK, no NUL. */
    st = llama_model_describe(m, buf, need, &len);
    CHECK(st == LLAMA_OK && len == need, "capacity need: %s, len %lu", llama_status_str(st), (unsigned long)len);
    CHECK(buf[need] == '#', "a NUL was written past the capacity");

    /* With room: NUL-terminated JSON with the contract's keys. */
    memset(buf, '#', need + 1);
    st = llama_model_describe(m, buf, need + 1, &len);
    CHECK(st == LLAMA_OK && len == need, "capacity need+1: %s, len %lu", llama_status_str(st), (unsigned long)len);
    CHECK(buf[need] == '\0', "no NUL appended");
    buf[need] = '\0';
    CHECK(buf[0] == '{' && buf[need - 1] == '}', "not a JSON object: %.40s...", buf);
    CHECK(strlen(buf) == need, "the JSON has an embedded NUL");
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECK(strstr(buf, keys[i]) != NULL, "the JSON has no %s key", keys[i]);
    CHECK(strstr(buf, "tok_embeddings.weight") != NULL || strstr(buf, "token_embd") != NULL, "no embedding tensor named");
    free(buf);
}

static void test_tokenize(llama_model *m) {
    static const llama_token hello[] = {1, 346, 306, 414, 263, 304, 341}; /* "Hello world" (stories260K README) */
    static const llama_token bytes[] = {1, 410, 485, 410, 198, 191};      /* "\xc3\xa9 \xc3\xbc": byte fallback */
    llama_token toks[64];
    size_t n = 999, i, len;
    llama_status st;
    char text[256];
    g_section = "tokenize / detokenize";

    /* Size query. */
    st = llama_tokenize(m, "Hello world", 11, LLAMA_TOKENIZE_ADD_BOS, NULL, 0, &n);
    CHECK(st == LLAMA_ERR_BUFFER_TOO_SMALL, "size query: got %s: %s", llama_status_str(st), last_error());
    CHECK(n == 7, "size query says %lu tokens, expected 7", (unsigned long)n);

    /* Too small: nothing written. */
    for (i = 0; i < 64; i++) toks[i] = -7;
    st = llama_tokenize(m, "Hello world", 11, LLAMA_TOKENIZE_ADD_BOS, toks, 6, &n);
    CHECK(st == LLAMA_ERR_BUFFER_TOO_SMALL && n == 7, "capacity 6: %s, n %lu", llama_status_str(st), (unsigned long)n);
    for (i = 0; i < 64; i++)
        if (toks[i] != -7) break;
    CHECK(i == 64, "the too-small call wrote toks[%lu]", (unsigned long)i);

    st = llama_tokenize(m, "Hello world", 11, LLAMA_TOKENIZE_ADD_BOS, toks, 64, &n);
    CHECK(st == LLAMA_OK && n == 7, "%s, n %lu", llama_status_str(st), (unsigned long)n);
    CHECK(n == 7 && memcmp(toks, hello, sizeof hello) == 0, "\"Hello world\" -> %d %d %d %d %d %d %d", (int)toks[0],
          (int)toks[1], (int)toks[2], (int)toks[3], (int)toks[4], (int)toks[5], (int)toks[6]);
    CHECK(toks[7] == -7, "wrote past the count");

    /* Without BOS; the text length is a byte count (no NUL needed). */
    st = llama_tokenize(m, "Hello worldXYZ", 11, 0, toks, 64, &n);
    CHECK(st == LLAMA_OK && n == 6 && memcmp(toks, hello + 1, sizeof hello - sizeof hello[0]) == 0,
          "no BOS: %s, n %lu", llama_status_str(st), (unsigned long)n);

    st = llama_tokenize(m, "\xc3\xa9 \xc3\xbc", 5, LLAMA_TOKENIZE_ADD_BOS, toks, 64, &n);
    CHECK(st == LLAMA_OK && n == 6 && memcmp(toks, bytes, sizeof bytes) == 0, "\"\\u00e9 \\u00fc\": %s, n %lu", llama_status_str(st),
          (unsigned long)n);

    /* Special text: plain by default, the BOS id with PARSE_SPECIAL. */
    st = llama_tokenize(m, "<s>", 3, 0, toks, 64, &n);
    CHECK(st == LLAMA_OK && n > 1, "\"<s>\" as text: %s, n %lu", llama_status_str(st), (unsigned long)n);
    st = llama_tokenize(m, "<s>", 3, LLAMA_TOKENIZE_PARSE_SPECIAL, toks, 64, &n);
    CHECK(st == LLAMA_OK && n == 1 && toks[0] == 1, "\"<s>\" special: %s, n %lu, first %d", llama_status_str(st),
          (unsigned long)n, (int)toks[0]);

    /* Detokenize: two-call pattern, BOS dropped, leading space dropped after BOS. */
    st = llama_detokenize(m, hello, 7, 0, NULL, 0, &len);
    CHECK(st == LLAMA_ERR_BUFFER_TOO_SMALL && len == 11, "size query: %s, len %lu", llama_status_str(st), (unsigned long)len);
    memset(text, '#', sizeof text);
    st = llama_detokenize(m, hello, 7, 0, text, 5, &len);
    CHECK(st == LLAMA_ERR_BUFFER_TOO_SMALL && len == 11 && text[0] == '#', "too small: %s, len %lu", llama_status_str(st),
          (unsigned long)len);
    st = llama_detokenize(m, hello, 7, 0, text, sizeof text, &len);
    CHECK(st == LLAMA_OK && len == 11 && strcmp(text, "Hello world") == 0, "detokenize: %s, \"%s\"", llama_status_str(st),
          text);
    st = llama_detokenize(m, bytes, 6, 0, text, sizeof text, &len);
    CHECK(st == LLAMA_OK && len == 5 && memcmp(text, "\xc3\xa9 \xc3\xbc", 5) == 0, "byte tokens: %s, \"%s\"",
          llama_status_str(st), text);
    st = llama_detokenize(m, hello, 7, LLAMA_DETOKENIZE_SKIP_SPECIAL, text, sizeof text, &len);
    CHECK(st == LLAMA_OK && strcmp(text, "Hello world") == 0, "skip special: %s, \"%s\"", llama_status_str(st), text);
    {
        llama_token bad[2] = {1, 512};
        CHECK_STATUS(llama_detokenize(m, bad, 2, 0, text, sizeof text, &len), LLAMA_ERR_INVALID_ARGUMENT);
        bad[1] = -3;
        CHECK_STATUS(llama_detokenize(m, bad, 2, 0, text, sizeof text, &len), LLAMA_ERR_INVALID_ARGUMENT);
    }

    /* Pieces: raw bytes of one token. */
    st = llama_token_to_piece(m, 346, NULL, 0, &len); /* the piece U+2581 "He": " He" */
    CHECK(st == LLAMA_ERR_BUFFER_TOO_SMALL && len == 3, "piece size query: %s, len %lu", llama_status_str(st),
          (unsigned long)len);
    memset(text, '#', sizeof text);
    st = llama_token_to_piece(m, 346, text, 2, &len);
    CHECK(st == LLAMA_ERR_BUFFER_TOO_SMALL && text[0] == '#', "piece too small: %s", llama_status_str(st));
    st = llama_token_to_piece(m, 346, text, sizeof text, &len);
    CHECK(st == LLAMA_OK && len == 3 && strcmp(text, " He") == 0, "piece 346: %s \"%s\"", llama_status_str(st), text);
    st = llama_token_to_piece(m, 198, text, sizeof text, &len); /* <0xC3> */
    CHECK(st == LLAMA_OK && len == 1 && (unsigned char)text[0] == 0xC3, "piece 198: %s len %lu", llama_status_str(st),
          (unsigned long)len);
    st = llama_token_to_piece(m, 13, text, sizeof text, &len); /* <0x0A> */
    CHECK(st == LLAMA_OK && len == 1 && text[0] == '\n', "piece 13: %s len %lu", llama_status_str(st), (unsigned long)len);
    CHECK_STATUS(llama_token_to_piece(m, 512, text, sizeof text, &len), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_token_to_piece(m, -1, text, sizeof text, &len), LLAMA_ERR_INVALID_ARGUMENT);
}

static void test_greedy_reference(llama_model *m) {
    llama_session *s = new_session(m, 0, 0.0f, 0);
    llama_token seq[201], next = -1, bos = llama_token_bos(m);
    int i, mismatch = -1;
    llama_status st;
    const float *logits;
    char *text;
    size_t len = 0;
    g_section = "greedy reference (EXPECTED.md)";

    CHECK(llama_session_logits(s) == NULL, "logits before the first step are not NULL");
    CHECK(llama_session_position(s) == 0, "position %u", (unsigned)llama_session_position(s));

    seq[0] = bos;
    st = llama_step(s, &bos, 1, &next);
    REQUIRE(st == LLAMA_OK, "llama_step(BOS): %s: %s", llama_status_str(st), last_error());
    logits = llama_session_logits(s);
    CHECK(logits != NULL, "logits NULL after a step");
    if (logits) CHECK(argmax(logits, 512) == next, "argmax(logits) %d != sampled %d", argmax(logits, 512), (int)next);
    for (i = 0; i < 200; i++) {
        seq[i + 1] = next;
        if (next != EXPECTED_IDS[i] && mismatch < 0) mismatch = i;
        if (i == 199) break;
        st = llama_step(s, &seq[i + 1], 1, &next);
        if (st != LLAMA_OK) {
            CHECK(st == LLAMA_OK, "llama_step at position %d: %s: %s", i + 1, llama_status_str(st), last_error());
            break;
        }
    }
    CHECK(mismatch < 0, "generated id %d is %d, expected %d", mismatch, mismatch >= 0 ? (int)seq[mismatch + 1] : 0,
          mismatch >= 0 ? (int)EXPECTED_IDS[mismatch] : 0);
    CHECK(llama_session_position(s) == 200, "position %u after 200 steps", (unsigned)llama_session_position(s));

    /* The text of [BOS] + ids. */
    st = llama_detokenize(m, seq, 201, 0, NULL, 0, &len);
    CHECK(st == LLAMA_ERR_BUFFER_TOO_SMALL && len == sizeof EXPECTED_TEXT - 1, "text length %lu, expected %lu",
          (unsigned long)len, (unsigned long)(sizeof EXPECTED_TEXT - 1));
    text = (char *)malloc(len + 1);
    REQUIRE(text != NULL, "malloc");
    st = llama_detokenize(m, seq, 201, 0, text, len + 1, &len);
    CHECK(st == LLAMA_OK && strcmp(text, EXPECTED_TEXT) == 0, "detokenized text differs from EXPECTED.md:\n%s", text);
    free(text);
    llama_session_free(s);

    /* Batched prefill == one token at a time: [BOS] + ids[0..9] in one step predicts ids[10]. */
    s = new_session(m, 0, 0.0f, 0);
    st = llama_step(s, seq, 11, &next);
    CHECK(st == LLAMA_OK && next == EXPECTED_IDS[10], "prefill of 11: %s, next %d, expected %d", llama_status_str(st),
          (int)next, (int)EXPECTED_IDS[10]);
    CHECK(llama_session_position(s) == 11, "position %u after an 11-token step", (unsigned)llama_session_position(s));
    {
        /* Logits of the batched step vs. stepping one by one. */
        float batched[512], worst = 0.0f;
        llama_session *s1 = new_session(m, 0, 0.0f, 0);
        const float *l = llama_session_logits(s);
        int k;
        if (l) memcpy(batched, l, sizeof batched);
        for (k = 0; k < 11; k++) {
            st = llama_step(s1, &seq[k], 1, &next);
            if (st != LLAMA_OK) break;
        }
        l = llama_session_logits(s1);
        CHECK(st == LLAMA_OK && l != NULL, "stepping one by one: %s", llama_status_str(st));
        if (l && llama_session_logits(s))
            for (k = 0; k < 512; k++)
                if (fabsf(l[k] - batched[k]) > worst) worst = fabsf(l[k] - batched[k]);
        CHECK(worst < 1e-3f, "batched vs sequential logits differ by %g", (double)worst);
        llama_session_free(s1);
    }
    llama_session_free(s);
}

static void test_context_full(llama_model *m) {
    llama_session *s = new_session(m, 8, 0.0f, 0);
    llama_token seq[10], next = -1, next2 = -1;
    const float *l;
    float before[512];
    int i;
    llama_status st;
    g_section = "context full";

    seq[0] = 1;
    for (i = 0; i < 9; i++) seq[i + 1] = EXPECTED_IDS[i];

    /* Too many at once into an empty session. */
    st = llama_step(s, seq, 9, &next);
    CHECK(st == LLAMA_ERR_CONTEXT_FULL, "9 tokens into n_ctx 8: %s: %s", llama_status_str(st), last_error());
    CHECK(llama_session_position(s) == 0, "position %u", (unsigned)llama_session_position(s));
    CHECK(llama_session_logits(s) == NULL, "logits not NULL");

    /* Fill it exactly, then one more. */
    st = llama_step(s, seq, 8, &next);
    CHECK(st == LLAMA_OK && next == EXPECTED_IDS[7], "8 tokens: %s, next %d", llama_status_str(st), (int)next);
    CHECK(llama_session_position(s) == 8, "position %u", (unsigned)llama_session_position(s));
    l = llama_session_logits(s);
    REQUIRE(l != NULL, "logits NULL after a step");
    memcpy(before, l, sizeof before);
    next2 = 12345;
    st = llama_step(s, &seq[8], 1, &next2);
    CHECK(st == LLAMA_ERR_CONTEXT_FULL, "one past n_ctx: %s: %s", llama_status_str(st), last_error());
    CHECK(next2 == 12345, "*out_next written on failure");
    CHECK(llama_session_position(s) == 8, "position %u after CONTEXT_FULL", (unsigned)llama_session_position(s));
    l = llama_session_logits(s);
    CHECK(l != NULL && memcmp(l, before, sizeof before) == 0, "logits changed after CONTEXT_FULL");

    /* Out-of-range tokens: INVALID_ARGUMENT, session unchanged. */
    {
        llama_token bad[2] = {5, 512};
        CHECK_STATUS(llama_session_rewind(s, 6), LLAMA_OK);
        CHECK_STATUS(llama_step(s, bad, 2, &next2), LLAMA_ERR_INVALID_ARGUMENT);
        bad[1] = -1;
        CHECK_STATUS(llama_step(s, bad, 2, &next2), LLAMA_ERR_INVALID_ARGUMENT);
        CHECK(llama_session_position(s) == 6, "position %u after invalid tokens", (unsigned)llama_session_position(s));
    }
    llama_session_free(s);
}

static void test_rewind_reset(llama_model *m) {
    llama_session *s = new_session(m, 0, 0.0f, 0);
    llama_token bos = 1, next = -1;
    int i;
    llama_status st;
    g_section = "rewind / reset / abort";

    st = llama_step(s, &bos, 1, &next);
    for (i = 0; i < 20 && st == LLAMA_OK; i++) st = llama_step(s, &next, 1, &next);
    REQUIRE(st == LLAMA_OK && llama_session_position(s) == 21, "21 steps: %s, position %u", llama_status_str(st),
            (unsigned)llama_session_position(s));

    /* Rewind past the end: error, unchanged. */
    CHECK_STATUS(llama_session_rewind(s, 22), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK(llama_session_position(s) == 21, "position %u", (unsigned)llama_session_position(s));
    /* Rewind to the current position: a no-op. */
    CHECK_STATUS(llama_session_rewind(s, 21), LLAMA_OK);
    CHECK(llama_session_position(s) == 21, "position %u", (unsigned)llama_session_position(s));

    /* Rewind to 5 and redo position 5: the same prediction as the first time. */
    CHECK_STATUS(llama_session_rewind(s, 5), LLAMA_OK);
    CHECK(llama_session_position(s) == 5, "position %u after rewind(5)", (unsigned)llama_session_position(s));
    st = llama_step(s, &EXPECTED_IDS[4], 1, &next);
    CHECK(st == LLAMA_OK && next == EXPECTED_IDS[5], "after rewind: %s, next %d, expected %d", llama_status_str(st),
          (int)next, (int)EXPECTED_IDS[5]);
    /* Rewind then replace history with other tokens, then back to the reference path. */
    CHECK_STATUS(llama_session_rewind(s, 1), LLAMA_OK);
    {
        llama_token other[3] = {300, 301, 302};
        CHECK_STATUS(llama_step(s, other, 3, &next), LLAMA_OK);
        CHECK_STATUS(llama_session_rewind(s, 1), LLAMA_OK);
        st = llama_step(s, EXPECTED_IDS, 3, &next);
        CHECK(st == LLAMA_OK && next == EXPECTED_IDS[3], "after overwrite: %s, next %d, expected %d", llama_status_str(st),
              (int)next, (int)EXPECTED_IDS[3]);
    }

    /* Reset: position 0, logits NULL, and BOS predicts the first id again. */
    CHECK_STATUS(llama_session_reset(s), LLAMA_OK);
    CHECK(llama_session_position(s) == 0, "position %u after reset", (unsigned)llama_session_position(s));
    CHECK(llama_session_logits(s) == NULL, "logits not NULL after reset");
    CHECK_STATUS(llama_session_rewind(s, 1), LLAMA_ERR_INVALID_ARGUMENT);
    st = llama_step(s, &bos, 1, &next);
    CHECK(st == LLAMA_OK && next == EXPECTED_IDS[0], "after reset: %s, next %d", llama_status_str(st), (int)next);

    /* Abort: the next step is cancelled, the session unchanged; the one after works. */
    llama_session_abort(s);
    st = llama_step(s, &next, 1, &next);
    CHECK(st == LLAMA_ERR_CANCELLED, "step after abort: %s: %s", llama_status_str(st), last_error());
    CHECK(llama_session_position(s) == 1, "position %u after a cancelled step", (unsigned)llama_session_position(s));
    next = EXPECTED_IDS[0];
    st = llama_step(s, &next, 1, &next);
    CHECK(st == LLAMA_OK && next == EXPECTED_IDS[1], "step after the cancelled one: %s, next %d", llama_status_str(st),
          (int)next);

    /* A stray abort (issued after the generation ended) does not survive reset or rewind: the
       next conversation's first step runs. */
    llama_session_abort(s);
    CHECK_STATUS(llama_session_reset(s), LLAMA_OK);
    st = llama_step(s, &bos, 1, &next);
    CHECK(st == LLAMA_OK && next == EXPECTED_IDS[0], "first step after abort + reset: %s: %s", llama_status_str(st),
          last_error());
    llama_session_abort(s);
    CHECK_STATUS(llama_session_rewind(s, 0), LLAMA_OK);
    st = llama_step(s, &bos, 1, &next);
    CHECK(st == LLAMA_OK && next == EXPECTED_IDS[0], "first step after abort + rewind: %s: %s", llama_status_str(st),
          last_error());
    /* A failed rewind leaves the abort pending. */
    llama_session_abort(s);
    CHECK_STATUS(llama_session_rewind(s, 99), LLAMA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(llama_step(s, &next, 1, &next), LLAMA_ERR_CANCELLED);
    llama_session_free(s);
}

static void test_sampling_determinism(llama_model *m) {
    llama_token a[40], b[40], c[40], bos = 1;
    llama_session *s1 = new_session(m, 0, 0.9f, 42), *s2 = new_session(m, 0, 0.9f, 42);
    int i, same_as_greedy = 1;
    llama_status st = LLAMA_OK;
    g_section = "sampling";

    st = llama_step(s1, &bos, 1, &a[0]);
    for (i = 1; i < 40 && st == LLAMA_OK; i++) st = llama_step(s1, &a[i - 1], 1, &a[i]);
    CHECK(st == LLAMA_OK, "sampling run 1: %s", llama_status_str(st));
    st = llama_step(s2, &bos, 1, &b[0]);
    for (i = 1; i < 40 && st == LLAMA_OK; i++) st = llama_step(s2, &b[i - 1], 1, &b[i]);
    CHECK(st == LLAMA_OK, "sampling run 2: %s", llama_status_str(st));
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, same inputs, different tokens");
    /* Reset restarts the generator from the seed. */
    CHECK_STATUS(llama_session_reset(s1), LLAMA_OK);
    st = llama_step(s1, &bos, 1, &c[0]);
    for (i = 1; i < 40 && st == LLAMA_OK; i++) st = llama_step(s1, &c[i - 1], 1, &c[i]);
    CHECK(st == LLAMA_OK && memcmp(a, c, sizeof a) == 0, "after reset the same seed gives other tokens");
    for (i = 0; i < 40; i++)
        if (a[i] != EXPECTED_IDS[i]) same_as_greedy = 0;
    CHECK(!same_as_greedy, "temperature 0.9 gave exactly the greedy tokens (is the sampler used?)");
    for (i = 0; i < 40; i++) CHECK(a[i] >= 0 && a[i] < 512, "sampled id %d out of range", (int)a[i]);
    llama_session_free(s1);
    llama_session_free(s2);
}

static void test_model_outlives_handle(void) {
    llama_model *m = load_bundled();
    llama_session *s = new_session(m, 0, 0.0f, 0), *s2 = new_session(m, 0, 0.0f, 0);
    llama_token next = 1;
    int i;
    llama_status st = LLAMA_OK;
    g_section = "session keeps the model alive";

    llama_model_free(m); /* the sessions still hold references */
    st = llama_step(s, &next, 1, &next);
    for (i = 0; i < 30 && st == LLAMA_OK; i++) {
        CHECK(next == EXPECTED_IDS[i], "id %d is %d, expected %d", i, (int)next, (int)EXPECTED_IDS[i]);
        st = llama_step(s, &next, 1, &next);
    }
    CHECK(st == LLAMA_OK, "stepping after llama_model_free: %s: %s", llama_status_str(st), last_error());
    llama_session_free(s);
    next = 1;
    st = llama_step(s2, &next, 1, &next); /* the last reference */
    CHECK(st == LLAMA_OK && next == EXPECTED_IDS[0], "second session: %s, next %d", llama_status_str(st), (int)next);
    llama_session_free(s2);
}

static int g_log_lines = 0, g_log_bad = 0, g_log_levels_bad = 0;
static void *g_log_user = NULL;
static void on_log(int32_t level, const char *line, void *user_data) {
    g_log_lines++;
    if (!line || user_data != g_log_user) g_log_bad++;
    else if (strchr(line, '\n') != NULL && strchr(line, '\n')[1] != '\0') g_log_bad++;
    if (level < 0 || level > 3) g_log_levels_bad++;
}

typedef struct {
    int calls;
    int cancel_at;
    float last;
    int out_of_range;
    int decreasing;
} progress_state;

static int32_t on_progress(float fraction, void *user_data) {
    progress_state *p = (progress_state *)user_data;
    if (!(fraction >= 0.0f && fraction <= 1.0f)) p->out_of_range++;
    if (p->calls > 0 && fraction < p->last) p->decreasing++;
    p->last = fraction;
    p->calls++;
    return p->cancel_at > 0 && p->calls >= p->cancel_at ? 1 : 0;
}

static void test_callbacks(void) {
    llama_model *m = NULL;
    llama_load_params lp;
    progress_state ps;
    int marker = 0;
    llama_status st;
    const char *err;
    g_section = "callbacks";

    /* Log: whole lines with our user data. */
    g_log_user = &marker;
    llama_set_log_callback(on_log, &marker);
    m = load_bundled();
    CHECK(g_log_lines > 0, "no log line during a load");
    {
        int before = g_log_lines;
        llama_model *m2 = NULL;
        st = llama_load("/nonexistent/runllama/model.gguf", NULL, &m2);
        CHECK(st == LLAMA_ERR_IO, "missing file: %s", llama_status_str(st));
        CHECK(g_log_lines > before, "no log line for a failed load");
    }
    CHECK(g_log_bad == 0, "%d log lines were NULL, had the wrong user data or several lines", g_log_bad);
    CHECK(g_log_levels_bad == 0, "%d log levels outside 0..3", g_log_levels_bad);
    llama_set_log_callback(NULL, NULL);
    {
        int before = g_log_lines;
        llama_model *m2 = load_bundled();
        llama_model_free(m2);
        CHECK(g_log_lines == before, "the log callback was called after being removed");
    }
    llama_model_free(m);

    /* Progress: fractions in [0, 1], not decreasing, ending at 1. */
    memset(&ps, 0, sizeof ps);
    lp = load_params();
    lp.progress = on_progress;
    lp.progress_user_data = &ps;
    m = NULL;
    st = llama_load(g_model_path, &lp, &m);
    CHECK(st == LLAMA_OK, "load with progress: %s: %s", llama_status_str(st), last_error());
    CHECK(ps.calls > 0, "the progress callback was never called");
    CHECK(ps.out_of_range == 0 && ps.decreasing == 0, "%d fractions outside [0,1], %d decreasing", ps.out_of_range,
          ps.decreasing);
    CHECK(ps.last == 1.0f, "the last fraction was %g, not 1", (double)ps.last);
    llama_model_free(m);

    /* Progress returning 1: LLAMA_ERR_CANCELLED, no model. */
    memset(&ps, 0, sizeof ps);
    ps.cancel_at = 1;
    m = (llama_model *)(uintptr_t)1;
    st = llama_load(g_model_path, &lp, &m);
    err = last_error();
    CHECK(st == LLAMA_ERR_CANCELLED, "cancel at the first call: %s: %s", llama_status_str(st), err);
    CHECK(m == NULL, "*out_model not NULL after a cancelled load");
    CHECK(ps.calls == 1, "the callback was called %d times after asking to stop", ps.calls);
    memset(&ps, 0, sizeof ps);
    ps.cancel_at = 3;
    st = llama_load(g_model_path, &lp, &m);
    CHECK(st == LLAMA_ERR_CANCELLED, "cancel at the third call: %s: %s", llama_status_str(st), last_error());
}

/* Callbacks that call back into the API (API.md v2 section 3). */
static int g_reentrant_calls = 0;
static llama_status g_nested_status = LLAMA_OK;
static char g_nested_error[512];

/* Reinstalls itself (the sink's lock must not be held while it runs), then makes a failing call
   of its own, whose error it sees; the outer call's error must survive it. The nested call's
   own log line is not delivered (it would recurse for ever). */
static void on_log_reentrant(int32_t level, const char *line, void *user_data) {
    llama_model *m = NULL;
    (void)level;
    (void)line;
    g_reentrant_calls++;
    if (g_reentrant_calls > 10) return; /* the library did not stop the recursion: fail below */
    llama_set_log_callback(on_log_reentrant, user_data);
    g_nested_status = llama_load("/nonexistent/nested/inner.gguf", NULL, &m);
    snprintf(g_nested_error, sizeof g_nested_error, "%s", llama_last_error());
}

static int32_t on_progress_reentrant(float fraction, void *user_data) {
    llama_model *m = NULL;
    (void)fraction;
    (void)user_data;
    g_reentrant_calls++;
    g_nested_status = llama_load("/nonexistent/nested/progress.gguf", NULL, &m);
    return 0;
}

static void test_reentrant_callbacks(void) {
    llama_model *m = NULL;
    llama_load_params lp;
    llama_status st;
    const char *err;
    g_section = "reentrant callbacks";

    llama_set_log_callback(on_log_reentrant, NULL);
    st = llama_load("/nonexistent/outer/model.gguf", NULL, &m);
    err = last_error();
    llama_set_log_callback(NULL, NULL);
    CHECK(g_reentrant_calls == 1, "the log callback was called %d times (once expected)", g_reentrant_calls);
    CHECK(st == LLAMA_ERR_IO, "outer load: %s", llama_status_str(st));
    CHECK(g_nested_status == LLAMA_ERR_IO && strstr(g_nested_error, "inner.gguf") != NULL,
          "the callback's own call: %s, \"%s\"", llama_status_str(g_nested_status), g_nested_error);
    CHECK(strstr(err, "outer/model.gguf") != NULL, "the outer error was replaced: \"%s\"", err);

    /* A progress callback's failing call leaves no error behind a successful load. */
    g_reentrant_calls = 0;
    lp = load_params();
    lp.progress = on_progress_reentrant;
    st = llama_load(g_model_path, &lp, &m);
    err = last_error();
    CHECK(st == LLAMA_OK && g_reentrant_calls > 0 && g_nested_status == LLAMA_ERR_IO,
          "load with a reentrant progress callback: %s, %d calls", llama_status_str(st), g_reentrant_calls);
    CHECK(err[0] == '\0', "a successful load left the error \"%s\"", err);
    llama_model_free(m);
}

static void test_chat(llama_model *m) {
    llama_chat_message msgs[2];
    size_t n = 0;
    llama_token toks[256];
    llama_status st;
    g_section = "chat";
    msgs[0].role = "system";
    msgs[0].content = "Be brief.";
    msgs[1].role = "user";
    msgs[1].content = "Hi";
    st = llama_chat_tokenize(m, msgs, 2, LLAMA_CHAT_ADD_ASSISTANT, NULL, 0, &n);
    CHECK(st == LLAMA_ERR_BUFFER_TOO_SMALL && n > 3, "size query: %s, n %lu", llama_status_str(st), (unsigned long)n);
    st = llama_chat_tokenize(m, msgs, 2, LLAMA_CHAT_ADD_ASSISTANT, toks, 256, &n);
    CHECK(st == LLAMA_OK && n > 3 && toks[0] == 1, "chat: %s, n %lu, first %d", llama_status_str(st), (unsigned long)n,
          (int)toks[0]);
    msgs[1].role = "robot";
    CHECK_STATUS(llama_chat_tokenize(m, msgs, 2, 0, toks, 256, &n), LLAMA_ERR_INVALID_ARGUMENT);
    msgs[1].role = "user";
    msgs[1].content = NULL;
    CHECK_STATUS(llama_chat_tokenize(m, msgs, 2, 0, toks, 256, &n), LLAMA_ERR_INVALID_ARGUMENT);
    msgs[1].content = "Hi";
    CHECK_STATUS(llama_chat_tokenize(m, msgs, 2, 0x40, toks, 256, &n), LLAMA_ERR_INVALID_ARGUMENT);
}

int main(int argc, char **argv) {
    const char *data_dir, *tmp_dir;
    llama_model *m;
    rl_utf8_argv(&argc, &argv);
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s <data dir with stories260K.bin and tok512.bin> [temp dir]\n", argv[0]);
        return 2;
    }
    data_dir = argv[1];
    tmp_dir = argc > 2 ? argv[2] : getenv("TMPDIR");
    if (!tmp_dir || !*tmp_dir) tmp_dir = "/tmp";
    join_path(g_model_path, sizeof g_model_path, data_dir, "stories260K.bin");
    join_path(g_tok_path, sizeof g_tok_path, data_dir, "tok512.bin");

    test_basics();
    test_load_errors(tmp_dir);
    m = load_bundled();
    test_struct_versions(m);
    test_null_and_invalid(m);
    test_model_info(m);
    test_describe(m);
    test_tokenize(m);
    test_chat(m);
    test_greedy_reference(m);
    test_context_full(m);
    test_rewind_reset(m);
    test_sampling_determinism(m);
    llama_model_free(m);
    test_model_outlives_handle();
    test_callbacks();
    test_reentrant_callbacks();

    if (g_failures) {
        fprintf(stderr, "api_test: %d of %d checks FAILED\n", g_failures, g_checks);
        return 1;
    }
    printf("api_test: all %d checks passed\n", g_checks);
    return 0;
}
