/* run_model: generate text with runllama, in the style of llama2.c's `run`.
 *
 *   run_model [-M weights] [-F tokenizer] [-C config] [-V 0|2|3] [-p prompt] [-n steps]
 *             [-t temperature] [-s seed] [-k top_k] [-P top_p] [-r repeat_penalty]
 *             [-c n_ctx] [-T threads] [-K f16|f32|q8_0|q4_0|q8_0_q4_0] [-B f32|rounded]
 *
 * With no -M it runs the bundled stories260K model (tests/data/stories260K/stories260K.bin with
 * tok512.bin). Defaults are greedy and 200 positions, so with no arguments it prints exactly
 * llama2.c's `./run stories260K.bin -z tok512.bin -t 0.0 -n 200` (the story of
 * tests/data/stories260K/expected.txt followed by a newline).
 *
 * The prompt is tokenized with BOS, run through the model in one batched llama_step (prefill),
 * then one token per step is sampled until the position reaches -n or an end-of-generation (or
 * BOS, as llama2.c) token comes. Text streams to stdout; timings go to stderr.
 *
 * Exit status: 0 ok, 1 an API call failed (its status and message on stderr), 2 bad usage.
 * C99; also compiles as C++.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "runllama.h"

static const char *PROG = "run_model";

/* Bad usage: the message and the usage on stderr, exit 2. With `help`: the usage on stdout, exit 0. */
static void usage_exit(const char *msg, int help) {
    FILE *out = help ? stdout : stderr;
    if (msg) fprintf(stderr, "%s: %s\n", PROG, msg);
    fprintf(out,
            "usage: %s [options]\n"
            "  -M <path>   weights: .gguf, .safetensors or a directory, llama2.c .bin\n"
            "              (default: the bundled stories260K.bin, with -F tok512.bin)\n"
            "  -F <path>   tokenizer file (tokenizer.model or llama2.c tokenizer .bin)\n"
            "  -C <path>   config file (config.json)\n"
            "  -V <0|2|3>  LLaMA version (0 = detect, default)\n"
            "  -p <text>   prompt (default: empty = start from BOS)\n"
            "  -n <int>    positions to run, prompt included (default 200; 0 = the context)\n"
            "  -t <float>  temperature (default 0 = greedy)\n"
            "  -s <int>    seed (default 0)\n"
            "  -k <int>    top-k (default 0 = off)\n"
            "  -P <float>  top-p (default 1.0 = off)\n"
            "  -r <float>  repeat penalty (default 1.0 = off)\n"
            "  -c <int>    context length (default 0 = the model's, at most 4096)\n"
            "  -T <int>    threads (default 0 = one per core)\n"
            "  -K <type>   KV cache type: f16 (default), f32, q8_0, q4_0 or q8_0_q4_0 (K q8_0, V q4_0)\n"
            "  -B <mode>   products of bf16 weights: f32 (default) or rounded (activations rounded to\n"
            "              bf16 on CPUs with AVX512_BF16: faster prompts, logits move slightly)\n",
            PROG);
    exit(help ? 0 : 2);
}

static void usage(const char *msg) { usage_exit(msg, 0); }

static long parse_long(const char *opt, const char *s, long lo, long hi) {
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "%s: %s expects an integer in [%ld, %ld], got \"%s\"\n", PROG, opt, lo, hi, s);
        usage(NULL);
    }
    return v;
}

static uint64_t parse_u64(const char *opt, const char *s) {
    char *end;
    unsigned long long v;
    errno = 0;
    if (*s == '-') {
        fprintf(stderr, "%s: %s expects a non-negative integer, got \"%s\"\n", PROG, opt, s);
        usage(NULL);
    }
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0') {
        fprintf(stderr, "%s: %s expects a non-negative integer, got \"%s\"\n", PROG, opt, s);
        usage(NULL);
    }
    return (uint64_t)v;
}

static float parse_float(const char *opt, const char *s) {
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || v != v) {
        fprintf(stderr, "%s: %s expects a number, got \"%s\"\n", PROG, opt, s);
        usage(NULL);
    }
    return (float)v;
}

