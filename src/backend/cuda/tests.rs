//! The quantized kernels on the GPU against the reference (run where a GPU is present,
//! "skipped: no GPU" elsewhere): random blocks of every type (`tests/data/quant/blocks.bin`,
//! with gguf-py's dequantized values) dequantized bit for bit, as embedding rows and as rows
//! for a batch's products; and the matrix-vector products (store and add) against the
//! dequantized rows times the input quantized as the kernel does (8 bits per 32 values),
//! summed in f64.

use std::sync::Arc;

use super::driver::{Context, DeviceBuffer, Function, KernelArg, Stream};
use super::kernels::{GpuWeight, Kernels};
use super::pass::{quantize_grid, QGEMV_BLOCK, QUANTIZE_BLOCK};
use super::state::q8_scales_at;
use crate::formats::gguf::ggml_dtype;
use crate::tensor::DType;

/// Blocks of each type in blocks.bin, used as 4 rows of 6.
const ROWS: usize = 4;

/// (type, block bytes, reference values) per type of blocks.bin.
fn reference_blocks() -> Vec<(DType, Vec<u8>, Vec<f32>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/quant/blocks.bin");
    let b = std::fs::read(path).unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let (mut at, mut out) = (0, Vec::new());
    while at < b.len() {
        let (t, n) = (ggml_dtype(u32_at(at)).unwrap(), u32_at(at + 4) as usize);
        at += 8;
        let bytes = b[at..at + n * t.block_bytes()].to_vec();
        at += bytes.len();
        let vals =
            b[at..at + 4 * n * t.block_elems()].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()));
        let vals: Vec<f32> = vals.collect();
        at += 4 * vals.len();
        out.push((t, bytes, vals));
    }
    out
}

fn upload(ctx: &Arc<Context>, stream: &Stream, bytes: &[u8], pad: usize) -> DeviceBuffer {
    let buf = ctx.alloc(bytes.len() + pad, "test").unwrap();
    // SAFETY: `bytes` lives until the stream is synchronised; the buffer holds it.
    unsafe { stream.upload(buf.ptr(), bytes.as_ptr(), bytes.len()).unwrap() };
    stream.sync().unwrap();
    buf
}

