//! Per-op criterion benches of the kernels at LLaMA-7B shapes, reported in bytes of weights
//! streamed per second (decode is memory-bound: this is the number that matters).
//! `cargo bench --bench kernels`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use runllama_kernels::{matvec, WeightType};

fn bench_matvec(c: &mut Criterion) {
    let mut g = c.benchmark_group("matvec");
    g.sample_size(10);
    for wt in [WeightType::F32, WeightType::F16, WeightType::BF16] {
        for &(rows, cols) in &[(4096usize, 4096usize), (11008, 4096), (4096, 11008)] {
            let w = vec![0x3Cu8; rows * cols * wt.size()];
            let x = vec![0.5f32; cols];
            let mut out = vec![0f32; rows];
            g.throughput(Throughput::Bytes((rows * cols * wt.size()) as u64));
            g.bench_with_input(BenchmarkId::new(format!("{wt:?}"), format!("{rows}x{cols}")), &(), |b, _| {
                b.iter(|| matvec(wt, &w, &x, &mut out))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_matvec);
criterion_main!(benches);
