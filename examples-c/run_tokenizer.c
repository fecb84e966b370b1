/* run_tokenizer: show how runllama tokenizes a text.
 *
 *   run_tokenizer [-V 0|2|3] [-F tokenizer] [-M model] [--special] [--no-bos] [text]
 *
 * Prints one line "ids: <id> <id> ..." and then one line per token "<id>\t<piece>", where the
 * piece is the token's bytes (llama_token_to_piece) with backslash and bytes that are not
 * printable text escaped as \xNN (valid multi-byte UTF-8 is printed as is). The text comes from
 * the argument or, without one, from stdin (one trailing newline removed).
 *
 *   -F <file>   tokenizer.model (SentencePiece) or llama2.c tokenizer .bin
 *   -M <path>   a model; its tokenizer (or the -F one) is used
 *   -V <0|2|3>  LLaMA version passed to llama_load (0 = detect)
 *   --special   parse special-token text such as "<s>" (LLAMA_TOKENIZE_PARSE_SPECIAL)
 *   --no-bos    do not prepend BOS (LLAMA_TOKENIZE_ADD_BOS)
 *
 * Without -M the -F file is loaded alone with llama_load_vocab (a vocabulary-only model).
 * With neither -M nor -F, the bundled model's tok512.bin is used.
 *
 * Exit status: 0 ok, 1 an API call failed, 2 bad usage. C99; also compiles as C++.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "runllama.h"

static const char *PROG = "run_tokenizer";

/* Bad usage: the message and the usage on stderr, exit 2. With `help`: the usage on stdout, exit 0. */
static void usage_exit(const char *msg, int help) {
    FILE *out = help ? stdout : stderr;
    if (msg) fprintf(stderr, "%s: %s\n", PROG, msg);
    fprintf(out,
            "usage: %s [-V 0|2|3] [-F tokenizer] [-M model] [--special] [--no-bos] [text]\n"
            "  prints \"ids: ...\" and one \"id<TAB>piece\" line per token; text from stdin without [text]\n",
            PROG);
    exit(help ? 0 : 2);
}

static void usage(const char *msg) { usage_exit(msg, 0); }

