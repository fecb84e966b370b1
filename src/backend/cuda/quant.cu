// ---------------------------------------------------------------------------------------------
// GGUF's block-quantized weights (appended to kernels.cu; the layouts are described in
// kernels/src/quant.rs). A row is whole blocks; an "item" is 32 consecutive elements of a
// block: one per block of the 32-element types, eight per super-block of the K-quants. Each
// block type gives
//   dequant(b, it, v): item `it` of the block at `b` as 32 floats, with ggml's f32 operations
//     in ggml's order (no contraction into FMAs), so bit for bit gguf-py's values;
//   dot(b, it, a, da, sa): the item's product with 32 8-bit activations `a` (8 ints) whose
//     scale is `da` (value = da * a), `sa` = da * sum(a): integer sums (dp4a), then the scales.
// `dot` reads the quants 4 bytes at a time: with 16-byte loads where a type's blocks are
// 16-byte aligned (Q4_K and Q5_K: 144 and 176 bytes, and rows start 16-byte aligned), 4-byte
// loads where they are 4-byte aligned (Q4_1, Q5_1, Q2_K), else aligned 4-byte loads shifted
// into place (Q8_0, Q4_0, Q5_0, Q3_K, Q6_K: 2-byte aligned).

typedef unsigned char u8;

__device__ __forceinline__ float ld_f16(const u8* p) { return h2f(*reinterpret_cast<const u16*>(p)); }
__device__ __forceinline__ unsigned ld_u16(const u8* p) { return *reinterpret_cast<const u16*>(p); }
__device__ __forceinline__ unsigned ld_u32(const u8* p) { return *reinterpret_cast<const unsigned*>(p); }

