//! Per-op criterion benches of the kernels at LLaMA shapes, one thread (the main crate does the
//! threading). `cargo bench --bench kernels`
//!
//! - `read/...`: STREAM-like reads of a 1 GiB f32 buffer on the best SIMD path (the kernels'
//!   `dot_f32`, 4 vector accumulators): `sum_squares_1GiB` (one stream) and
//!   `dot_halves_1GiB` (two streams, 512 MiB apart). The single-thread memory bandwidth that
//!   matvec is compared with.
//! - `matvec/<path>/<type>/<rows>x<cols>`: bytes of weights streamed per second (decode is
//!   memory-bound: this is the number that matters), for every weight type and every path this
//!   CPU runs (scalar is the reference), LLaMA-7B/8B shapes up to the 128256x4096 LLaMA-3
//!   output matrix (1 GiB in f16/bf16, 2 GiB in f32). One 2 GiB buffer, allocated once; each
//!   iteration uses the next of the disjoint copies of the matrix that fit in it, so weights
//!   come from DRAM as in a real decode step (a model is far larger than the L3), not from a
//!   cache that one repeated 90 MB matrix would fit in.
//! - `matmul/<path>/<type>/4096x4096xn128`: a 128-token prefill (activations packed once, as
//!   the forward pass does); the throughput is counted in "elements" that are FLOPs
//!   (2 * rows * cols * n), so criterion's Gelem/s reads as GFLOP/s.
//! - `qmatvec/<path>/<type>/11008x4096` (streamed from memory), `qmatvec_l2/<path>/<type>/160x4096`
//!   (in L2) and `qmatmul/<path>/<type>/4096x4096xn128`: the same
//!   for the quantized types of the common presets (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K; activations
//!   quantized once, outside the timing, as the forward pass does per product input).
//! - `attention/<path>/<cache>/7B_4096`: one token's attention over one LLaMA2-7B layer's
//!   cache at 4096 positions (32 heads of 128; scores, softmax, weighted sum of V), f16 cache
//!   (`attn_scores` / `attn_wsum`) and 8-bit cache (`attn_scores_q8` /
//!   `attn_wsum_q8`), in bytes of K and V read per second.
//!
//! Sample counts are small (flat sampling, 10 samples) so the whole run takes a few minutes.
//! Filter as usual, e.g. `cargo bench --bench kernels -- 'matvec/avx512/BF16'`.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use runllama_kernels::{self as k, detected, paths, Path, WeightType};

const TYPES: [WeightType; 3] = [WeightType::F32, WeightType::F16, WeightType::BF16];
const QTYPES: [WeightType; 6] =
    [WeightType::Q8_0, WeightType::Q4_0, WeightType::Q4_K, WeightType::Q5_K, WeightType::Q6_K, WeightType::Q2_K];
const SHAPES: [(usize, usize); 5] = [(4096, 4096), (11008, 4096), (4096, 11008), (14336, 4096), (128256, 4096)];

/// A benchmark group of 10 flat samples, 0.3 s of warm-up, 1 s of measurement.
fn flat_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    g
}

/// The paths this CPU runs, fastest first; without `quantized`, not AVX-VNNI (whose float ops
/// are AVX2's code).
fn paths_to_bench(quantized: bool) -> Vec<Path> {
    let mut v: Vec<Path> = paths::available().filter(|&p| quantized || p != Path::AvxVnni).collect();
    v.reverse();
    v
}

fn config(c: &mut Criterion) -> &mut Criterion {
    eprintln!("kernels: detected {:?}; paths {:?}", detected(), paths::available().collect::<Vec<_>>());
    c
}

