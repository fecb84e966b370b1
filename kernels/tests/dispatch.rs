//! The process-wide path choice: detection, the cap, and the plain ops following it. One test
//! only, in its own binary (its own process): it changes the global cap, which would race with
//! tests running in parallel threads.

use runllama_kernels::*;

#[test]
fn the_cap_selects_the_path_every_plain_op_uses() {
    let best = detected().best_path();
    assert_eq!(path(), best, "no cap: the best detected path");
    assert_eq!(path_name(), best.name());
    eprintln!("detected {:?}, path {}", detected(), path_name());

    let (rows, cols, n) = (13, 301, 5);
    let w: Vec<u8> =
        (0..rows * cols).flat_map(|i| half::f16::from_f32((i % 97) as f32 / 97.0 - 0.5).to_le_bytes()).collect();
    let x: Vec<f32> = (0..n * cols).map(|i| ((i * 31) % 101) as f32 / 101.0 - 0.5).collect();
    for cap in Path::ALL {
        set_max_path(cap);
        // At most the cap; AVX-VNNI only where the CPU has it (a CPU with AVX-512 without it
        // runs AVX2 under that cap).
        let p = match cap.min(best) {
            Path::AvxVnni if !detected().avxvnni => Path::Avx2,
            p => p,
        };
        assert_eq!(path(), p);
        let mut out = vec![0f32; n * rows];
        matmul(WeightType::F16, &w, rows, cols, &x, n, &mut out);
        let mut want = vec![0f32; n * rows];
        paths::matmul(p, WeightType::F16, &w, rows, cols, &x, n, &mut want);
        assert_eq!(out, want, "cap {cap:?}: the plain op runs path {p:?}");
        let mut mv = vec![0f32; rows];
        matvec(WeightType::F16, &w, &x[..cols], &mut mv);
        let mut want_mv = vec![0f32; rows];
        paths::matvec(p, WeightType::F16, &w, &x[..cols], &mut want_mv);
        assert_eq!(mv, want_mv, "cap {cap:?}: matvec runs path {p:?}");
        assert_eq!(dot_f32(&x[..cols], &x[cols..2 * cols]), paths::dot_f32(p, &x[..cols], &x[cols..2 * cols]));
    }
    set_max_path(Path::Amx);
    assert_eq!(path(), best, "raising the cap again");

    for p in Path::ALL {
        assert_eq!(Path::from_name(p.name()), Some(p));
    }
    assert_eq!(Path::from_name(" AVX2 "), Some(Path::Avx2));
    assert_eq!(Path::from_name("sse"), None);
}