// The low 32 bits of {hi, lo} >> sh (sh <= 32).
__device__ __forceinline__ unsigned shift_pair(unsigned lo, unsigned hi, unsigned sh) {
    unsigned r;
    asm("shf.r.clamp.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(lo), "r"(hi), "r"(sh));
    return r;
}

// v[0..N) = the N little-endian ints at p, which is ALIGN-byte aligned (2, 4 or 16). With
// ALIGN 2 one aligned int past them is read too (allocations are padded).
template <int N, int ALIGN>
__device__ __forceinline__ void ld_ints(const u8* p, int* v) {
    if (ALIGN >= 16 && N % 4 == 0) {
        const int4* q = reinterpret_cast<const int4*>(p);
#pragma unroll
        for (int i = 0; i < N / 4; i++) {
            const int4 t = q[i];
            v[4 * i] = t.x;
            v[4 * i + 1] = t.y;
            v[4 * i + 2] = t.z;
            v[4 * i + 3] = t.w;
        }
    } else if (ALIGN >= 4) {
#pragma unroll
        for (int i = 0; i < N; i++) v[i] = reinterpret_cast<const int*>(p)[i];
    } else {
        const unsigned* q = reinterpret_cast<const unsigned*>((size_t)p & ~(size_t)3);
        const unsigned sh = ((unsigned)(size_t)p & 2u) * 8u;
        unsigned lo = q[0];
#pragma unroll
        for (int i = 0; i < N; i++) {
            const unsigned hi = q[i + 1];
            v[i] = (int)shift_pair(lo, hi, sh);
            lo = hi;
        }
    }
}

// c + the dot product of a's and b's four signed bytes.
__device__ __forceinline__ int dp4a(int a, int b, int c) {
    int r;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
// Sum of the four signed bytes of a.
__device__ __forceinline__ int bsum4(int a, int c) { return dp4a(a, 0x01010101, c); }

// The low 4 bits of `x` as bit 4 of each of four bytes (the fifth bits of Q5_0/Q5_1 values).
__device__ __forceinline__ int bit4_bytes(unsigned x) {
    return (int)(((x & 1u) << 4) | ((x & 2u) << 11) | ((x & 4u) << 18) | ((x & 8u) << 25));
}

// d * q + m and d * q - m as ggml rounds them (a product, then a sum).
__device__ __forceinline__ float mul_add(float d, float q, float m) { return __fadd_rn(__fmul_rn(d, q), m); }
__device__ __forceinline__ float mul_sub(float d, float q, float m) { return __fsub_rn(__fmul_rn(d, q), m); }

// Q8_0: d, 32 signed bytes.
struct BQ8_0 {
    enum { BLOCK = 32, BYTES = 34, ITEMS = 1 };
    static __device__ void dequant(const u8* b, int, float* v) {
        const float d = ld_f16(b);
#pragma unroll
        for (int l = 0; l < 32; l++) v[l] = __fmul_rn((float)(signed char)b[2 + l], d);
    }
    static __device__ float dot(const u8* b, int, const int* a, float da, float) {
        int q[8], s = 0;
        ld_ints<8, 2>(b + 2, q);
#pragma unroll
        for (int i = 0; i < 8; i++) s = dp4a(q[i], a[i], s);
        return ld_f16(b) * da * (float)s;
    }
};

// Q4_0 / Q4_1: d (, m), 16 bytes: element i < 16 the low nibble of byte i, 16 + i its high.
template <bool MIN>
struct BQ4 {
    enum { BLOCK = 32, BYTES = MIN ? 20 : 18, ITEMS = 1, QS = MIN ? 4 : 2 };
    static __device__ void dequant(const u8* b, int, float* v) {
        const float d = ld_f16(b), m = MIN ? ld_f16(b + 2) : 0.f;
#pragma unroll
        for (int l = 0; l < 16; l++) {
            const int q = b[QS + l];
            if (MIN) {
                v[l] = mul_add((float)(q & 15), d, m);
                v[l + 16] = mul_add((float)(q >> 4), d, m);
            } else {
                v[l] = __fmul_rn((float)((q & 15) - 8), d);
                v[l + 16] = __fmul_rn((float)((q >> 4) - 8), d);
            }
        }
    }
    static __device__ float dot(const u8* b, int, const int* a, float da, float sa) {
        int q[4], s = 0;
        ld_ints<4, MIN ? 4 : 2>(b + QS, q);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s = dp4a(q[i] & 0x0F0F0F0F, a[i], s);
            s = dp4a((q[i] >> 4) & 0x0F0F0F0F, a[4 + i], s);
        }
        const float d = ld_f16(b);
        return MIN ? d * da * (float)s + ld_f16(b + 2) * sa : d * (da * (float)s - 8.f * sa);
    }
};

// Q5_0 / Q5_1: d (, m), a 32-bit mask of fifth bits, 16 bytes of nibbles as Q4.
template <bool MIN>
struct BQ5 {
    enum { BLOCK = 32, BYTES = MIN ? 24 : 22, ITEMS = 1, QH = MIN ? 4 : 2 };
    static __device__ void dequant(const u8* b, int, float* v) {
        const float d = ld_f16(b), m = MIN ? ld_f16(b + 2) : 0.f;
        const unsigned qh = ld_u16(b + QH) | (ld_u16(b + QH + 2) << 16);
#pragma unroll
        for (int l = 0; l < 16; l++) {
            const int q = b[QH + 4 + l];
            const int lo = (q & 15) | (((qh >> l) & 1) << 4), hi = (q >> 4) | (((qh >> (l + 16)) & 1) << 4);
            if (MIN) {
                v[l] = mul_add((float)lo, d, m);
                v[l + 16] = mul_add((float)hi, d, m);
            } else {
                v[l] = __fmul_rn((float)(lo - 16), d);
                v[l + 16] = __fmul_rn((float)(hi - 16), d);
            }
        }
    }
    static __device__ float dot(const u8* b, int, const int* a, float da, float sa) {
        int q[5], s = 0;  // the fifth bits, then the nibbles
        ld_ints<5, MIN ? 4 : 2>(b + QH, q);
        const unsigned qh = (unsigned)q[0];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s = dp4a((q[1 + i] & 0x0F0F0F0F) | bit4_bytes(qh >> (4 * i)), a[i], s);
            s = dp4a(((q[1 + i] >> 4) & 0x0F0F0F0F) | bit4_bytes(qh >> (16 + 4 * i)), a[4 + i], s);
        }
        const float d = ld_f16(b);
        return MIN ? d * da * (float)s + ld_f16(b + 2) * sa : d * (da * (float)s - 16.f * sa);
    }
};

