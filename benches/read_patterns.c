/* How fast two or more cores read a file mapping in the patterns decode uses, beside the dense
 * loop that e2e's read probe runs: the ceiling a decode kernel can reach on this machine.
 *
 *   cc -O2 -march=native -pthread benches/read_patterns.c -o target/read_patterns
 *   target/read_patterns MODEL.gguf 2 8 dense rows:2304:4096:12288:0 rows:2304:4096:12288:4 \
 *       rows:2304:0:0:0 pieces:1048576:4096:12288 dense@anon
 *
 * Arguments: the file (mapped and advised for huge pages, as the loader does, then touched),
 * threads, passes, then patterns. Each pass runs every pattern once, in turn, over the whole
 * file (each thread its contiguous share), so the machine's drift hits all patterns alike;
 * printed are the median, lowest and highest GB/s (10^9 bytes/s) over the passes.
 *
 *   dense                  two streams per thread (its share's halves), 256 bytes of each in
 *                          turn, no software prefetch: e2e's probe (kernels' dot_f32)
 *   rows:R:T0:T2:W         two streams per thread, R bytes (a weight row) of each in turn, a
 *                          prefetcht0 T0 bytes and a prefetcht2 T2 bytes ahead per 64-byte
 *                          line (0: none; decode's are 4096 and 12288: qdot_x86.rs QPF,
 *                          QPF_L2) and W vpmaddwd per 64-byte line (arithmetic to overlap)
 *   pieces:P:T0:T2         pieces of P bytes handed to the threads in turn (thread t reads
 *                          pieces t, t + threads, ...), each as two streams of 2304-byte rows
 *                          (a 4096-column Q4_0 row), prefetches as in rows
 *   PATTERN@anon           the same over an anonymous copy of the file (huge pages advised)
 *
 * Loads are 64 bytes where the compiler targets AVX-512 (as the kernels' on such CPUs), else 32
 * (AVX2). The sums are kept (the return value) so that the compiler keeps every load. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

enum kind { DENSE, ROWS, PIECES };
struct pattern {
    enum kind kind;
    size_t row, piece;
    int t0, t2, work, anon;
    const char *name;
};

static const uint8_t *buf;
static size_t len;
static int threads;
static struct pattern cur;
#ifdef __AVX512F__
typedef __m512i vec;
#define LOAD(p) _mm512_loadu_si512((const void *)(p))
#define XOR _mm512_xor_si512
#define ADD _mm512_add_epi32
#define MADD _mm512_madd_epi16
#define ZERO _mm512_setzero_si512
#define LOW(v) _mm_cvtsi128_si32(_mm512_castsi512_si128(v))
#else
typedef __m256i vec;
#define LOAD(p) _mm256_loadu_si256((const __m256i *)(p))
#define XOR _mm256_xor_si256
#define ADD _mm256_add_epi32
#define MADD _mm256_madd_epi16
#define ZERO _mm256_setzero_si256
#define LOW(v) _mm_cvtsi128_si32(_mm256_castsi256_si128(v))
#endif
#define V ((int)sizeof(vec))

static vec sinks[64];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Reads [p, p + n) with the pattern's prefetches and arithmetic (independent of the loads'
 * chain of xors, as a kernel's products are of each other). */
static inline vec read_run(const uint8_t *p, size_t n, vec acc, vec *work) {
    for (size_t o = 0; o < n; o += 64) {
        const char *q = (const char *)p + o;
        if (cur.t0) _mm_prefetch(q + cur.t0, _MM_HINT_T0);
        if (cur.t2) _mm_prefetch(q + cur.t2, _MM_HINT_T2);
        vec a = LOAD(q), b = V == 64 ? a : LOAD(q + 32);
        acc = XOR(acc, V == 64 ? a : XOR(a, b));
        for (int w = 0; w < cur.work; w++) {
            work[w & 3] = ADD(work[w & 3], MADD(a, b));
        }
    }
    return acc;
}

