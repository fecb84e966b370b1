/* The llama.cpp oracle of the quantized fixtures (a development-time tool; only its outputs,
 * tests/data/quant/*.llama-logits, are kept). Runs MODEL greedily from BOS for N positions
 * in llama.cpp, one token per decode, F32 KV cache, flash attention off (llama.cpp's CPU flash
 * attention rounds through f16: on the F32 stories260K it moves logits by 9e-4, where ours
 * and an f64 reference agree to 3e-6), 2 threads, and writes OUT:
 *
 *   u32 n, u32 n_vocab, n x u32 (the token fed at each position: BOS, then each argmax),
 *   n x n_vocab x f32 (the logits after each position), all little-endian.
 *
 * Built against llama.cpp (commit 0c1e570, the vendor/llama.cpp of llama-cpp-python 0.3.36
 * from PyPI):
 *   cc -O2 -o llama_logits tests/data/quant/llama_logits.c -I$LLAMA/include \
 *      -I$LLAMA/ggml/include -L$BUILD/bin -lllama -lggml -lggml-base -Wl,-rpath,$BUILD/bin
 *   for f in tests/data/quant/*.gguf; do case $f in *dequant*) continue;; esac
 *     ./llama_logits $f 64 ${f%.gguf}.llama-logits; done
 * (the fixtures were made with the native build on an AMD Zen 4; a scalar build, cmake
 * -DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF
 * -DGGML_SSE42=OFF, measured llama.cpp's own spread quoted in tests/model_quant.rs).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)level;
    (void)text;
    (void)user;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL N OUT\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    uint32_t n = (uint32_t)atoi(argv[2]);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n + 8;
    cp.n_batch = n + 8;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    uint32_t nv = (uint32_t)llama_vocab_n_tokens(vocab);
    uint32_t *tokens = malloc(n * sizeof *tokens);
    float *logits = malloc((size_t)n * nv * sizeof *logits);
    llama_token tok = llama_vocab_bos(vocab);
    for (uint32_t i = 0; i < n; i++) {
        tokens[i] = (uint32_t)tok;
        if (llama_decode(ctx, llama_batch_get_one(&tok, 1)) != 0) {
            fprintf(stderr, "decode failed at %u\n", i);
            return 1;
        }
        const float *lg = llama_get_logits_ith(ctx, -1);
        uint32_t best = 0;
        for (uint32_t v = 0; v < nv; v++) {
            logits[(size_t)i * nv + v] = lg[v];
            if (lg[v] > lg[best]) best = v;
        }
        tok = (llama_token)best;
    }
    FILE *f = fopen(argv[3], "wb");
    if (!f) return 1;
    fwrite(&n, 4, 1, f);
    fwrite(&nv, 4, 1, f);
    fwrite(tokens, 4, n, f);
    fwrite(logits, 4, (size_t)n * nv, f);
    fclose(f);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
