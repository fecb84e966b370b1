// The CUDA backend's kernels, compiled by NVRTC when a model is loaded (for the GPU in hand).
// No headers: f16 and bf16 are handled as 16-bit integers with PTX conversions.
//
// Activations are f32. Weights and the KV cache are read in their stored type: WF32, WF16 and
// WBF16 below say how to widen one value or a 16-byte vector of them. Every kernel that depends
// on the position reads it from `pos_p` (device memory), so that a captured decode graph serves
// every step.

typedef unsigned short u16;

#define INFINITY __int_as_float(0x7f800000)

__device__ __forceinline__ float h2f(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ u16 f2h(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
__device__ __forceinline__ u16 f2bf(float f) {
    u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// x[0..4) . v (f32 lanes of a 16-byte vector) with four more floats of `xs`.
__device__ __forceinline__ float dot4(float a, float b, float c, float d, const float* xs) {
    float4 x = *reinterpret_cast<const float4*>(xs);
    return a * x.x + b * x.y + c * x.z + d * x.w;
}

struct WF32 {
    typedef float T;
    enum { VEC = 4 };
    static __device__ __forceinline__ float get(T v) { return v; }
    static __device__ __forceinline__ T put(float f) { return f; }
    static __device__ __forceinline__ float dot(uint4 u, const float* xs) {
        return dot4(__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z), __uint_as_float(u.w), xs);
    }
    static __device__ __forceinline__ void widen(uint4 u, float* f) {
        f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y), f[2] = __uint_as_float(u.z), f[3] = __uint_as_float(u.w);
    }
};

struct WF16 {
    typedef u16 T;
    enum { VEC = 8 };
    static __device__ __forceinline__ float get(T v) { return h2f(v); }
    static __device__ __forceinline__ T put(float f) { return f2h(f); }
    static __device__ __forceinline__ float dot(uint4 u, const float* xs) {
        return dot4(h2f(u.x & 0xffff), h2f(u.x >> 16), h2f(u.y & 0xffff), h2f(u.y >> 16), xs) +
               dot4(h2f(u.z & 0xffff), h2f(u.z >> 16), h2f(u.w & 0xffff), h2f(u.w >> 16), xs + 4);
    }
    static __device__ __forceinline__ void widen(uint4 u, float* f) {
        f[0] = h2f(u.x & 0xffff), f[1] = h2f(u.x >> 16), f[2] = h2f(u.y & 0xffff), f[3] = h2f(u.y >> 16);
        f[4] = h2f(u.z & 0xffff), f[5] = h2f(u.z >> 16), f[6] = h2f(u.w & 0xffff), f[7] = h2f(u.w >> 16);
    }
};

struct WBF16 {
    typedef u16 T;
    enum { VEC = 8 };
    static __device__ __forceinline__ float get(T v) { return __uint_as_float(((unsigned)v) << 16); }
    static __device__ __forceinline__ T put(float f) { return f2bf(f); }
    static __device__ __forceinline__ float dot(uint4 u, const float* xs) {
        return dot4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                    __uint_as_float(u.y & 0xffff0000u), xs) +
               dot4(__uint_as_float(u.z << 16), __uint_as_float(u.z & 0xffff0000u), __uint_as_float(u.w << 16),
                    __uint_as_float(u.w & 0xffff0000u), xs + 4);
    }
};

// A 16-byte load of weights streamed once (no reuse: keep it out of L1).
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
    uint4 u;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(u.x), "=r"(u.y), "=r"(u.z), "=r"(u.w)
                 : "l"(p));
    return u;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum (or, with MAX, max) of `v` over the block (every thread gets it). `red` holds 32 floats.
template <bool MAX>
__device__ float block_reduce(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = MAX ? -INFINITY : 0.f;
    for (int i = 0; i < nw; i++) r = MAX ? fmaxf(r, red[i]) : r + red[i];
    return r;
}
__device__ float block_sum(float v, float* red) { return block_reduce<false>(v, red); }
__device__ float block_max(float v, float* red) { return block_reduce<true>(v, red); }

// 1 / rms(x) as the CPU computes it: 1 / sqrt(sum(x^2) / n + eps).
__device__ float rms_scale(const float* x, int n, float eps, float* red) {
    float ss = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += x[i] * x[i];
    ss = block_sum(ss, red);
    return 1.0f / sqrtf(ss / (float)n + eps);
}

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

// Programmatic dependent launch (sm_90 on): a decode step's kernels are launched so that the
// next may start while this one ends. `pdl_launch` lets the next kernel's blocks be scheduled
// (they start as this kernel's blocks leave room); `pdl_wait` waits until the kernels before
// have completed and their writes are visible. Every kernel waits before it reads what an
// earlier kernel wrote and before it writes anything, so each kernel's completion implies that
// of all before it. Without the launch attribute both are no-ops.
__device__ __forceinline__ void pdl_launch() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// Both, at the start of a kernel that has nothing to do before its inputs are ready.
__device__ __forceinline__ void pdl_start() {
    pdl_launch();
    pdl_wait();
}