fn bench_kernels(c: &mut Criterion) {
    let c = config(c);
    // The STREAM-like reads first, beside the matvecs of the same run.
    let best = detected().best_path();
    {
        let buf = vec![1.0f32; (1 << 30) / 4];
        let (a, b) = buf.split_at(buf.len() / 2);
        let mut g = c.benchmark_group("read");
        g.sample_size(10).sampling_mode(SamplingMode::Flat);
        g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        g.throughput(Throughput::Bytes((buf.len() * 4) as u64));
        g.bench_function(format!("{}/sum_squares_1GiB", best.name()), |bn| {
            bn.iter(|| paths::dot_f32(best, black_box(&buf), &buf))
        });
        g.bench_function(format!("{}/dot_halves_1GiB", best.name()), |bn| {
            bn.iter(|| paths::dot_f32(best, black_box(a), b))
        });
        g.finish();
    }

    // One weight buffer for every shape and type: the largest (128256 x 4096 f32, 2 GiB),
    // written (so every page is real memory, not the shared zero page). 0x3C bytes are
    // finite in every type: f32 0.0115, f16 1.06, bf16 0.0115.
    let max_bytes = SHAPES.iter().map(|&(r, c)| r * c * 4).max().unwrap();
    let w = vec![0x3Cu8; max_bytes];
    let x = vec![0.5f32; 11008];
    let mut out = vec![0f32; 128256];
    let mut g = flat_group(c, "matvec");
    for p in paths_to_bench(false) {
        for wt in TYPES {
            for (rows, cols) in SHAPES {
                let bytes = rows * cols * wt.size();
                g.throughput(Throughput::Bytes(bytes as u64));
                let id = BenchmarkId::new(format!("{}/{wt:?}", p.name()), format!("{rows}x{cols}"));
                let (copies, mut k) = (w.len() / bytes, 0);
                g.bench_function(id, |b| {
                    b.iter(|| {
                        k = (k + 1) % copies;
                        paths::matvec(p, wt, &w[k * bytes..(k + 1) * bytes], &x[..cols], &mut out[..rows])
                    })
                });
            }
        }
    }
    g.finish();

    let (rows, cols, n) = (4096usize, 4096usize, 128usize);
    let xs: Vec<f32> = (0..n * cols).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let mut xp = vec![0f32; k::packed_len(n, cols)];
    let mut outs = vec![0f32; n * rows];
    let mut g = flat_group(c, "matmul");
    // Throughput in FLOPs (one multiply + one add per weight per token), reported as elements.
    g.throughput(Throughput::Elements((2 * rows * cols * n) as u64));
    for p in paths_to_bench(false) {
        for wt in TYPES {
            let bytes = rows * cols * wt.size();
            let id = BenchmarkId::new(format!("{}/{wt:?}", p.name()), format!("{rows}x{cols}xn{n}"));
            // The packed layout depends on the path and the weight type.
            paths::pack_activations(p, wt, &xs, n, cols, &mut xp);
            g.bench_function(id, |b| {
                b.iter(|| paths::matmul_packed(p, wt, &w[..bytes], rows, cols, &xp, n, &mut outs))
            });
        }
    }
    // The vdpbf16ps products of bf16 weights (LLAMA_BF16_PRODUCTS_ROUNDED) where the CPU has them.
    if k::detected().avx512bf16 && k::path() >= Path::Avx512 {
        let bytes = rows * cols * 2;
        let rounded = k::Products { path: Path::Avx512, bf16: k::Bf16Products::Rounded };
        paths::pack_activations(rounded, WeightType::BF16, &xs, n, cols, &mut xp);
        let id = BenchmarkId::new("avx512-bf16-rounded/BF16", format!("{rows}x{cols}xn{n}"));
        g.bench_function(id, |b| {
            b.iter(|| paths::matmul_packed(rounded, WeightType::BF16, &w[..bytes], rows, cols, &xp, n, &mut outs))
        });
    }
    g.finish();

    // Short prompts (a chat turn) on the best path and on AVX2 (Zen 3's): 8 and 32 tokens;
    // with AVX512_BF16 also the rounded bf16 products.
    let mut g = flat_group(c, "matmul_short");
    let best = k::path();
    let rounded = k::detected().avx512bf16 && best == Path::Avx512;
    let mut short_paths = vec![best];
    if best > Path::Avx2 && paths::available().any(|p| p == Path::Avx2) {
        short_paths.push(Path::Avx2);
    }
    for (short, path) in [8usize, 32].into_iter().flat_map(|n| short_paths.iter().map(move |&p| (n, p))) {
        g.throughput(Throughput::Elements((2 * rows * cols * short) as u64));
        for (wt, mode) in [
            (WeightType::F16, k::Bf16Products::F32),
            (WeightType::BF16, k::Bf16Products::F32),
            (WeightType::BF16, k::Bf16Products::Rounded),
        ] {
            if mode == k::Bf16Products::Rounded && !(rounded && path == best) {
                continue;
            }
            let products = k::Products { path, bf16: mode };
            let bytes = rows * cols * wt.size();
            paths::pack_activations(products, wt, &xs, short, cols, &mut xp);
            let name = if mode == k::Bf16Products::Rounded { "avx512-bf16-rounded" } else { path.name() };
            let id = BenchmarkId::new(format!("{name}/{wt:?}"), format!("{rows}x{cols}xn{short}"));
            g.bench_function(id, |b| {
                b.iter(|| paths::matmul_packed(products, wt, &w[..bytes], rows, cols, &xp, short, &mut outs))
            });
        }
    }
    g.finish();

    // Quantized weights: 0x3C bytes are valid blocks of every type (f16 scales 1.06).
    let (qrows, qcols) = (11008usize, 4096usize);
    let mut acts =
        vec![0u8; k::act_bytes(WeightType::Q8_0, qcols).unwrap().max(k::act_bytes(WeightType::Q4_K, qcols).unwrap())];
    let mut g = flat_group(c, "qmatvec");
    for p in paths_to_bench(true) {
        for wt in QTYPES {
            let bytes = qrows * wt.row_bytes(qcols).unwrap();
            k::quantize_acts(wt, &xs[..qcols], &mut acts);
            g.throughput(Throughput::Bytes(bytes as u64));
            let id = BenchmarkId::new(format!("{}/{wt:?}", p.name()), format!("{qrows}x{qcols}"));
            let (copies, mut c) = (w.len() / bytes, 0);
            g.bench_function(id, |b| {
                b.iter(|| {
                    c = (c + 1) % copies;
                    let m = &w[c * bytes..(c + 1) * bytes];
                    paths::matvec_quantized(p, wt, m, &acts, qcols, &mut out[..qrows])
                })
            });
        }
    }
    g.finish();
    // The same products over 160 rows (0.3-0.7 MB: in L2), the kernels' own speed.
    let l2_rows = 160;
    let mut g = flat_group(c, "qmatvec_l2");
    for p in paths_to_bench(true) {
        for wt in QTYPES {
            let bytes = l2_rows * wt.row_bytes(qcols).unwrap();
            k::quantize_acts(wt, &xs[..qcols], &mut acts);
            g.throughput(Throughput::Bytes(bytes as u64));
            let id = BenchmarkId::new(format!("{}/{wt:?}", p.name()), format!("{l2_rows}x{qcols}"));
            g.bench_function(id, |b| {
                b.iter(|| paths::matvec_quantized(p, wt, &w[..bytes], &acts, qcols, &mut out[..l2_rows]))
            });
        }
    }
    g.finish();
    let mut g = flat_group(c, "qmatmul");
    g.throughput(Throughput::Elements((2 * rows * cols * n) as u64));
    for p in paths_to_bench(true) {
        for wt in QTYPES {
            let bytes = rows * wt.row_bytes(cols).unwrap();
            let id = BenchmarkId::new(format!("{}/{wt:?}", p.name()), format!("{rows}x{cols}xn{n}"));
            paths::pack_activations(p, wt, &xs, n, cols, &mut xp);
            g.bench_function(id, |b| {
                b.iter(|| paths::matmul_packed(p, wt, &w[..bytes], rows, cols, &xp, n, &mut outs))
            });
        }
    }
    g.finish();
}