fn download(stream: &Stream, buf: &DeviceBuffer, n: usize) -> Vec<f32> {
    let mut host = vec![0u8; 4 * n];
    // SAFETY: the buffer holds n f32.
    unsafe { stream.download(&mut host, buf.ptr()).unwrap() };
    host.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn launch(stream: &Stream, f: Function, grid: u32, block: u32, shared: usize, cells: &mut [u64]) {
    // SAFETY: the callers pass cells in the kernels' parameter order, addressing buffers of
    // the sizes the kernels read and write.
    unsafe { f.launch(stream, grid, block, shared as u32, false, cells).unwrap() };
    stream.sync().unwrap();
}

/// The kernel's 8-bit input: per 32 values, q = round-half-even(x * 127 / amax) and its scale,
/// as values `q * d`.
fn quantized_input(x: &[f32]) -> Vec<f64> {
    x.chunks_exact(32)
        .flat_map(|g| {
            let amax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            g.iter()
                .map(move |&v| if amax > 0.0 { (v * (127.0 / amax)).round_ties_even() as f64 * d as f64 } else { 0.0 })
        })
        .collect()
}

#[test]
fn quantized_kernels_match_the_reference() {
    if let Err(e) = super::probe(0) {
        eprintln!("skipped: no GPU ({e})");
        return;
    }
    let ctx = Context::new(0).unwrap();
    let kernels = Kernels::load(&ctx, 0).unwrap();
    let stream = ctx.stream().unwrap();
    for (t, bytes, reference) in reference_blocks() {
        let cols = reference.len() / ROWS;
        let w = upload(&ctx, &stream, &bytes, 16);
        let p = kernels.products(GpuWeight::Quant(t)).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();

        let out = ctx.alloc(reference.len() * 4, "test").unwrap();
        let f32_rows = p.quant.unwrap().to_f32;
        launch(&stream, f32_rows, 3, 64, 0, &mut [w.ptr(), (ROWS as i32).cell(), (cols as i32).cell(), out.ptr()]);
        assert_eq!(bits(&download(&stream, &out, reference.len())), bits(&reference), "{t:?}: dequantized rows");

        let tokens: Vec<u8> = [3i32, 0, 2, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
        let ids = upload(&ctx, &stream, &tokens, 0);
        launch(&stream, p.embed, 4, 64, 0, &mut [w.ptr(), ids.ptr(), (cols as i32).cell(), out.ptr()]);
        let want: Vec<f32> = [3, 0, 2, 1].iter().flat_map(|&r| reference[r * cols..][..cols].to_vec()).collect();
        assert_eq!(bits(&download(&stream, &out, want.len())), bits(&want), "{t:?}: embedding rows");

        // One token's f32 input (decode), and three tokens' f16 inputs (a short prompt), each
        // product stored, then added to what it stored (2 W x).
        let input = |t: usize| -> Vec<f32> {
            (0..cols).map(|i| (((i + 31 * t) * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i / 32) as f32)).collect()
        };
        let check = |got: &[f32], ldo: usize, inputs: &[Vec<f64>], times: f64, what: &str| {
            for (tok, xq) in inputs.iter().enumerate() {
                for r in 0..ROWS {
                    let row = &reference[r * cols..][..cols];
                    let want: f64 = times * row.iter().zip(xq).map(|(&w, &a)| w as f64 * a).sum::<f64>();
                    let scale: f64 = times * row.iter().zip(xq).map(|(&w, &a)| (w as f64 * a).abs()).sum::<f64>();
                    let g = got[tok * ldo + r] as f64;
                    assert!(
                        (g - want).abs() <= 1e-5 * scale + 1e-6,
                        "{t:?}: token {tok} row {r} ({what}): {g} against {want} (sum of |terms| {scale})"
                    );
                }
            }
        };
        let (x, rows, n_cols) = (input(0), (ROWS as i32).cell(), (cols as i32).cell());
        let xd = upload(&ctx, &stream, &x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(), 0);
        let q8 = ctx.alloc(3 * (q8_scales_at(cols) + cols / 4), "test").unwrap();
        let (qa, ds) = (q8.ptr(), q8.at(q8_scales_at(cols)));
        launch(
            &stream,
            kernels.quantize_input,
            quantize_grid(cols, 1),
            QUANTIZE_BLOCK,
            0,
            &mut [xd.ptr(), 0, 1e-5f32.cell(), n_cols, qa, ds],
        );
        for (f, times) in [(p.gemv, 1.0), (p.gemv_add, 2.0)] {
            launch(
                &stream,
                f,
                ROWS as u32,
                QGEMV_BLOCK,
                0,
                &mut [w.ptr(), rows, n_cols, qa, ds, out.ptr(), 1i32.cell(), 0i32.cell()],
            );
            check(&download(&stream, &out, ROWS), 0, &[quantized_input(&x)], times, "one token");
        }
        let xs: Vec<Vec<f32>> =
            (1..4).map(|t| input(t).iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()).collect();
        let bytes: Vec<u8> = xs.iter().flatten().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let xd = upload(&ctx, &stream, &bytes, 0);
        let (qa, ds) = (q8.ptr(), q8.at(q8_scales_at(3 * cols)));
        launch(
            &stream,
            kernels.quantize_input_f16,
            quantize_grid(cols, 3),
            QUANTIZE_BLOCK,
            0,
            &mut [xd.ptr(), n_cols, qa, ds],
        );
        let q = p.quant.unwrap();
        let ldo = ROWS + 2;
        for (f, times) in [(q.batch, 1.0), (q.batch_add, 2.0)] {
            let mut cells = [w.ptr(), rows, n_cols, qa, ds, out.ptr(), 3i32.cell(), (ldo as i32).cell()];
            launch(&stream, f, ROWS as u32, QGEMV_BLOCK, 0, &mut cells);
            let inputs: Vec<Vec<f64>> = xs.iter().map(|x| quantized_input(x)).collect();
            check(&download(&stream, &out, 3 * ldo), ldo, &inputs, times, "three tokens");
        }
    }
}