// ---------------------------------------------------------------------------------------------
// Matrix-vector products (decode): out = W x, W row-major [rows, cols] in its stored type.
// A persistent grid (as many blocks as fit the GPU at once): each block copies x (f32) into
// shared memory once, normalised first when `norm` is given (x * rms_scale * norm, the LLaMA
// block's RMSNorm), then takes whole rows (or row pairs) at a time, grid-stride, `k` warps to a
// row: warp j of a group of k reads the j-th of k equal parts of each row with 16-byte loads,
// GEMV_U loads per lane in flight per row. Splitting rows evens the warps' shares where there
// are too few rows for whole rows to (the host picks k: 1, 4 or 8). MODE 0: out[r] = y; 1:
// out[r] += y (the residual); 2: rows come in (gate, up) pairs and out[r / 2] = silu(gate) * up
// (SwiGLU). `vec` (host-checked): rows are whole 16-byte vectors; else one value at a time.
#define GEMV_THREADS 1024

// Loads per lane in flight per row. Measured on H100s (7B F16 decode, tok/s, overlapping
// launches, before rows were split): 2 -> 154.3-154.7, 4 -> 150.0-151.8, 8 -> 142.4-143.0,
// 16 -> 104.6-104.9; with rows split, asking the compiler for two blocks per multiprocessor
// (32 registers, spills) -> 137.5-138.6 against 156.4-156.9.
#define GEMV_U 2

// xs = x, or rmsnorm(x) * norm when `norm` is given; then a block-wide barrier. Rows of up to
// 16 values per thread (float4-aligned) are read once, all loads in flight together, and kept
// in registers for the sum of squares and the store; others take the general loops.
#define INPUT_VEC 4
__device__ __forceinline__ void load_input(float* xs, int cols, const float* __restrict__ x,
                                           const float* __restrict__ norm, float eps) {
    float4* smem4 = reinterpret_cast<float4*>(xs);
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const float4* n4 = reinterpret_cast<const float4*>(norm);
    __shared__ float red[32];
    if ((cols & 3) == 0 && cols <= 4 * INPUT_VEC * (int)blockDim.x) {
        float4 v[INPUT_VEC];
        float ss = 0.f;
#pragma unroll
        for (int j = 0; j < INPUT_VEC; j++) {
            const int i = threadIdx.x + j * blockDim.x;
            v[j] = i < cols / 4 ? x4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
            ss += v[j].x * v[j].x + v[j].y * v[j].y + v[j].z * v[j].z + v[j].w * v[j].w;
        }
        const float s = norm ? 1.0f / sqrtf(block_sum(ss, red) / (float)cols + eps) : 1.f;
#pragma unroll
        for (int j = 0; j < INPUT_VEC; j++) {
            const int i = threadIdx.x + j * blockDim.x;
            if (i >= cols / 4) break;
            const float4 n = norm ? n4[i] : make_float4(1.f, 1.f, 1.f, 1.f);
            smem4[i] = norm ? make_float4(v[j].x * s * n.x, v[j].y * s * n.y, v[j].z * s * n.z, v[j].w * s * n.w) : v[j];
        }
    } else if (norm) {
        const float s = rms_scale(x, cols, eps, red);
        for (int i = threadIdx.x; i < cols; i += blockDim.x) xs[i] = x[i] * s * norm[i];
    } else {
        for (int i = threadIdx.x; i < cols; i += blockDim.x) xs[i] = x[i];
    }
    __syncthreads();
}

__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// This warp's first row (or pair) and its part [c0, c1) of the columns.
struct GemvShare {
    int r0, c0, c1;
};
template <int R>
__device__ __forceinline__ GemvShare gemv_share(int cols, int vec_width, int k) {
    const int warp = threadIdx.x >> 5, groups = (blockDim.x >> 5) / k, part = warp % k;
    const int units = cols / vec_width;  // whole vectors (or values) per row
    return {(blockIdx.x * groups + warp / k) * R, units * part / k * vec_width, units * (part + 1) / k * vec_width};
}

// Before the input is ready (while the kernel before this one ends): the first lines of this
// warp's part of its first rows into L2, a 128-byte line per lane, so that the weights are on
// their way while the block waits and builds its input.
template <class W, int MODE>
__device__ __forceinline__ void gemv_prefetch_first(const typename W::T* w, int rows, int cols, int vec, int k) {
    const int R = MODE == 2 ? 2 : 1, lane = threadIdx.x & 31;
    const GemvShare sh = gemv_share<R>(cols, vec ? W::VEC : 1, k);
    for (int j = 0; j < R && sh.r0 + j < rows; j++) {
        const char* p = reinterpret_cast<const char*>(w + (size_t)(sh.r0 + j) * cols + sh.c0);
        const size_t bytes = (size_t)(sh.c1 - sh.c0) * sizeof(typename W::T);
        if ((size_t)lane * 128 < bytes) prefetch_l2(p + lane * 128);
    }
}