// Q2_K: 16 scale bytes (scale low nibble, minimum high), 64 bytes of 2-bit values, d, dmin.
// Item it: 2-bit field it % 4 of bytes (it / 4) * 32 + l; scales 2 it, 2 it + 1 (16 each).
struct BQ2_K {
    enum { BLOCK = 256, BYTES = 84, ITEMS = 8 };
    static __device__ void dequant(const u8* b, int it, float* v) {
        const float d = ld_f16(b + 80), dmin = ld_f16(b + 82);
        const u8* qs = b + 16 + (it / 4) * 32;
        const int sh = 2 * (it % 4);
#pragma unroll
        for (int l = 0; l < 32; l++) {
            const int sc = b[2 * it + l / 16];
            const float dl = __fmul_rn(d, (float)(sc & 15)), ml = __fmul_rn(dmin, (float)(sc >> 4));
            v[l] = mul_sub(dl, (float)((qs[l] >> sh) & 3), ml);
        }
    }
    static __device__ float dot(const u8* b, int it, const int* a, float da, float) {
        int q[8];
        ld_ints<8, 4>(b + 16 + (it / 4) * 32, q);
        const int sh = 2 * (it % 4);
        const unsigned scales = ld_u16(b + 2 * it), dm = ld_u32(b + 80);
        float dsum = 0.f, msum = 0.f;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            int s = 0, sa = 0;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                s = dp4a((q[4 * k + i] >> sh) & 0x03030303, a[4 * k + i], s);
                sa = bsum4(a[4 * k + i], sa);
            }
            const int sc = (scales >> (8 * k)) & 255;
            dsum += (float)((sc & 15) * s);
            msum += (float)((sc >> 4) * sa);
        }
        return da * (h2f(dm & 0xffff) * dsum - h2f(dm >> 16) * msum);
    }
};

// Q3_K: a 32-byte mask of high bits, 64 bytes of 2-bit values, 12 bytes of sixteen 6-bit
// scales (offset 32), d. Item it: low bits as Q2_K's, high bit it of mask byte l (clear: -4).
struct BQ3_K {
    enum { BLOCK = 256, BYTES = 110, ITEMS = 8 };
    static __device__ __forceinline__ int scale(const u8* b, int k) {
        const u8* sc = b + 96;
        const int lo = k < 8 ? sc[k] & 15 : sc[k - 8] >> 4;
        const int hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
        return (lo | (hi << 4)) - 32;
    }
    static __device__ void dequant(const u8* b, int it, float* v) {
        const float d = ld_f16(b + 108);
        const u8* qs = b + 32 + (it / 4) * 32;
        const int sh = 2 * (it % 4);
#pragma unroll
        for (int l = 0; l < 32; l++) {
            const float dl = __fmul_rn(d, (float)scale(b, 2 * it + l / 16));
            const int q = ((qs[l] >> sh) & 3) - (((b[l] >> it) & 1) ? 0 : 4);
            v[l] = __fmul_rn(dl, (float)q);
        }
    }
    static __device__ float dot(const u8* b, int it, const int* a, float da, float) {
        int q[8], hm[8];
        ld_ints<8, 2>(b + 32 + (it / 4) * 32, q);
        ld_ints<8, 2>(b, hm);
        const int sh = 2 * (it % 4);
        float sum = 0.f;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            int s = 0, sa = 0;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int lo = (q[4 * k + i] >> sh) & 0x03030303;
                const int hi = ((hm[4 * k + i] >> it) & 0x01010101) << 2;
                s = dp4a(lo | hi, a[4 * k + i], s);
                sa = bsum4(a[4 * k + i], sa);
            }
            sum += (float)(scale(b, 2 * it + k) * (s - 4 * sa));
        }
        return ld_f16(b + 108) * da * sum;
    }
};

