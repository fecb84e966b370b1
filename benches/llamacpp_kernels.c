/* llama.cpp's own quantized dot-product kernels, one thread, for comparing with ours
 * (`cargo bench --bench kernels -- qmatvec_l2`: the same 160 x 4096 shape, weights in L2).
 * Links the libggml-cpu of a llama.cpp CPU build (see benches/llamacpp_compare.sh for building
 * it from the llama-cpp-python 0.3.36 sources on PyPI):
 *
 *   L=/path/to/llama.cpp/build/bin
 *   cc -O2 benches/llamacpp_kernels.c -o target/llamacpp_kernels -L$L -lggml-cpu -lggml-base -Wl,-rpath,$L
 *   target/llamacpp_kernels
 *
 * Prints GB/s of weights for ggml_vec_dot_q4_K_q8_K (row by row), ggml_gemv_q4_K_8x8_q8_K (the
 * 8-row repacked layout it uses at load) and ggml_vec_dot_q6_K_q8_K, over 160 rows of 4096
 * columns (in L2) and, streamed from memory, 11008 rows. Weights are fixed bytes whose f16
 * scales are small normal numbers: the speed does not depend on the values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void ggml_vec_dot_q4_K_q8_K(int n, float *s, size_t bs, const void *vx, size_t bx, const void *vy, size_t by, int nrc);
void ggml_vec_dot_q6_K_q8_K(int n, float *s, size_t bs, const void *vx, size_t bx, const void *vy, size_t by, int nrc);
void ggml_gemv_q4_K_8x8_q8_K(int n, float *s, size_t bs, const void *vx, const void *vy, int nr, int nc);

typedef void (*vec_dot)(int, float *, size_t, const void *, size_t, const void *, size_t, int);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

enum { COLS = 4096, L2_ROWS = 160, MEM_ROWS = 11008 };
static float out[MEM_ROWS];

/* Best GB/s of 5 runs of `reps` passes over `rows` rows at `w` (copies `copies` apart by `stride`). */
static double rows_gbps(vec_dot f, const unsigned char *w, size_t rb, int rows, const void *y, int reps, int copies, size_t stride) {
    double best = 0;
    for (int k = 0; k < 5; k++) {
        double t = now();
        for (int i = 0; i < reps; i++)
            for (int r = 0; r < rows; r++) f(COLS, &out[r], 0, w + (size_t)(i % copies) * stride + r * rb, 0, y, 0, 1);
        double g = (double)reps * rows * rb / (now() - t) / 1e9;
        if (g > best) best = g;
    }
    return best;
}

static double gemv_gbps(const unsigned char *w, size_t rb, int rows, const void *y, int reps, int copies, size_t stride) {
    double best = 0;
    for (int k = 0; k < 5; k++) {
        double t = now();
        for (int i = 0; i < reps; i++) ggml_gemv_q4_K_8x8_q8_K(COLS, out, 0, w + (size_t)(i % copies) * stride, y, 1, rows);
        double g = (double)reps * rows * rb / (now() - t) / 1e9;
        if (g > best) best = g;
    }
    return best;
}

int main(void) {
    size_t big = (size_t)400 << 20;
    unsigned char *w = aligned_alloc(64, big);
    for (size_t i = 0; i < big; i++) w[i] = (i % 7 == 0) ? 0x11 : (((unsigned char)(i * 31 % 251)) & 0x3C) | 0x10;
    /* block_q8_K: float d, 256 int8, 16 int16 sums = 292 bytes. */
    unsigned char *y = aligned_alloc(64, 64 << 10);
    for (int i = 0; i < (64 << 10); i++) y[i] = (unsigned char)(i * 13) & 0x3f;
    for (int b = 0; b < COLS / 256; b++) {
        float d = 0.01f;
        memcpy(y + b * 292, &d, 4);
    }
    size_t q4 = COLS / 256 * 144, q6 = COLS / 256 * 210;
    int c4 = (int)(big / (MEM_ROWS * q4)), c6 = (int)(big / (MEM_ROWS * q6));
    printf("Q4_K vec_dot  L2 %5.1f GB/s\n", rows_gbps(ggml_vec_dot_q4_K_q8_K, w, q4, L2_ROWS, y, 400, 1, 0));
    printf("Q4_K gemv8x8  L2 %5.1f GB/s  memory %5.1f GB/s\n", gemv_gbps(w, q4, L2_ROWS, y, 400, 1, 0),
           gemv_gbps(w, q4, MEM_ROWS, y, c4, c4, MEM_ROWS * q4));
    printf("Q6_K vec_dot  L2 %5.1f GB/s  memory %5.1f GB/s\n", rows_gbps(ggml_vec_dot_q6_K_q8_K, w, q6, L2_ROWS, y, 400, 1, 0),
           rows_gbps(ggml_vec_dot_q6_K_q8_K, w, q6, MEM_ROWS, y, c6, c6, MEM_ROWS * q6));
    return 0;
}