// The rows of a product over the input in shared memory `xs` (see above). With k > 1 each
// warp's partial sums meet in shared memory behind the group's named barrier (1 + group: at
// most 15 groups), and the group's first warp adds them in order and finishes the row.
template <class W, int MODE>
__device__ __forceinline__ void gemv_rows(const typename W::T* __restrict__ w, int rows, int cols,
                                          const float* xs, float* out, int vec, int k) {
    const int R = MODE == 2 ? 2 : 1;
    __shared__ float parts[2][32][R];  // by round parity: a group is never two rounds apart
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, groups = (blockDim.x >> 5) / k;
    const int first = warp - warp % k;
    const GemvShare sh = gemv_share<R>(cols, vec ? W::VEC : 1, k);
    int parity = 0;
    for (int r0 = sh.r0; r0 < rows; r0 += gridDim.x * groups * R, parity ^= 1) {
        float acc[R];
        const typename W::T* row[R];
#pragma unroll
        for (int j = 0; j < R; j++) {
            acc[j] = 0.f;
            row[j] = w + (size_t)min(r0 + j, rows - 1) * cols;
        }
        if (vec) {
            const int v1 = sh.c1 / W::VEC;
            int i = sh.c0 / W::VEC + lane;
            for (; i + 32 * (GEMV_U - 1) < v1; i += 32 * GEMV_U) {
                uint4 u[R][GEMV_U];
#pragma unroll
                for (int j = 0; j < R; j++)
#pragma unroll
                    for (int q = 0; q < GEMV_U; q++) u[j][q] = load_stream(reinterpret_cast<const uint4*>(row[j]) + i + 32 * q);
#pragma unroll
                for (int j = 0; j < R; j++)
#pragma unroll
                    for (int q = 0; q < GEMV_U; q++) acc[j] += W::dot(u[j][q], xs + (i + 32 * q) * W::VEC);
            }
            for (; i < v1; i += 32)
#pragma unroll
                for (int j = 0; j < R; j++)
                    acc[j] += W::dot(load_stream(reinterpret_cast<const uint4*>(row[j]) + i), xs + i * W::VEC);
        } else {
            for (int c = sh.c0 + lane; c < sh.c1; c += 32)
#pragma unroll
                for (int j = 0; j < R; j++) acc[j] += W::get(row[j][c]) * xs[c];
        }
#pragma unroll
        for (int j = 0; j < R; j++) acc[j] = warp_sum(acc[j]);
        if (k > 1) {
            if (lane == 0)
#pragma unroll
                for (int j = 0; j < R; j++) parts[parity][warp][j] = acc[j];
            asm volatile("bar.sync %0, %1;" ::"r"(1 + warp / k), "r"(32 * k) : "memory");
            if (warp != first) continue;
#pragma unroll
            for (int j = 0; j < R; j++) {
                acc[j] = parts[parity][first][j];
                for (int q = 1; q < k; q++) acc[j] += parts[parity][first + q][j];
            }
        }
        if (lane == 0) {
            if (MODE == 0) out[r0] = acc[0];
            if (MODE == 1) out[r0] += acc[0];
            if (MODE == 2) out[r0 / 2] = silu(acc[0]) * acc[R - 1];
        }
    }
}

#define GEMV(name, W, MODE)                                                                                  \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS)                                              \
        name(const W::T* w, int rows, int cols, const float* x, const float* norm, float eps, float* out,   \
             int vec, int k) {                                                                              \
        extern __shared__ float4 smem4[];                                                                    \
        float* xs = reinterpret_cast<float*>(smem4);                                                         \
        gemv_prefetch_first<W, MODE>(w, rows, cols, vec, k);                                                 \
        pdl_start();                                                                                         \
        load_input(xs, cols, x, norm, eps);                                                                  \
        gemv_rows<W, MODE>(w, rows, cols, xs, out, vec, k);                                                  \
    }
GEMV(gemv_f32, WF32, 0)
GEMV(gemv_f16, WF16, 0)
GEMV(gemv_bf16, WBF16, 0)
GEMV(gemv_add_f32, WF32, 1)
GEMV(gemv_add_f16, WF16, 1)
GEMV(gemv_add_bf16, WBF16, 1)
GEMV(gemv_swiglu_f32, WF32, 2)
GEMV(gemv_swiglu_f16, WF16, 2)
GEMV(gemv_swiglu_bf16, WBF16, 2)

// ---------------------------------------------------------------------------------------------
// Element-wise steps. One block per token where a row-wide value is needed.

// x[t] = row tokens[t] of the embedding table (widened to f32). Grid: n tokens.
template <class W>
__device__ void embed(const typename W::T* table, const int* tokens, int d, float* x) {
    pdl_start();
    const int t = blockIdx.x;
    const typename W::T* row = table + (size_t)tokens[t] * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) x[(size_t)t * d + i] = W::get(row[i]);
}