// The 6-bit scale and minimum of sub-block j of a Q4_K/Q5_K super-block (12 bytes at s).
__device__ __forceinline__ void scale_min_k4(const u8* s, int j, int* sc, int* mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q4_K / Q5_K: d, dmin, 12 bytes of scales and minimums, (Q5_K: a 32-byte mask of fifth
// bits,) 128 bytes of nibbles. Item it = sub-block j: nibble j % 2 of bytes (j / 2) * 32 + l.
template <bool FIVE>
struct BQK {
    enum { BLOCK = 256, BYTES = FIVE ? 176 : 144, ITEMS = 8, QS = FIVE ? 48 : 16 };
    static __device__ void dequant(const u8* b, int j, float* v) {
        int sc, mn;
        scale_min_k4(b + 4, j, &sc, &mn);
        const float d1 = __fmul_rn(ld_f16(b), (float)sc), m1 = __fmul_rn(ld_f16(b + 2), (float)mn);
        const u8* qs = b + QS + (j / 2) * 32;
#pragma unroll
        for (int l = 0; l < 32; l++) {
            int q = (qs[l] >> (4 * (j % 2))) & 15;
            if (FIVE) q |= ((b[16 + l] >> j) & 1) << 4;
            v[l] = mul_sub(d1, (float)q, m1);
        }
    }
    static __device__ float dot(const u8* b, int j, const int* a, float da, float sa) {
        int q[8], qh[8], s = 0;
        ld_ints<8, 16>(b + QS + (j / 2) * 32, q);
        if (FIVE) ld_ints<8, 16>(b + 16, qh);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int v = (q[i] >> (4 * (j % 2))) & 0x0F0F0F0F;
            if (FIVE) v |= ((qh[i] >> j) & 0x01010101) << 4;
            s = dp4a(v, a[i], s);
        }
        int sc, mn;
        scale_min_k4(b + 4, j, &sc, &mn);
        const unsigned dm = ld_u32(b);
        return h2f(dm & 0xffff) * (float)sc * da * (float)s - h2f(dm >> 16) * (float)mn * sa;
    }
};

// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 signed scales, d. Item it:
// half h = it / 4, quarter w = it % 4: low nibble w / 2 of bytes h * 64 + (w % 2) * 32 + l,
// high bits 2w of bytes 128 + h * 32 + l; value - 32; scales 2 it, 2 it + 1.
struct BQ6_K {
    enum { BLOCK = 256, BYTES = 210, ITEMS = 8 };
    static __device__ void dequant(const u8* b, int it, float* v) {
        const float d = ld_f16(b + 208);
        const int h = it / 4, w = it % 4;
        const u8* ql = b + h * 64 + (w % 2) * 32;
        const u8* qh = b + 128 + h * 32;
#pragma unroll
        for (int l = 0; l < 32; l++) {
            const int q = (((ql[l] >> (4 * (w / 2))) & 15) | (((qh[l] >> (2 * w)) & 3) << 4)) - 32;
            const float dl = __fmul_rn(d, (float)(signed char)b[192 + 2 * it + l / 16]);
            v[l] = __fmul_rn(dl, (float)q);
        }
    }
    static __device__ float dot(const u8* b, int it, const int* a, float da, float) {
        const int h = it / 4, w = it % 4;
        int ql[8], qh[8];
        ld_ints<8, 2>(b + h * 64 + (w % 2) * 32, ql);
        ld_ints<8, 2>(b + 128 + h * 32, qh);
        const unsigned scales = ld_u16(b + 192 + 2 * it);
        float sum = 0.f;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            int s = 0, sa = 0;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int lo = (ql[4 * k + i] >> (4 * (w / 2))) & 0x0F0F0F0F;
                const int hi = ((qh[4 * k + i] >> (2 * w)) & 0x03030303) << 4;
                s = dp4a(lo | hi, a[4 * k + i], s);
                sa = bsum4(a[4 * k + i], sa);
            }
            sum += (float)((signed char)(scales >> (8 * k)) * (s - 32 * sa));
        }
        return ld_f16(b + 208) * da * sum;
    }
};

