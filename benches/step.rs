//! End-to-end step time on the bundled stories260K model: one decode step and a 32-token
//! batched prefill. `cargo bench --bench step`

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use runllama::loader::{load, LoadOptions};
use runllama::sampler::SamplerParams;
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

criterion_group!(benches, bench_step);
criterion_main!(benches);