// out[t] = rmsnorm(x[t]) * w, in the type of the product that reads it. Grid: n tokens.
template <class W>
__device__ void rmsnorm(const float* x, const float* w, int d, float eps, typename W::T* out) {
    __shared__ float red[32];
    pdl_start();
    const float* xt = x + (size_t)blockIdx.x * d;
    const float s = rms_scale(xt, d, eps, red);
    for (int i = threadIdx.x; i < d; i += blockDim.x) out[(size_t)blockIdx.x * d + i] = W::put(xt[i] * s * w[i]);
}

// out = in, narrowed to the type of the product that reads it.
template <class W>
__device__ void convert(const float* in, int n, typename W::T* out) {
    pdl_start();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) out[i] = W::put(in[i]);
}

// out[t][i] = silu(gu[t][2i]) * gu[t][2i + 1] (gate and up rows interleaved), narrowed.
template <class W>
__device__ void swiglu(const float* gu, int n, int ff, typename W::T* out) {
    pdl_start();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n * ff; i += gridDim.x * blockDim.x) {
        const int t = i / ff, c = i % ff;
        const float* g = gu + (size_t)t * 2 * ff + 2 * c;
        out[i] = W::put(silu(g[0]) * g[1]);
    }
}

#define ELEMENTWISE(suffix, W)                                                                               \
    extern "C" __global__ void embed_##suffix(const W::T* table, const int* tokens, int d, float* x) {      \
        embed<W>(table, tokens, d, x);                                                                       \
    }                                                                                                        \
    extern "C" __global__ void rmsnorm_##suffix(const float* x, const float* w, int d, float eps, W::T* out) { \
        rmsnorm<W>(x, w, d, eps, out);                                                                       \
    }                                                                                                        \
    extern "C" __global__ void convert_##suffix(const float* in, int n, W::T* out) { convert<W>(in, n, out); } \
    extern "C" __global__ void swiglu_##suffix(const float* gu, int n, int ff, W::T* out) {                  \
        swiglu<W>(gu, n, ff, out);                                                                           \
    }
ELEMENTWISE(f32, WF32)
ELEMENTWISE(f16, WF16)
ELEMENTWISE(bf16, WBF16)

// ---------------------------------------------------------------------------------------------
// Rotary embedding of q and k (in place in the [q | k | v] rows of `qkv`), and the K/V cache
// write at positions pos.. . Caches are head-major: head h's position p starts at
// (h * n_ctx + p) * hd. `halves`: dims (i, i + hd/2) rotate together, else (2i, 2i + 1).
// One thread per rotated pair or copied V value: grid n tokens * ceil(items / blockDim.x).
template <class KV>
__device__ void rope_store(float* qkv, const int* pos_p, const float* inv_freq, int n_head, int n_kv, int hd,
                           int halves, int n_ctx, typename KV::T* kc, typename KV::T* vc) {
    pdl_start();
    const int half = hd / 2, qd = n_head * hd, kvd = n_kv * hd;
    const int pairs = (n_head + n_kv) * half;
    const int chunks = (pairs + kvd + blockDim.x - 1) / blockDim.x;
    const int t = blockIdx.x / chunks, pos = *pos_p + t;
    const int i = (blockIdx.x % chunks) * blockDim.x + threadIdx.x;
    float* row = qkv + (size_t)t * (qd + 2 * kvd);
    if (i < pairs) {
        const int h = i / half, p = i % half;
        const int a = halves ? p : 2 * p, b = halves ? p + half : 2 * p + 1;
        float s, c;
        sincosf((float)pos * inv_freq[p], &s, &c);
        float* v = row + h * hd;  // q heads, then k heads
        const float x0 = v[a], x1 = v[b];
        const float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
        v[a] = y0;
        v[b] = y1;
        if (h >= n_head) {
            typename KV::T* k = kc + ((size_t)(h - n_head) * n_ctx + pos) * hd;
            k[a] = KV::put(y0);
            k[b] = KV::put(y1);
        }
    } else if (i < pairs + kvd) {
        const int j = i - pairs, h = j / hd, e = j % hd;
        vc[((size_t)h * n_ctx + pos) * hd + e] = KV::put(row[qd + kvd + j]);
    }
}

extern "C" __global__ void rope_store_f32(float* qkv, const int* pos_p, const float* inv_freq, int n_head, int n_kv,
                                          int hd, int halves, int n_ctx, float* kc, float* vc) {
    rope_store<WF32>(qkv, pos_p, inv_freq, n_head, n_kv, hd, halves, n_ctx, kc, vc);
}
extern "C" __global__ void rope_store_f16(float* qkv, const int* pos_p, const float* inv_freq, int n_head, int n_kv,
                                          int hd, int halves, int n_ctx, u16* kc, u16* vc) {
    rope_store<WF16>(qkv, pos_p, inv_freq, n_head, n_kv, hd, halves, n_ctx, kc, vc);
}