// ---------------------------------------------------------------------------------------------
// Products over quantized rows for one token (decode) or a few (a short prompt: at most
// QGEMV_TOKENS at a time), in two kernels. `quantize_input` builds the inputs once: each
// token's x (f32, normalised when `norm` is given; or a batch's f16 input) quantized to 8 bits
// per 32 values (q = round(x * 127 / amax), d = amax / 127, s = d * sum(q)), as llama.cpp's
// CUDA products do, into `qa` (cols bytes per token) and `ds` ((d, s) per 32); a warp per 32
// values, each block computing the norm's scale over the whole row itself. `qgemv` then gives
// each row (or (gate, up) pair: MODE 2) a block of QGEMV_THREADS threads, which sum the row's
// items against the inputs straight from global memory (thread t takes items t,
// t + QGEMV_THREADS, ...; with N tokens the rows are read from memory once for all N); the
// block's sums meet in shared memory and its first thread stores out[r] = y (MODE 0), adds
// out[r] += y (1) or stores out[r / 2] = silu(gate) * up (2), per token at out + t * ldo.
// Before it waits for its inputs (programmatic dependent launch) a block asks for its rows'
// bytes into L2.
//
// Measured on an H100 (7B tg128, tok/s per round, Q4_K_M / Q4_0 / Q8_0, alternating within a
// lease): these kernels 253, 254 / 276, 276 / 221, 223 against 232, 232 / 254, 251 / 206, 206
// with the input built by a single 1024-thread block. In an earlier lease, that variant 233, 231
// / 256, 251 / 207, 208; with 64-thread blocks 230, 228 / 243, 244 / 200, 200; the kernel
// before (a persistent grid of 1024-thread blocks that each quantized the input and summed
// rows split over warps, as the float products do, from blocks staged in shared memory with
// cp.async) 203, 202 / 227, 224 / 191, 189, or reading the blocks straight from global memory
// 211, 208 / 231, 230 / 188, 188.
#define QGEMV_THREADS 128
#define QGEMV_TOKENS 8
#define QUANTIZE_THREADS 256

template <class I>
__device__ void quantize_rows(const typename I::T* __restrict__ x, const float* __restrict__ norm, float eps, int cols,
                              signed char* qa, float2* ds) {
    pdl_start();
    // Grid: per token, enough blocks for its groups of 32.
    const int lane = threadIdx.x & 31, warps = QUANTIZE_THREADS / 32, groups = cols / 32;
    const int per = (groups + warps - 1) / warps;
    const int t = blockIdx.x / per, g = blockIdx.x % per * warps + (threadIdx.x >> 5);
    x += (size_t)t * cols;
    float v = g < groups ? I::get(x[g * 32 + lane]) : 0.f;
    if (norm) {
        __shared__ float red[32];
        float ss = 0.f;
        for (int i = threadIdx.x; i < cols; i += QUANTIZE_THREADS) {
            const float y = I::get(x[i]);
            ss += y * y;
        }
        const float scale = 1.0f / sqrtf(block_sum(ss, red) / (float)cols + eps);
        if (g < groups) v = v * scale * norm[g * 32 + lane];
    }
    if (g >= groups) return;
    const float amax = warp_max(fabsf(v));
    const int q = amax > 0.f ? __float2int_rn(v * (127.f / amax)) : 0;
    qa[(size_t)t * cols + g * 32 + lane] = (signed char)q;
    int sum = q;
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) ds[(size_t)t * groups + g] = make_float2(amax / 127.f, amax / 127.f * (float)sum);
}