static void *reader(void *arg) {
    long t = (long)arg;
    vec acc = ZERO(), work[4] = {acc, acc, acc, acc};
    if (cur.kind == PIECES) {
        size_t h = cur.piece / 2;
        for (size_t pc = t; (pc + 1) * cur.piece <= len; pc += threads) {
            const uint8_t *s0 = buf + pc * cur.piece, *s1 = s0 + h;
            for (size_t o = 0; o < h; o += 2304) {
                size_t n = h - o < 2304 ? h - o : 2304;
                acc = read_run(s1 + o, n, read_run(s0 + o, n, acc, work), work);
            }
        }
    } else if (cur.kind == DENSE) {
        size_t half = len / threads / 2 / 256 * 256;
        const uint8_t *s0 = buf + 2 * t * half, *s1 = s0 + half;
        vec x[4] = {acc, acc, acc, acc};
        for (size_t o = 0; o < half; o += 256) {
            for (int k = 0; k < 256 / V; k++) {
                x[k & 3] = XOR(x[k & 3], XOR(LOAD(s0 + o + V * k), LOAD(s1 + o + V * k)));
            }
        }
        acc = XOR(XOR(x[0], x[1]), XOR(x[2], x[3]));
    } else {
        size_t step = cur.row;
        size_t half = len / threads / 2 / step * step;
        const uint8_t *s0 = buf + 2 * t * half, *s1 = s0 + half;
        for (size_t o = 0; o < half; o += step) {
            acc = read_run(s1 + o, step, read_run(s0 + o, step, acc, work), work);
        }
    }
    for (int w = 0; w < 4; w++) acc = XOR(acc, work[w]);
    sinks[t] = acc;
    return NULL;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s FILE THREADS PASSES PATTERN...\n", argv[0]);
        return 2;
    }
    threads = atoi(argv[2]);
    int passes = atoi(argv[3]), np = argc - 4;
    if (threads < 1 || threads > 64 || passes < 1 || passes > 100) {
        fprintf(stderr, "threads 1-64, passes 1-100\n");
        return 2;
    }
    struct pattern *pats = calloc(np, sizeof *pats);
    double *gbps = calloc((size_t)np * passes, sizeof *gbps);
    int any_anon = 0;
    for (int i = 0; i < np; i++) {
        struct pattern *p = &pats[i];
        p->name = argv[4 + i];
        p->anon = strstr(p->name, "@anon") != NULL;
        any_anon |= p->anon;
        if (!strncmp(p->name, "dense", 5)) {
            p->kind = DENSE;
        } else if (sscanf(p->name, "rows:%zu:%d:%d:%d", &p->row, &p->t0, &p->t2, &p->work) == 4 && p->row % 64 == 0) {
            p->kind = ROWS;
        } else if (sscanf(p->name, "pieces:%zu:%d:%d", &p->piece, &p->t0, &p->t2) == 3 && p->piece % 128 == 0) {
            p->kind = PIECES;
        } else {
            fprintf(stderr, "unknown pattern %s (row and piece sizes: multiples of 64 and 128)\n", p->name);
            return 2;
        }
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(argv[1]);
        return 1;
    }
    len = (size_t)st.st_size & ~(((size_t)2 << 20) - 1);
    uint8_t *file = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0), *anon = NULL;
    if (file == MAP_FAILED || len == 0) {
        fprintf(stderr, "%s: cannot map, or smaller than 2 MiB\n", argv[1]);
        return 1;
    }
    madvise(file, st.st_size, MADV_HUGEPAGE);
    volatile uint8_t touch = 0;
    for (size_t i = 0; i < len; i += 4096) touch += file[i];
    if (any_anon) {
        anon = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (anon == MAP_FAILED) {
            perror("anonymous copy");
            return 1;
        }
        madvise(anon, len, MADV_HUGEPAGE);
        memcpy(anon, file, len);
    }
    for (int r = 0; r < passes; r++) {
        for (int i = 0; i < np; i++) {
            cur = pats[i];
            buf = cur.anon ? anon : file;
            pthread_t th[64];
            double t = now();
            for (long k = 0; k < threads; k++) pthread_create(&th[k], NULL, reader, (void *)k);
            for (int k = 0; k < threads; k++) pthread_join(th[k], NULL);
            gbps[(size_t)i * passes + r] = len / (now() - t) / 1e9;
        }
    }
    int keep = 0;
    for (int k = 0; k < threads; k++) keep += LOW(sinks[k]);
    for (int i = 0; i < np; i++) {
        double *g = &gbps[(size_t)i * passes];
        qsort(g, passes, sizeof *g, by_value);
        printf("%-32s median %5.1f GB/s  (%5.1f .. %5.1f)\n", pats[i].name, g[passes / 2], g[0], g[passes - 1]);
    }
    return keep == 0x7fffffff;
}