// ---------------------------------------------------------------------------------------------
// Decode attention (flash decoding): one block of ATT_THREADS per (token, head, split of the
// positions). The positions a token sees are shared evenly by as many splits as give each at
// least ATT_MIN_SPLIT (at most `n_splits`, decided on the GPU from the position, so one
// captured graph serves every step); the other blocks only take their ticket. A block scores
// its positions ATT_CHUNK at a time into shared memory, 16 lanes to a key row (ATT_ROWS rows in
// flight: coalesced 16-byte loads), softmaxes the chunk online (running max and sum), and
// accumulates the value rows the same way, each lane a fixed slice of dimensions; the ATT_ROWS
// row groups are summed at the end. Measured on an H100 against the kernel before (a warp per
// split, lane j scoring key j of 32, splits of at least 64): see README's GPU section.
// With one split in use the block writes the normalised output; with several each writes
// (max, sum, unnormalised accumulator) and takes a ticket of its (token, head): the last of the
// head's blocks to finish merges them into the output and resets the ticket for the next step.
// Token t sees positions 0..=pos+t. hd <= MAX_HD.
#define MAX_HD 256
#define ATT_THREADS 128
#define ATT_LANES 16
#define ATT_ROWS (ATT_THREADS / ATT_LANES)
#define ATT_CHUNK ATT_THREADS
#define ATT_MIN_SPLIT 32
// Accumulators per lane: its dimensions of MAX_HD (a lane's slice of every ATT_LANES-th value).
#define ATT_ACC (MAX_HD / ATT_LANES)

// One head's attention output `o` merged by a block from the (max, sum, accumulator) of its
// `active` splits at `hp` (split s at hp + s * (hd + 2), written by other blocks of this
// kernel: read past L1): o = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s, added in split
// order. active <= 32; `w`: 32 floats of shared memory.
__device__ void merge_splits(const float* hp, int active, int hd, float* o, float* w) {
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        const float* mine = hp + (size_t)lane * (hd + 2);
        const float m = lane < active ? __ldcg(mine) : -INFINITY;
        const float mx = warp_max(m);
        const float e = lane < active ? expf(m - mx) : 0.f;
        const float l = warp_sum(lane < active ? e * __ldcg(mine + 1) : 0.f);
        w[lane] = lane < active ? e / l : 0.f;
    }
    __syncthreads();
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.f;
        for (int s = 0; s < active; s++) acc += w[s] * __ldcg(hp + (size_t)s * (hd + 2) + 2 + d);
        o[d] = acc;
    }
}