extern "C" __global__ void __launch_bounds__(QUANTIZE_THREADS)
    quantize_input(const float* x, const float* norm, float eps, int cols, signed char* qa, float2* ds) {
    quantize_rows<WF32>(x, norm, eps, cols, qa, ds);
}
extern "C" __global__ void __launch_bounds__(QUANTIZE_THREADS)
    quantize_input_f16(const u16* x, int cols, signed char* qa, float2* ds) {
    quantize_rows<WF16>(x, nullptr, 0.f, cols, qa, ds);
}

// N: tokens compiled for (1, or QGEMV_TOKENS with `n` <= N of them present).
template <class Q, int MODE, int N>
__device__ void qgemv(const u8* __restrict__ w, int rows, int cols, const signed char* __restrict__ qa,
                      const float2* __restrict__ ds, float* out, int n, int ldo) {
    const int R = MODE == 2 ? 2 : 1;
    const int r0 = blockIdx.x * R, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t rb = (size_t)(cols / Q::BLOCK) * Q::BYTES;
    const u8* row[R];
#pragma unroll
    for (int j = 0; j < R; j++) {
        row[j] = w + (size_t)min(r0 + j, rows - 1) * rb;
        for (size_t o = (size_t)threadIdx.x * 128; o < rb; o += 128 * QGEMV_THREADS) prefetch_l2(row[j] + o);
    }
    pdl_start();
    float acc[N][R];
#pragma unroll
    for (int t = 0; t < N; t++)
#pragma unroll
        for (int j = 0; j < R; j++) acc[t][j] = 0.f;
    for (int item = threadIdx.x; item < cols / 32; item += QGEMV_THREADS) {
#pragma unroll
        for (int t = 0; t < N; t++) {
            if (t < n) {
                const int4* a4 = reinterpret_cast<const int4*>(qa + (size_t)t * cols + item * 32);
                const int4 lo = a4[0], hi = a4[1];
                const int a[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
                const float2 s = ds[(size_t)t * (cols / 32) + item];
#pragma unroll
                for (int j = 0; j < R; j++)
                    acc[t][j] += Q::dot(row[j] + (size_t)(item / Q::ITEMS) * Q::BYTES, item % Q::ITEMS, a, s.x, s.y);
            }
        }
    }
    __shared__ float parts[QGEMV_THREADS / 32][N][R];
#pragma unroll
    for (int t = 0; t < N; t++)
#pragma unroll
        for (int j = 0; j < R; j++) {
            acc[t][j] = warp_sum(acc[t][j]);
            if (lane == 0) parts[warp][t][j] = acc[t][j];
        }
    __syncthreads();
    if (threadIdx.x < N && threadIdx.x < n) {
        const int t = threadIdx.x;
        float y[R];
#pragma unroll
        for (int j = 0; j < R; j++) {
            y[j] = parts[0][t][j];
            for (int q = 1; q < QGEMV_THREADS / 32; q++) y[j] += parts[q][t][j];
        }
        float* o = out + (size_t)t * ldo;
        if (MODE == 0) o[r0] = y[0];
        if (MODE == 1) o[r0] += y[0];
        if (MODE == 2) o[r0 / 2] = silu(y[0]) * y[R - 1];
    }
}

// x[t] = row tokens[t] of a quantized embedding table, dequantized. Grid: n tokens.
template <class Q>
__device__ void embed_q(const u8* table, const int* tokens, int d, float* x) {
    pdl_start();
    const int t = blockIdx.x;
    const u8* row = table + (size_t)tokens[t] * (d / Q::BLOCK) * Q::BYTES;
    for (int item = threadIdx.x; item < d / 32; item += blockDim.x) {
        float v[32];
        Q::dequant(row + (item / Q::ITEMS) * Q::BYTES, item % Q::ITEMS, v);
        float4* o = reinterpret_cast<float4*>(x + (size_t)t * d + item * 32);
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = make_float4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
    }
}

// o[0..32) = v narrowed to O's type, in 16-byte stores (o is 16-byte aligned).
template <class O>
__device__ __forceinline__ void store32(typename O::T* o, const float* v) {
    uint4* o4 = reinterpret_cast<uint4*>(o);
    if constexpr (sizeof(typename O::T) == 2) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            unsigned w[4];
#pragma unroll
            for (int j = 0; j < 4; j++) w[j] = (unsigned)O::put(v[8 * i + 2 * j]) | ((unsigned)O::put(v[8 * i + 2 * j + 1]) << 16);
            o4[i] = make_uint4(w[0], w[1], w[2], w[3]);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++)
            o4[i] = make_uint4(__float_as_uint(v[4 * i]), __float_as_uint(v[4 * i + 1]), __float_as_uint(v[4 * i + 2]),
                               __float_as_uint(v[4 * i + 3]));
    }
}

