/* v1_host: a host program written and compiled against API version 1's header (tests/c/v1/
 * runllama.h: the header of commit 3c7aa31, API.md version 1 exactly, with the 32-byte
 * llama_session_params that had no kv_type yet), run against the current library. It must keep working: the by-value defaults give it structs of its own
 * size (never more bytes than its struct holds), the library reads no more than `size` bytes,
 * and the bundled model generates the reference ids.
 *
 *   v1_host <data dir with stories260K.bin and tok512.bin>
 *
 * Exits 0 when every check passed, 1 otherwise.
 */
#include <stdio.h>
#include <string.h>

#include "runllama.h" /* the version-1 header */

static int g_failures = 0;

#define CHECK(cond, ...)                                                                                       \
    do {                                                                                                       \
        if (!(cond)) {                                                                                         \
            g_failures++;                                                                                      \
            fprintf(stderr, "FAIL %s:%d: %s -- ", __FILE__, __LINE__, #cond);                                  \
            fprintf(stderr, __VA_ARGS__);                                                                      \
            fprintf(stderr, " (last error: %s)\n", llama_last_error());                                        \
        }                                                                                                      \
    } while (0)

static const llama_token EXPECTED_IDS[20] = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298,
                                             315, 421, 395, 317, 426, 338, 401, 396, 267, 337};

/* A struct with guard bytes after it: the library must never write into them. */
typedef struct {
    llama_session_params p;
    unsigned char guard[32];
} boxed_session_params;

static int guard_intact(const unsigned char *g, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (g[i] != 0xA5) return 0;
    return 1;
}

int main(int argc, char **argv) {
    char model_path[4096], tok_path[4096];
    llama_load_params lp;
    boxed_session_params sp;
    llama_model_hparams hp;
    llama_tensor_info ti;
    llama_model *m = NULL;
    llama_session *s = NULL;
    llama_token t = 1;
    llama_status st;
    int i;
    if (argc != 2) {
        fprintf(stderr, "usage: %s <data dir>\n", argv[0]);
        return 2;
    }
    snprintf(model_path, sizeof model_path, "%s/stories260K.bin", argv[1]);
    snprintf(tok_path, sizeof tok_path, "%s/tok512.bin", argv[1]);

    CHECK(LLAMA_API_VERSION == 1, "this program must be built against the version-1 header");
    CHECK(llama_api_version() >= 1, "library API version %u", (unsigned)llama_api_version());

    /* The version-1 by-value defaults: the sizes this program was compiled with. */
    lp = llama_load_params_default();
    CHECK(lp.size == sizeof lp, "llama_load_params_default() says size %u, the v1 struct is %u bytes", (unsigned)lp.size,
          (unsigned)sizeof lp);
    memset(&sp, 0xA5, sizeof sp);
    sp.p = llama_session_params_default();
    CHECK(sp.p.size == sizeof sp.p, "llama_session_params_default() says size %u, the v1 struct is %u bytes",
          (unsigned)sp.p.size, (unsigned)sizeof sp.p);
    CHECK(sp.p.top_p == 1.0f && sp.p.repeat_penalty == 1.0f && sp.p.temperature == 0.0f, "v1 session defaults");

    lp.tokenizer_path = tok_path;
    lp.n_threads = 2;
    st = llama_load(model_path, &lp, &m);
    CHECK(st == LLAMA_OK && m != NULL, "llama_load: %d", (int)st);
    if (!m) return 1;

    st = llama_session_new(m, &sp.p, &s);
    CHECK(st == LLAMA_OK && s != NULL, "llama_session_new: %d", (int)st);
    CHECK(guard_intact(sp.guard, sizeof sp.guard), "the library wrote past the v1 llama_session_params");
    for (i = 0; s && i < 20; i++) {
        st = llama_step(s, &t, 1, &t);
        CHECK(st == LLAMA_OK && t == EXPECTED_IDS[i], "step %d: status %d, id %d, expected %d", i, (int)st, (int)t,
              (int)EXPECTED_IDS[i]);
    }
    llama_session_free(s);

    /* A struct filled by hand, padding bytes left as garbage. */
    memset(&sp, 0xA5, sizeof sp);
    sp.p.size = (uint32_t)sizeof sp.p;
    sp.p.n_ctx = 32;
    sp.p.temperature = 0.0f;
    sp.p.top_k = 0;
    sp.p.top_p = 1.0f;
    sp.p.repeat_penalty = 1.0f;
    sp.p.seed = 0;
    s = NULL;
    st = llama_session_new(m, &sp.p, &s);
    CHECK(st == LLAMA_OK && s != NULL, "llama_session_new with a hand-filled v1 struct: %d", (int)st);
    t = 1;
    if (s) st = llama_step(s, &t, 1, &t);
    CHECK(st == LLAMA_OK && t == EXPECTED_IDS[0], "first step: status %d, id %d", (int)st, (int)t);
    llama_session_free(s);

    /* The v1 out-structs. */
    memset(&hp, 0, sizeof hp);
    hp.size = (uint32_t)sizeof hp;
    CHECK(llama_model_get_hparams(m, &hp) == LLAMA_OK && hp.n_vocab == 512 && hp.n_layer == 5 && hp.size == sizeof hp,
          "hparams: n_vocab %d, n_layer %d", (int)hp.n_vocab, (int)hp.n_layer);
    memset(&ti, 0, sizeof ti);
    ti.size = (uint32_t)sizeof ti;
    CHECK(llama_model_tensor(m, 0, &ti) == LLAMA_OK && ti.name != NULL && ti.n_dims >= 1, "tensor 0");

    llama_model_free(m);
    if (g_failures) {
        fprintf(stderr, "v1_host: %d checks FAILED\n", g_failures);
        return 1;
    }
    printf("v1_host: a version-1 host works with this library (API version %u)\n", (unsigned)llama_api_version());
    return 0;
}