/// One token's attention over a 7B layer's K/V cache at 4096 positions, both cache types,
/// head-major as the forward pass keeps it (each head's positions contiguous).
fn bench_attention(c: &mut Criterion) {
    let (n_pos, heads, hd) = (4096usize, 32usize, 128usize);
    let kvd = heads * hd;
    let vals: Vec<f32> = (0..n_pos * kvd).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let f16s: Vec<u8> = vals.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let (mut qs, mut scales) = (vec![0i8; vals.len()], vec![half::f16::ZERO; vals.len() / 32]);
    k::quantize_q8(&vals, 32, &mut qs, &mut scales);
    let q: Vec<f32> = (0..kvd).map(|i| ((i * 31) % 97) as f32 / 97.0 - 0.5).collect();
    let (mut scores, mut out) = (vec![0f32; n_pos], vec![0f32; hd]);
    let mut g = flat_group(c, "attention");
    for p in paths_to_bench(false) {
        // K and V are the same buffer here: the bytes of two caches are read either way.
        g.throughput(Throughput::Bytes((2 * f16s.len()) as u64));
        g.bench_function(BenchmarkId::new(format!("{}/f16", p.name()), "7B_4096"), |b| {
            b.iter(|| {
                for h in 0..heads {
                    let kh = &f16s[2 * h * n_pos * hd..2 * (h + 1) * n_pos * hd];
                    paths::attn_scores(p, WeightType::F16, kh, hd, &q[h * hd..(h + 1) * hd], 0.088, &mut scores, kh);
                    paths::softmax(p, &mut scores);
                    paths::attn_wsum(p, WeightType::F16, kh, hd, &scores, &mut out);
                    black_box(&out);
                }
            })
        });
        g.throughput(Throughput::Bytes((2 * (qs.len() + 2 * scales.len())) as u64));
        g.bench_function(BenchmarkId::new(format!("{}/q8_0", p.name()), "7B_4096"), |b| {
            b.iter(|| {
                for h in 0..heads {
                    let (qh, sh) = (&qs[h * n_pos * hd..], &scales[h * n_pos * hd / 32..]);
                    paths::attn_scores_q8(p, qh, sh, 32, hd, &q[h * hd..(h + 1) * hd], 0.088, &mut scores);
                    paths::softmax(p, &mut scores);
                    paths::attn_wsum_q8(p, qh, sh, 32, hd, &scores, &mut out);
                    black_box(&out);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_kernels, bench_attention);
criterion_main!(benches);
