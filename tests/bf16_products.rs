//! What the load option `bf16_products` (`LLAMA_BF16_PRODUCTS_ROUNDED`) costs in accuracy, end
//! to end: stories260K's bf16 weights prefilled with the f32 products and with the bf16-rounded
//! activations (`kernels/src/bf16_dot.rs`), against the f32 model's logits; and two models of
//! the two choices side by side in one process.

mod common;
use common::*;

use std::sync::Arc;

use runllama::loader::{load, LoadOptions};
use runllama::model::Model;
use runllama::session::Session;
use runllama_kernels::Bf16Products;

/// A fixture loaded with the given choice.
fn load_with(rel: &str, bf16_products: Bf16Products) -> Arc<Model> {
    let opts = LoadOptions { n_threads: 2, bf16_products, ..LoadOptions::default() };
    Arc::new(load(&data(rel), opts).unwrap_or_else(|e| panic!("loading {rel}: {e}")))
}

/// The logits after prefilling `tokens` in one batch.
fn prefill_logits(m: &Arc<Model>, tokens: &[u32]) -> Vec<f32> {
    let s = Session::new(m.clone(), params(0, 0.0, 0)).unwrap();
    s.step(tokens).unwrap();
    s.logits().unwrap().expect("logits after a step")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap_or(0)
}

#[test]
fn rounded_bf16_products_stay_near_the_f32_reference() {
    let tokens = reference_tokens();
    let reference = prefill_logits(&load_with("stories260K/hf/model.safetensors", Bf16Products::F32), &tokens);
    // Both models live at once: each keeps its own choice.
    let (exact, fast) =
        (load_with("stories260K/hf/bf16", Bf16Products::F32), load_with("stories260K/hf/bf16", Bf16Products::Rounded));
    // `vdpbf16ps` runs on the AVX-512 path of CPUs with AVX512_BF16 (the path is known once a
    // model is loaded: `RUNLLAMA_CPU` caps it); the AMX path keeps its tiles' split (hi + lo)
    // products whatever the choice.
    let bf16_ok = runllama_kernels::detected().avx512bf16 && runllama_kernels::path() == runllama_kernels::Path::Avx512;
    let f32_products = prefill_logits(&exact, &tokens);
    let rounded = prefill_logits(&fast, &tokens);
    assert_eq!(prefill_logits(&exact, &tokens), f32_products, "the f32 model after the rounded one");
    let (d_f32, d_rounded) = (max_diff(&f32_products, &reference), max_diff(&rounded, &reference));
    let spread = reference.iter().fold(0f32, |a, &x| a.max(x.abs()));
    let d_between = max_diff(&rounded, &f32_products);
    eprintln!(
        "stories260K bf16, {} tokens in one batch: max |logit - f32 model| = {d_f32:e} (f32 products), {d_rounded:e} (rounded); rounded vs f32 products {d_between:e} (max |logit| {spread}); vdpbf16ps used: {bf16_ok}",
        tokens.len()
    );
    assert_eq!(argmax(&rounded), argmax(&reference), "the greedy token changed");
    // The bf16 weights themselves move the logits by ~8e-2; rounding the activations too must
    // not add more than as much again.
    assert!(d_rounded < 2.0 * d_f32 + 1e-3, "rounded products moved a logit by {d_rounded} (f32 products: {d_f32})");
    if bf16_ok {
        assert_ne!(rounded, f32_products, "the rounded products were not used");
    } else {
        assert_eq!(rounded, f32_products, "without AVX512_BF16 (or on the AMX path) the choice changes nothing");
    }
}