/* Length of the valid UTF-8 sequence at p[0..n) (2..4), or 0 if there is none. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
    size_t len, k;
    uint32_t cp;
    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        len = 2;
        cp = p[0] & 0x1Fu;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        len = 3;
        cp = p[0] & 0x0Fu;
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        len = 4;
        cp = p[0] & 0x07u;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (k = 1; k < len; k++) {
        if ((p[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[k] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static void print_escaped(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t u = p[i] >= 0x80 ? utf8_seq(p + i, n - i) : 0;
        if (u) {
            fwrite(p + i, 1, u, stdout);
            i += u;
        } else if (p[i] >= 0x20 && p[i] < 0x7F && p[i] != '\\') {
            putchar(p[i]);
            i++;
        } else {
            printf("\\x%02X", p[i]);
            i++;
        }
    }
}

/* All of stdin; one trailing "\n" (or "\r\n") removed. */
static char *read_stdin(size_t *out_len) {
    size_t cap = 4096, len = 0, got;
    char *buf = (char *)malloc(cap);
    if (!buf) return NULL;
    while ((got = fread(buf + len, 1, cap - len, stdin)) > 0) {
        len += got;
        if (len == cap) {
            char *nb = (char *)realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (len > 0 && buf[len - 1] == '\n') len--;
    if (len > 0 && buf[len - 1] == '\r') len--;
    *out_len = len;
    return buf;
}

int main(int argc, char **argv) {
    const char *tokenizer_path = NULL, *model_path = NULL, *text = NULL;
    char *owned_text = NULL;
    size_t text_len = 0, need = 0, n = 0, i;
    long version = 0;
    uint32_t flags = LLAMA_TOKENIZE_ADD_BOS;
    char data_dir[4096], default_tok[4200];
    llama_load_params lp;
    llama_model *model = NULL;
    llama_token *ids;
    llama_status st;
    int a;

    rl_utf8_argv(&argc, &argv);
    rl_binary_stdout();
    for (a = 1; a < argc; a++) {
        const char *s = argv[a];
        if (strcmp(s, "--special") == 0) {
            flags |= LLAMA_TOKENIZE_PARSE_SPECIAL;
        } else if (strcmp(s, "--no-bos") == 0) {
            flags &= ~(uint32_t)LLAMA_TOKENIZE_ADD_BOS;
        } else if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage_exit(NULL, 1);
        } else if (strcmp(s, "-F") == 0 || strcmp(s, "-M") == 0 || strcmp(s, "-V") == 0) {
            if (a + 1 >= argc) {
                fprintf(stderr, "%s: option %s needs a value\n", PROG, s);
                usage(NULL);
            }
            if (s[1] == 'F') {
                tokenizer_path = argv[++a];
            } else if (s[1] == 'M') {
                model_path = argv[++a];
            } else {
                const char *v = argv[++a];
                char *end;
                errno = 0;
                version = strtol(v, &end, 10);
                if (errno || end == v || *end || !(version == 0 || version == 2 || version == 3))
                    usage("-V must be 0, 2 or 3");
            }
        } else if (strcmp(s, "--") == 0) {
            if (a + 1 < argc) text = argv[++a];
            if (a + 1 < argc) usage("more than one text argument");
        } else if (s[0] == '-' && s[1] != '\0') {
            fprintf(stderr, "%s: unknown option %s\n", PROG, s);
            usage(NULL);
        } else {
            if (text) usage("more than one text argument");
            text = s;
        }
    }

    if (text) {
        text_len = strlen(text);
    } else {
        owned_text = read_stdin(&text_len);
        if (!owned_text) {
            fprintf(stderr, "%s: cannot read stdin\n", PROG);
            return 1;
        }
        text = owned_text;
    }

    llama_load_params_init(&lp, sizeof lp);
    lp.version = (int32_t)version;
    lp.n_threads = 1;
    if (model_path) {
        lp.tokenizer_path = tokenizer_path;
        st = llama_load(model_path, &lp, &model);
        if (st != LLAMA_OK) die_api(PROG, "llama_load", st);
    } else {
        if (!tokenizer_path) {
            if (!bundled_data_dir(argv[0], data_dir, sizeof data_dir))
                fprintf(stderr, "%s: warning: the bundled model was not found; trying %s\n", PROG, data_dir);
            join_path(default_tok, sizeof default_tok, data_dir, "tok512.bin");
            tokenizer_path = default_tok;
        }
        st = llama_load_vocab(tokenizer_path, (int32_t)version, &model);
        if (st != LLAMA_OK) die_api(PROG, "llama_load_vocab", st);
    }

    st = llama_tokenize(model, text, text_len, flags, NULL, 0, &need);
    if (st != LLAMA_OK && st != LLAMA_ERR_BUFFER_TOO_SMALL) die_api(PROG, "llama_tokenize", st);
    ids = (llama_token *)malloc((need ? need : 1) * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return 1;
    }
    st = llama_tokenize(model, text, text_len, flags, ids, need, &n);
    if (st != LLAMA_OK) die_api(PROG, "llama_tokenize", st);

    fputs("ids:", stdout);
    for (i = 0; i < n; i++) printf(" %ld", (long)ids[i]);
    putchar('\n');
    for (i = 0; i < n; i++) {
        char small[256];
        char *buf = small;
        size_t len = 0;
        st = llama_token_to_piece(model, ids[i], small, sizeof small, &len);
        if (st == LLAMA_ERR_BUFFER_TOO_SMALL) {
            buf = (char *)malloc(len + 1);
            if (!buf) return 1;
            st = llama_token_to_piece(model, ids[i], buf, len + 1, &len);
        }
        if (st != LLAMA_OK) die_api(PROG, "llama_token_to_piece", st);
        printf("%ld\t", (long)ids[i]);
        print_escaped(buf, len);
        putchar('\n');
        if (buf != small) free(buf);
    }

    free(ids);
    free(owned_text);
    llama_model_free(model);
    return 0;
}
