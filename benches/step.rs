//! End-to-end step time on the bundled stories260K model: one decode step and a 32-token
//! batched prefill; and the sampler alone over LLaMA 2's and LLaMA 3's vocabulary sizes.
//! `cargo bench --bench step`

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use runllama::loader::{load, LoadOptions};
use runllama::sampler::{sample, Rng, SamplerParams, Scratch};
use runllama::session::{Session, SessionParams};

fn bench_step(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stories260K/stories260K-f32.gguf");
    let model = Arc::new(load(&path, LoadOptions { n_threads: 1, ..Default::default() }).expect("load"));
    let params = SessionParams {
        n_ctx: 512,
        sampler: SamplerParams { temperature: 0.0, top_k: 0, top_p: 1.0, repeat_penalty: 1.0 },
        seed: 0,
        kv_type: Default::default(),
        kv_type_v: None,
    };
    let s = Session::new(model.clone(), params).expect("session");
    let prompt: Vec<u32> = (0..32).map(|i| 259 + i).collect();
    c.bench_function("stories260K decode step at position 32", |b| {
        b.iter(|| {
            s.rewind(32.min(s.position())).ok();
            if s.position() < 32 {
                s.reset().ok();
                s.step(&prompt).expect("prefill");
            }
            s.step(&[300]).expect("step")
        })
    });
    c.bench_function("stories260K prefill 32 tokens", |b| {
        b.iter(|| {
            s.reset().expect("reset");
            s.step(&prompt).expect("prefill")
        })
    });
}

/// One draw from logits spread like a language model's (a sum of uniforms, sd ~3, a few ids
/// far above), at the settings chat programs use; and from flat logits (uniform in [-1, 1], as
/// a random-weight model gives: top-p's nucleus is then most of the vocabulary).
fn bench_sample(c: &mut Criterion) {
    for n in [32000usize, 128256] {
        let mut rng = Rng::new(5);
        let logits: Vec<f32> = (0..n)
            .map(|i| {
                let g: f64 = (0..4).map(|_| rng.next_f64()).sum::<f64>() * 5.0 - 10.0;
                g as f32 + if i % 997 == 0 { 12.0 } else { 0.0 }
            })
            .collect();
        let flat: Vec<f32> = (0..n).map(|_| (rng.next_f64() * 2.0 - 1.0) as f32).collect();
        let mut scratch = Scratch::default();
        for (t, k, p) in [(0.0, 0, 1.0), (0.8, 0, 1.0), (0.8, 0, 0.95), (0.8, 40, 0.95)] {
            let params = SamplerParams { temperature: t, top_k: k, top_p: p, repeat_penalty: 1.0 };
            c.bench_function(&format!("sample {n} logits, T {t} top-k {k} top-p {p}"), |b| {
                b.iter(|| sample(&logits, &[], &params, &mut rng, &mut scratch))
            });
            if p < 1.0 {
                c.bench_function(&format!("sample {n} flat logits, T {t} top-k {k} top-p {p}"), |b| {
                    b.iter(|| sample(&flat, &[], &params, &mut rng, &mut scratch))
                });
            }
        }
    }
}

criterion_group!(benches, bench_step, bench_sample);
criterion_main!(benches);