// out = `rows` quantized rows of `cols` values, dequantized into O's type (f16 for a batch's
// cuBLAS products; f32 for the tests). Grid-stride over items.
template <class Q, class O>
__device__ void dequant_rows(const u8* w, int rows, int cols, typename O::T* out) {
    pdl_start();
    const int per_row = cols / 32;
    const size_t items = (size_t)rows * per_row, rb = (size_t)(cols / Q::BLOCK) * Q::BYTES;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < items; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / per_row;
        const int item = (int)(i % per_row);
        float v[32];
        Q::dequant(w + r * rb + (item / Q::ITEMS) * Q::BYTES, item % Q::ITEMS, v);
        store32<O>(out + r * cols + item * 32, v);
    }
}

#define QGEMV(name, Q, MODE, N)                                                                              \
    extern "C" __global__ void __launch_bounds__(QGEMV_THREADS) name(                                       \
        const u8* w, int rows, int cols, const signed char* qa, const float2* ds, float* out, int n, int ldo) { \
        qgemv<Q, MODE, N>(w, rows, cols, qa, ds, out, n, ldo);                                               \
    }
#define QUANT(suffix, Q)                                                                                     \
    QGEMV(gemv_##suffix, Q, 0, 1)                                                                            \
    QGEMV(gemv_add_##suffix, Q, 1, 1)                                                                        \
    QGEMV(gemv_swiglu_##suffix, Q, 2, 1)                                                                     \
    QGEMV(gemv_batch_##suffix, Q, 0, QGEMV_TOKENS)                                                           \
    QGEMV(gemv_batch_add_##suffix, Q, 1, QGEMV_TOKENS)                                                       \
    extern "C" __global__ void embed_##suffix(const u8* table, const int* tokens, int d, float* x) {        \
        embed_q<Q>(table, tokens, d, x);                                                                     \
    }                                                                                                        \
    extern "C" __global__ void dequant_f16_##suffix(const u8* w, int rows, int cols, u16* out) {             \
        dequant_rows<Q, WF16>(w, rows, cols, out);                                                           \
    }                                                                                                        \
    extern "C" __global__ void dequant_f32_##suffix(const u8* w, int rows, int cols, float* out) {           \
        dequant_rows<Q, WF32>(w, rows, cols, out);                                                           \
    }
QUANT(q8_0, BQ8_0)
QUANT(q4_0, BQ4<false>)
QUANT(q4_1, BQ4<true>)
QUANT(q5_0, BQ5<false>)
QUANT(q5_1, BQ5<true>)
QUANT(q2_k, BQ2_K)
QUANT(q3_k, BQ3_K)
QUANT(q4_k, BQK<false>)
QUANT(q5_k, BQK<true>)
QUANT(q6_k, BQ6_K)