/* Write the bytes of token `t` to stdout; with `strip_space`, without a leading ' '. */
static void print_piece(const llama_model *m, llama_token t, int strip_space) {
    char small[256];
    char *buf = small;
    size_t len = 0;
    llama_status st = llama_token_to_piece(m, t, small, sizeof small, &len);
    if (st == LLAMA_ERR_BUFFER_TOO_SMALL) {
        buf = (char *)malloc(len + 1);
        if (!buf) {
            fprintf(stderr, "%s: out of memory\n", PROG);
            exit(1);
        }
        st = llama_token_to_piece(m, t, buf, len + 1, &len);
    }
    if (st != LLAMA_OK) die_api(PROG, "llama_token_to_piece", st);
    {
        const char *p = buf;
        if (strip_space && len > 0 && p[0] == ' ') {
            p++;
            len--;
        }
        fwrite(p, 1, len, stdout);
        fflush(stdout);
    }
    if (buf != small) free(buf);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *tokenizer_path = NULL, *config_path = NULL, *prompt = NULL;
    long version = 0, steps = 200, top_k = 0, n_ctx = 0, threads = 0;
    int32_t kv_type = LLAMA_KV_F16;
    int32_t bf16_products = LLAMA_BF16_PRODUCTS_F32;
    float temperature = 0.0f, top_p = 1.0f, repeat_penalty = 1.0f;
    uint64_t seed = 0;
    char data_dir[4096], default_model[4200], default_tok[4200];
    llama_load_params lp;
    llama_session_params sp;
    llama_model *model = NULL;
    llama_session *session = NULL;
    llama_status st;
    llama_token *tokens = NULL;
    size_t n_prompt = 0, need = 0;
    llama_token next, bos;
    long ctx_len, n_generated = 0, n_decode = 0;
    double t0, t_load, t_prefill, t_decode;
    int i;

    rl_utf8_argv(&argc, &argv);
    rl_binary_stdout();
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) usage_exit(NULL, 1);
        if (a[0] != '-' || a[1] == '\0' || a[2] != '\0') {
            fprintf(stderr, "%s: unexpected argument \"%s\"\n", PROG, a);
            usage(NULL);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: option %s needs a value\n", PROG, a);
            usage(NULL);
        }
        v = argv[++i];
        switch (a[1]) {
        case 'M': model_path = v; break;
        case 'F': tokenizer_path = v; break;
        case 'C': config_path = v; break;
        case 'V':
            version = parse_long(a, v, 0, 3);
            if (version == 1) usage("-V must be 0, 2 or 3");
            break;
        case 'p': prompt = v; break;
        case 'n': steps = parse_long(a, v, 0, INT32_MAX); break;
        case 't':
            temperature = parse_float(a, v);
            if (temperature < 0.0f) usage("-t must be >= 0");
            break;
        case 's': seed = parse_u64(a, v); break;
        case 'k': top_k = parse_long(a, v, 0, INT32_MAX); break;
        case 'P':
            top_p = parse_float(a, v);
            if (top_p <= 0.0f || top_p > 1.0f) usage("-P must be in (0, 1]");
            break;
        case 'r':
            repeat_penalty = parse_float(a, v);
            if (repeat_penalty <= 0.0f) usage("-r must be > 0");
            break;
        case 'c': n_ctx = parse_long(a, v, 0, INT32_MAX); break;
        case 'T': threads = parse_long(a, v, 0, 4096); break;
        case 'K':
            if (strcmp(v, "f16") == 0) kv_type = LLAMA_KV_F16;
            else if (strcmp(v, "f32") == 0) kv_type = LLAMA_KV_F32;
            else if (strcmp(v, "q8_0") == 0) kv_type = LLAMA_KV_Q8_0;
            else if (strcmp(v, "q4_0") == 0) kv_type = LLAMA_KV_Q4_0;
            else if (strcmp(v, "q8_0_q4_0") == 0) kv_type = LLAMA_KV_Q8_0_Q4_0;
            else usage("-K must be f16, f32, q8_0, q4_0 or q8_0_q4_0");
            break;
        case 'B':
            if (strcmp(v, "f32") == 0) bf16_products = LLAMA_BF16_PRODUCTS_F32;
            else if (strcmp(v, "rounded") == 0) bf16_products = LLAMA_BF16_PRODUCTS_ROUNDED;
            else usage("-B must be f32 or rounded");
            break;
        default:
            fprintf(stderr, "%s: unknown option %s\n", PROG, a);
            usage(NULL);
        }
    }

    if (!model_path) {
        if (!bundled_data_dir(argv[0], data_dir, sizeof data_dir))
            fprintf(stderr, "%s: warning: the bundled model was not found (tried $RUNLLAMA_DATA_DIR, the build's data dir, "
                            "and paths beside the executable); trying %s\n",
                    PROG, data_dir);
        join_path(default_model, sizeof default_model, data_dir, "stories260K.bin");
        join_path(default_tok, sizeof default_tok, data_dir, "tok512.bin");
        model_path = default_model;
        if (!tokenizer_path) tokenizer_path = default_tok;
    }

    /* Load. */
    llama_load_params_init(&lp, sizeof lp);
    lp.version = (int32_t)version;
    lp.config_path = config_path;
    lp.tokenizer_path = tokenizer_path;
    lp.n_threads = (int32_t)threads;
    lp.bf16_products = bf16_products;
    t0 = now_ms();
    st = llama_load(model_path, &lp, &model);
    if (st != LLAMA_OK) die_api(PROG, "llama_load", st);
    t_load = now_ms() - t0;

    llama_session_params_init(&sp, sizeof sp);
    sp.n_ctx = (uint32_t)n_ctx;
    sp.temperature = temperature;
    sp.top_k = (int32_t)top_k;
    sp.top_p = top_p;
    sp.repeat_penalty = repeat_penalty;
    sp.seed = seed;
    sp.kv_type = kv_type;
    st = llama_session_new(model, &sp, &session);
    if (st != LLAMA_OK) die_api(PROG, "llama_session_new", st);

    ctx_len = (long)llama_session_n_ctx(session);
    if (steps <= 0 || steps > ctx_len) steps = ctx_len;

    /* Tokenize the prompt with BOS (two-call pattern). */
    if (!prompt) prompt = "";
    st = llama_tokenize(model, prompt, strlen(prompt), LLAMA_TOKENIZE_ADD_BOS, NULL, 0, &need);
    if (st != LLAMA_OK && st != LLAMA_ERR_BUFFER_TOO_SMALL) die_api(PROG, "llama_tokenize", st);
    tokens = (llama_token *)malloc((need ? need : 1) * sizeof *tokens);
    if (!tokens) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return 1;
    }
    st = llama_tokenize(model, prompt, strlen(prompt), LLAMA_TOKENIZE_ADD_BOS, tokens, need, &n_prompt);
    if (st != LLAMA_OK) die_api(PROG, "llama_tokenize", st);
    if ((long)n_prompt > ctx_len) {
        fprintf(stderr, "%s: the prompt is %lu tokens, more than the context of %ld\n", PROG, (unsigned long)n_prompt, ctx_len);
        return 1;
    }
    bos = llama_token_bos(model);

    if (*prompt) {
        fputs(prompt, stdout);
        fflush(stdout);
    }

    /* Prefill: the whole prompt in one step. */
    t0 = now_ms();
    st = llama_step(session, tokens, n_prompt, &next);
    if (st != LLAMA_OK) die_api(PROG, "llama_step (prefill)", st);
    t_prefill = now_ms() - t0;

    /* Decode: as llama2.c, print the token sampled at each position < steps; stop early at
     * end-of-generation or BOS. */
    t0 = now_ms();
    if ((long)n_prompt <= steps) {
        llama_token prev = tokens[n_prompt - 1];
        for (;;) {
            if (next == bos || llama_token_is_eog(model, next)) break;
            print_piece(model, next, prev == bos);
            n_generated++;
            if ((long)llama_session_position(session) >= steps) break;
            prev = next;
            st = llama_step(session, &prev, 1, &next);
            if (st != LLAMA_OK) die_api(PROG, "llama_step", st);
            n_decode++;
        }
    }
    t_decode = now_ms() - t0;
    fputc('\n', stdout);
    fflush(stdout);

    fprintf(stderr, "%s: load %.2f ms\n", PROG, t_load);
    fprintf(stderr, "%s: prefill %lu tokens in %.2f ms, %.1f tokens/s\n", PROG, (unsigned long)n_prompt, t_prefill,
            t_prefill > 0 ? (double)n_prompt * 1e3 / t_prefill : 0.0);
    fprintf(stderr, "%s: generated %ld tokens; decode %ld steps in %.2f ms, %.1f tokens/s\n", PROG, n_generated, n_decode,
            t_decode, t_decode > 0 ? (double)n_decode * 1e3 / t_decode : 0.0);

    free(tokens);
    llama_session_free(session);
    llama_model_free(model);
    return 0;
}