template <class KV>
__device__ void attention(const float* qkv, const typename KV::T* kc, const typename KV::T* vc, int n_tokens,
                          const int* pos_p, int n_head, int n_kv, int hd, int n_ctx, int n_splits, float scale,
                          float* out, float* part, int* tickets) {
    typedef typename KV::T T;
    __shared__ float qs[MAX_HD];
    __shared__ float ps[ATT_CHUNK];
    __shared__ float rows[ATT_ROWS][MAX_HD];
    __shared__ float red[32];
    __shared__ int last;
    pdl_start();
    const int tid = threadIdx.x, r = tid / ATT_LANES, c = tid % ATT_LANES;
    const int g = blockIdx.x;
    const int s = g % n_splits, h = (g / n_splits) % n_head, t = g / (n_splits * n_head);
    const int len = *pos_p + t + 1;
    const int active = min(n_splits, (len + ATT_MIN_SPLIT - 1) / ATT_MIN_SPLIT);
    const int per = (len + active - 1) / active;
    const int qd = n_head * hd, kvd = n_kv * hd;
    // With 16-byte rows, lane c holds dimensions (c + ATT_LANES i) VEC + e in acc[i VEC + e];
    // else dimension c + ATT_LANES i in acc[i].
    const bool vec = (hd * sizeof(T)) % 16 == 0;
    float m = -INFINITY, l = 0.f, acc[ATT_ACC];
#pragma unroll
    for (int i = 0; i < ATT_ACC; i++) acc[i] = 0.f;
    if (s < active) {
        const int j0 = s * per, j1 = min(len, j0 + per);
        const int kvh = h / (n_head / n_kv);
        const float* q = qkv + (size_t)t * (qd + 2 * kvd) + h * hd;
        for (int d = tid; d < hd; d += ATT_THREADS) qs[d] = q[d];
        const T* kh = kc + (size_t)kvh * n_ctx * hd;
        const T* vh = vc + (size_t)kvh * n_ctx * hd;
        for (int jb = j0; jb < j1; jb += ATT_CHUNK) {
            const int nk = min(ATT_CHUNK, j1 - jb);
            __syncthreads();  // qs written; the chunk before has read ps
#pragma unroll 4
            for (int jj0 = 0; jj0 < nk; jj0 += ATT_ROWS) {
                const int jj = jj0 + r;
                float dot = 0.f;
                if (jj < nk) {
                    const T* kr = kh + (size_t)(jb + jj) * hd;
                    if (vec) {
                        for (int d = c * KV::VEC; d < hd; d += ATT_LANES * KV::VEC)
                            dot += KV::dot(*reinterpret_cast<const uint4*>(kr + d), qs + d);
                    } else {
                        for (int d = c; d < hd; d += ATT_LANES) dot += KV::get(kr[d]) * qs[d];
                    }
                }
                for (int o = ATT_LANES / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
                if (jj < nk && c == 0) ps[jj] = dot * scale;
            }
            __syncthreads();
            const float sc = tid < nk ? ps[tid] : -INFINITY;
            const float m_new = fmaxf(m, block_max(sc, red));
            const float p = tid < nk ? expf(sc - m_new) : 0.f;
            if (tid < nk) ps[tid] = p;
            const float corr = expf(m - m_new);  // 0 while m is -inf
            l = l * corr + block_sum(p, red);     // its barriers publish ps
            m = m_new;
#pragma unroll
            for (int i = 0; i < ATT_ACC; i++) acc[i] *= corr;
#pragma unroll 2
            for (int jj = r; jj < nk; jj += ATT_ROWS) {
                const float pj = ps[jj];
                const T* vr = vh + (size_t)(jb + jj) * hd;
                if (vec) {
#pragma unroll
                    for (int i = 0; i < ATT_ACC / KV::VEC; i++) {
                        const int d = (c + ATT_LANES * i) * KV::VEC;
                        if (d < hd) {
                            float v[KV::VEC];
                            KV::widen(*reinterpret_cast<const uint4*>(vr + d), v);
#pragma unroll
                            for (int e = 0; e < KV::VEC; e++) acc[i * KV::VEC + e] += pj * v[e];
                        }
                    }
                } else {
#pragma unroll
                    for (int i = 0; i < ATT_ACC; i++) {
                        const int d = c + ATT_LANES * i;
                        if (d < hd) acc[i] += pj * KV::get(vr[d]);
                    }
                }
            }
        }
        // Sum the row groups' accumulators: rows[r][dim].
#pragma unroll
        for (int i = 0; i < ATT_ACC; i++) {
            const int d = vec ? (c + ATT_LANES * (i / KV::VEC)) * KV::VEC + i % KV::VEC : c + ATT_LANES * i;
            if (d < hd) rows[r][d] = acc[i];
        }
        __syncthreads();
        const float inv = active == 1 ? 1.0f / l : 1.0f;
        float* dst = active == 1 ? out + (size_t)t * qd + h * hd : part + (size_t)g * (hd + 2) + 2;
        for (int d = tid; d < hd; d += ATT_THREADS) {
            float sum = 0.f;
#pragma unroll
            for (int k = 0; k < ATT_ROWS; k++) sum += rows[k][d];
            dst[d] = sum * inv;
        }
        if (active > 1 && tid == 0) {
            dst[-2] = m;
            dst[-1] = l;
        }
    }
    if (n_splits == 1) return;
    __threadfence();  // this thread's partials are visible before the ticket is taken
    __syncthreads();
    int* ticket = tickets + t * n_head + h;
    if (tid == 0) last = atomicAdd(ticket, 1) == n_splits - 1;
    __syncthreads();
    if (last) {
        __threadfence();
        if (active > 1) merge_splits(part + (size_t)(g - s) * (hd + 2), active, hd, out + (size_t)t * qd + h * hd, red);
        if (tid == 0) *ticket = 0;
    }
}

extern "C" __global__ void __launch_bounds__(ATT_THREADS)
    attention_f32(const float* qkv, const float* kc, const float* vc, int n_tokens, const int* pos_p, int n_head,
                  int n_kv, int hd, int n_ctx, int n_splits, float scale, float* out, float* part, int* tickets) {
    attention<WF32>(qkv, kc, vc, n_tokens, pos_p, n_head, n_kv, hd, n_ctx, n_splits, scale, out, part, tickets);
}
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
    attention_f16(const float* qkv, const u16* kc, const u16* vc, int n_tokens, const int* pos_p, int n_head,
                  int n_kv, int hd, int n_ctx, int n_splits, float scale, float* out, float* part, int* tickets) {
    attention<WF16>(qkv, kc, vc, n_tokens, pos_p, n_head, n_kv, hd, n_ctx, n_splits, scale, out, part, tickets);
}

// ---------------------------------------------------------------------------------------------
// Causal attention of a batch (prefill), one block per (head, tile of TQ queries), an online
// softmax over chunks of TK keys: each chunk of K and V is read once per tile into shared
// memory (coalesced), each thread scores 2 queries x 4 keys from float4 reads, the 8 threads
// of a query pair share its running max and sum through shuffles, and each thread accumulates
// 2 queries x hd/8 dims of the output. hd % 8 == 0 and hd <= 128. Used for prompts unless
// RUNLLAMA_CUDA_ATTN=warp (then the warp-per-query kernel above). Dynamic shared memory:
// attn_tiled_shared(hd) bytes. Grid: n_head * ceil(n_tokens / TQ) blocks of TILE_THREADS.
#define TQ 32
#define TK 32
#define TILE_THREADS 128
#define TILE_MAX_DPT 16
template <class KV>
__device__ void attention_tiled(const float* qkv, const typename KV::T* kc, const typename KV::T* vc, int n_tokens,
                                const int* pos_p, int n_head, int n_kv, int hd, int n_ctx, float scale, float* out) {
    extern __shared__ float4 sm4[];
    pdl_start();
    const int ld = hd + 4;  // row stride (floats): float4-aligned rows, fewer bank conflicts
    float* Qs = reinterpret_cast<float*>(sm4);
    float* Ks = Qs + TQ * ld;
    float* Vs = Ks + TK * ld;
    float* Ps = Vs + TK * ld;  // [TQ][TK]
    const int tiles = (n_tokens + TQ - 1) / TQ;
    const int h = blockIdx.x / tiles, t0 = (blockIdx.x % tiles) * TQ;
    const int pos0 = *pos_p, tid = threadIdx.x;
    const int qd = n_head * hd, kvd = n_kv * hd, stride = qd + 2 * kvd;
    const int kvh = h / (n_head / n_kv);
    for (int e = tid; e < TQ * hd; e += TILE_THREADS) {
        const int q = e / hd, d = e % hd;
        Qs[q * ld + d] = t0 + q < n_tokens ? qkv[(size_t)(t0 + q) * stride + h * hd + d] * scale : 0.f;
    }
    const int qp = tid >> 3, grp = tid & 7, dpt = hd / 8;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, acc[2][TILE_MAX_DPT];
#pragma unroll
    for (int j = 0; j < TILE_MAX_DPT; j++) acc[0][j] = acc[1][j] = 0.f;
    const int last = pos0 + min(t0 + TQ, n_tokens) - 1;  // the last position the tile sees
    const typename KV::T* kh = kc + (size_t)kvh * n_ctx * hd;
    const typename KV::T* vh = vc + (size_t)kvh * n_ctx * hd;
    for (int j0 = 0; j0 <= last; j0 += TK) {
        __syncthreads();  // the last chunk's V and P are used up (and Q is written)
        for (int e = tid; e < TK * hd; e += TILE_THREADS) {
            const int k = e / hd, d = e % hd;
            const bool ok = j0 + k <= last;
            Ks[k * ld + d] = ok ? KV::get(kh[(size_t)(j0 + k) * hd + d]) : 0.f;
            Vs[k * ld + d] = ok ? KV::get(vh[(size_t)(j0 + k) * hd + d]) : 0.f;
        }
        __syncthreads();
        float sc[2][4];
#pragma unroll
        for (int c = 0; c < 4; c++) sc[0][c] = sc[1][c] = 0.f;
        for (int d = 0; d < hd; d += 4) {
            const float4 q0 = *reinterpret_cast<const float4*>(Qs + (2 * qp) * ld + d);
            const float4 q1 = *reinterpret_cast<const float4*>(Qs + (2 * qp + 1) * ld + d);
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const float4 k = *reinterpret_cast<const float4*>(Ks + (4 * grp + c) * ld + d);
                sc[0][c] += q0.x * k.x + q0.y * k.y + q0.z * k.z + q0.w * k.w;
                sc[1][c] += q1.x * k.x + q1.y * k.y + q1.z * k.z + q1.w * k.w;
            }
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int t = t0 + 2 * qp + r;
            float mx = -INFINITY;
#pragma unroll
            for (int c = 0; c < 4; c++) {
                if (t >= n_tokens || j0 + 4 * grp + c > pos0 + t) sc[r][c] = -INFINITY;
                mx = fmaxf(mx, sc[r][c]);
            }
            for (int o = 1; o < 8; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float mn = fmaxf(m[r], mx);
            float ps = 0.f;
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const float p = mn == -INFINITY ? 0.f : expf(sc[r][c] - mn);
                Ps[(2 * qp + r) * TK + 4 * grp + c] = p;
                ps += p;
            }
            for (int o = 1; o < 8; o <<= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
            const float corr = m[r] == -INFINITY ? 0.f : expf(m[r] - mn);
            l[r] = l[r] * corr + ps;
#pragma unroll
            for (int j = 0; j < TILE_MAX_DPT; j++) acc[r][j] *= corr;
            m[r] = mn;
        }
        __syncthreads();
        const int nk = min(TK, last - j0 + 1);
        for (int k = 0; k < nk; k++) {
            const float p0 = Ps[(2 * qp) * TK + k], p1 = Ps[(2 * qp + 1) * TK + k];
            const float* v = Vs + k * ld + grp * dpt;
#pragma unroll
            for (int j = 0; j < TILE_MAX_DPT; j++) {
                if (j < dpt) {
                    acc[0][j] += p0 * v[j];
                    acc[1][j] += p1 * v[j];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int t = t0 + 2 * qp + r;
        if (t >= n_tokens) continue;
        float* o = out + (size_t)t * qd + h * hd + grp * dpt;
        const float inv = 1.0f / l[r];
#pragma unroll
        for (int j = 0; j < TILE_MAX_DPT; j++)
            if (j < dpt) o[j] = acc[r][j] * inv;
    }
}

extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    attention_tiled_f32(const float* qkv, const float* kc, const float* vc, int n_tokens, const int* pos_p,
                        int n_head, int n_kv, int hd, int n_ctx, float scale, float* out) {
    attention_tiled<WF32>(qkv, kc, vc, n_tokens, pos_p, n_head, n_kv, hd, n_ctx, scale, out);
}
extern "C" __global__ void __launch_bounds__(TILE_THREADS)
    attention_tiled_f16(const float* qkv, const u16* kc, const u16* vc, int n_tokens, const int* pos_p,
                        int n_head, int n_kv, int hd, int n_ctx, float scale, float* out) {
    attention_tiled<WF16>(qkv, kc, vc, n_tokens, pos_p, n_head, n_kv, hd, n_ctx, scale, out);
}


// ---------------------------------------------------------------------------------------------
// Causal attention of a batch (prefill) through cuBLAS: `q_pack` scales q and packs it head-major
// in the cache's type; per head (batched by the host) S = K Q^T in f32; `softmax_causal` turns
// each row of S into probabilities in the cache's type; O = V P in f32, head-major; then
// `attn_out` narrows O into the output product's input, token-major.

// q[h][t][d] = qkv's q of token t, head h, times `scale`. Grid-stride over n * n_head * hd.
template <class KV>
__device__ void q_pack(const float* qkv, int n, int n_head, int n_kv, int hd, float scale, typename KV::T* q) {
    pdl_start();
    const int qd = n_head * hd, stride = qd + 2 * n_kv * hd;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n * qd; i += gridDim.x * blockDim.x) {
        const int t = i / qd, c = i % qd, h = c / hd, d = c % hd;
        q[((size_t)h * n + t) * hd + d] = KV::put(qkv[(size_t)t * stride + c] * scale);
    }
}

// Row r of `s` (`len` scores; its token t = r % n sees keys 0..=pos0 + t) as probabilities in
// row r of `p`, zero past the last key it sees (`p` may be `s` when both are f32: each thread
// writes only what it read). One block per row.
template <class KV>
__device__ void softmax_causal(const float* s, int len, int n, int pos0, typename KV::T* p) {
    __shared__ float red[32];
    pdl_start();
    const size_t r = blockIdx.x;
    const int valid = min(len, pos0 + (int)(r % n) + 1);
    const float* row = s + r * len;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < valid; j += blockDim.x) mx = fmaxf(mx, row[j]);
    mx = block_max(mx, red);
    float sum = 0.f;
    for (int j = threadIdx.x; j < valid; j += blockDim.x) sum += expf(row[j] - mx);
    const float inv = 1.0f / block_sum(sum, red);
    typename KV::T* out = p + r * len;
    for (int j = threadIdx.x; j < len; j += blockDim.x) out[j] = KV::put(j < valid ? expf(row[j] - mx) * inv : 0.f);
}

// xb[t][h * hd + d] = o[h][t][d], narrowed to the output product's type.
template <class W>
__device__ void attn_out(const float* o, int n, int n_head, int hd, typename W::T* xb) {
    pdl_start();
    const int qd = n_head * hd;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n * qd; i += gridDim.x * blockDim.x) {
        const int t = i / qd, c = i % qd, h = c / hd, d = c % hd;
        xb[i] = W::put(o[((size_t)h * n + t) * hd + d]);
    }
}

#define PREFILL_ATTN(suffix, KV)                                                                             \
    extern "C" __global__ void q_pack_##suffix(const float* qkv, int n, int n_head, int n_kv, int hd,      \
                                               float scale, KV::T* q) {                                    \
        q_pack<KV>(qkv, n, n_head, n_kv, hd, scale, q);                                                      \
    }                                                                                                        \
    extern "C" __global__ void softmax_causal_##suffix(const float* s, int len, int n, int pos0, KV::T* p) { \
        softmax_causal<KV>(s, len, n, pos0, p);                                                              \
    }
PREFILL_ATTN(f32, WF32)
PREFILL_ATTN(f16, WF16)

#define ATTN_OUT(suffix, W)                                                                                  \
    extern "C" __global__ void attn_out_##suffix(const float* o, int n, int n_head, int hd, W::T* xb) {    \
        attn_out<W>(o, n, n_head, hd, xb);                                                                   \
    }
ATTN_OUT(f32, WF32)
ATTN_OUT(f16, WF16)
ATTN_OUT(bf16, WBF16)
