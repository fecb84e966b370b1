/* ckpt_info: list the tensors of a model file (index, name, dtype, shape) and the resolved
 * hyper-parameters, like the original MindFormers tutorial's checkpoint listing.
 *
 *   ckpt_info [-V 0|2|3] [-C config] [-F tokenizer] <model file or directory>
 *
 * Works for every format the library loads (.ckpt, .gguf, safetensors, llama2.c .bin). For a
 * MindSpore .ckpt, -C names the MindFormers yaml (without it, what the shapes do not give is
 * assumed from the LLaMA version's defaults, and listed as such). A tokenizer must be found
 * (embedded, tokenizer.model beside the weights, or -F).
 *
 * Exit status: 0 ok, 1 an API call failed, 2 bad usage. C99; also compiles as C++.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runllama.h"
#include "common.h"

#define PROG "ckpt_info"

static void usage(void) {
    fprintf(stderr, "usage: %s [-V 0|2|3] [-C config] [-F tokenizer] <model file or directory>\n", PROG);
}

int main(int argc, char **argv) {
    llama_load_params lp;
    llama_model *model = NULL;
    llama_model_hparams hp;
    llama_status st;
    const char *path = NULL;
    int32_t i, n, d;
    int a;

    rl_utf8_argv(&argc, &argv);
    rl_binary_stdout();
    llama_load_params_init(&lp, sizeof lp);
    for (a = 1; a < argc; a++) {
        if ((strcmp(argv[a], "-V") == 0 || strcmp(argv[a], "-C") == 0 || strcmp(argv[a], "-F") == 0) && a + 1 < argc) {
            if (argv[a][1] == 'V') {
                char *end = NULL;
                long v = strtol(argv[a + 1], &end, 10);
                if (!end || *end || (v != 0 && v != 2 && v != 3)) {
                    usage();
                    return 2;
                }
                lp.version = (int32_t)v;
            } else if (argv[a][1] == 'C') {
                lp.config_path = argv[a + 1];
            } else {
                lp.tokenizer_path = argv[a + 1];
            }
            a++;
        } else if (argv[a][0] == '-' || path) {
            usage();
            return 2;
        } else {
            path = argv[a];
        }
    }
    if (!path) {
        usage();
        return 2;
    }
    lp.n_threads = 1;
    st = llama_load(path, &lp, &model);
    if (st != LLAMA_OK) die_api(PROG, "llama_load", st);

    n = llama_model_n_tensors(model);
    printf("%s: %d tensors\n", path, (int)n);
    for (i = 0; i < n; i++) {
        llama_tensor_info t;
        memset(&t, 0, sizeof t);
        t.size = (uint32_t)sizeof t;
        st = llama_model_tensor(model, i, &t);
        if (st != LLAMA_OK) die_api(PROG, "llama_model_tensor", st);
        printf("%5d  %-56s %-5s [", (int)i, t.name, t.dtype);
        for (d = 0; d < t.n_dims; d++) printf(d ? ", %lld" : "%lld", (long long)t.shape[d]);
        printf("]\n");
    }

    memset(&hp, 0, sizeof hp);
    hp.size = (uint32_t)sizeof hp;
    st = llama_model_get_hparams(model, &hp);
    if (st != LLAMA_OK) die_api(PROG, "llama_model_get_hparams", st);
    printf("LLaMA %d: n_vocab %d, n_embd %d, n_layer %d, n_head %d, n_head_kv %d, n_ff %d, n_ctx_train %d, "
           "rope_theta %g, norm_eps %g, %llu parameters\n",
           (int)hp.version, (int)hp.n_vocab, (int)hp.n_embd, (int)hp.n_layer, (int)hp.n_head, (int)hp.n_head_kv,
           (int)hp.n_ff, (int)hp.n_ctx_train, (double)hp.rope_theta, (double)hp.norm_eps,
           (unsigned long long)hp.n_params);
    {
        /* Which values were assumed: the "assumed" array of the describe JSON. */
        size_t len = 0;
        char *json;
        const char *p;
        st = llama_model_describe(model, NULL, 0, &len);
        if (st != LLAMA_OK && st != LLAMA_ERR_BUFFER_TOO_SMALL) die_api(PROG, "llama_model_describe", st);
        json = (char *)malloc(len + 1);
        if (!json) return 1;
        st = llama_model_describe(model, json, len + 1, &len);
        if (st != LLAMA_OK) die_api(PROG, "llama_model_describe", st);
        p = strstr(json, "\"assumed\":[");
        if (p) {
            const char *end = strchr(p, ']');
            if (end && end - p > 11) printf("assumed: %.*s\n", (int)(end - p - 11), p + 11);
        }
        free(json);
    }
    llama_model_free(model);
    return 0;
}
