//! The model's weights on the GPU, uploaded once from the mapped files through two pinned
//! staging buffers (one filled while the other is copied), with the load's progress callback
//! asked after every chunk. No host copy of a whole tensor is made.
//!
//! Format quirks are resolved here, into the layouts the kernels read: a layer's q, k and v
//! become one `[q | k | v]` matrix (one product per token; three, stacked, where they are
//! stored in different types, as quantized files mix them), its gate and up one matrix with
//! their rows interleaved (`gate[0], up[0], gate[1], ...`, so that one warp computes a pair
//! and applies SwiGLU), whatever order a fused MindFormers matrix stored them in; tensors split
//! across several MindSpore pieces are gathered row by row.

use std::collections::HashMap;
use std::sync::Arc;

use super::driver::{Context, DeviceBuffer, Event, PinnedBuffer, Stream};
use super::kernels::GpuWeight;
use crate::error::{Error, Result, Status};
use crate::model::{Matrix, Projections, Weights};

/// Bytes of each of the two staging buffers.
const STAGING: usize = 32 << 20;

/// Bytes allocated past a matrix's last row: the quantized products copy whole 16-byte vectors
/// from the 16-byte boundary at or below the blocks they need, so may read up to 15 bytes past.
const PAD: usize = 16;

/// A matrix on the GPU, row-major, in its stored type.
pub(super) struct DeviceMatrix {
    /// The values (shared when the output layer is tied to the embeddings).
    pub buf: Arc<DeviceBuffer>,
    /// Output rows.
    pub rows: usize,
    /// Values per row.
    pub cols: usize,
    /// Element or block type.
    pub ty: GpuWeight,
    /// Bytes per row.
    pub row_bytes: usize,
}

impl DeviceMatrix {
    /// Whether rows are whole 16-byte vectors (the float product kernels' fast path).
    pub(super) fn vec_rows(&self) -> bool {
        self.row_bytes.is_multiple_of(16)
    }
}

/// One layer on the GPU.
pub(super) struct DeviceLayer {
    /// RMSNorm weight before attention (f32).
    pub attn_norm: DeviceBuffer,
    /// `[q | k | v]` rows: one matrix, or one per projection where their types differ.
    pub qkv: Vec<DeviceMatrix>,
    /// Attention output.
    pub wo: DeviceMatrix,
    /// RMSNorm weight before the feed-forward (f32).
    pub ffn_norm: DeviceBuffer,
    /// Gate and up rows interleaved.
    pub gate_up: DeviceMatrix,
    /// Down projection.
    pub down: DeviceMatrix,
}

/// The model on the GPU.
pub(super) struct DeviceWeights {
    /// Embedding table.
    pub tok_embd: DeviceMatrix,
    /// The layers.
    pub layers: Vec<DeviceLayer>,
    /// Final norm (f32).
    pub output_norm: DeviceBuffer,
    /// Output projection.
    pub output: DeviceMatrix,
    /// Bytes on the GPU.
    pub bytes: usize,
    /// The largest layer matrix stored quantized, as f16 bytes, and its rows' (0, 0: none).
    pub dequant: (usize, usize),
    /// Layer index by the host address of the `Layer` fields that the forward pass names
    /// (projections, matrices): how `LlamaOps` calls find the copies.
    by_host: HashMap<usize, usize>,
    /// Device norm weights by the address of their host values.
    norms: HashMap<usize, u64>,
}

impl DeviceWeights {
    /// The layer whose host value lives at `addr`.
    pub(super) fn layer_at(&self, addr: usize) -> Option<&DeviceLayer> {
        self.by_host.get(&addr).map(|&l| &self.layers[l])
    }

    /// The device copy of the norm weight whose host values start at `addr`.
    pub(super) fn norm_at(&self, addr: usize) -> Option<u64> {
        self.norms.get(&addr).copied()
    }
}

/// A destination matrix as runs of source rows: (source matrix, first row, rows).
type Runs<'a> = Vec<(&'a Matrix, usize, usize)>;

/// Runs for destination rows whose sources are `src(d)`, merged where consecutive.
fn runs<'a>(n: usize, src: impl Fn(usize) -> (&'a Matrix, usize)) -> Runs<'a> {
    let mut out: Runs<'a> = Vec::new();
    for d in 0..n {
        let (m, r) = src(d);
        match out.last_mut() {
            Some((pm, r0, k)) if std::ptr::eq(*pm, m) && *r0 + *k == r => *k += 1,
            _ => out.push((m, r, 1)),
        }
    }
    out
}

/// Source of each unfused row of projections (`[q | k | v]` or `[gate | up]` order).
fn unfused_source<'a>(p: &'a Projections) -> Box<dyn Fn(usize) -> (&'a Matrix, usize) + 'a> {
    match p {
        Projections::Separate(ms) => Box::new(move |mut u| {
            let mut i = 0;
            while u >= ms[i].rows {
                u -= ms[i].rows;
                i += 1;
            }
            (&ms[i], u)
        }),
        Projections::Fused { w, order } => {
            let mut inv = vec![0usize; order.len()];
            for (r, &u) in order.iter().enumerate() {
                inv[u as usize] = r;
            }
            Box::new(move |u| (w, inv[u]))
        }
    }
}

/// The embeddings and every layer's matrices (not the output projection).
fn matrices(w: &Weights) -> Vec<&Matrix> {
    [&w.tok_embd].into_iter().chain(layer_matrices(w)).collect()
}

/// Every layer's matrices.
fn layer_matrices(w: &Weights) -> impl Iterator<Item = &Matrix> {
    w.layers.iter().flat_map(|l| l.qkv.matrices().into_iter().chain(l.gate_up.matrices()).chain([&l.wo, &l.w_down]))
}

/// The longest row among the matrices the products multiply (the layers' and the output's)
/// that are stored in a float type (0: none).
pub(super) fn widest_float_row(w: &Weights) -> usize {
    layer_matrices(w).chain([&w.output]).filter(|m| !m.dtype().is_quantized()).map(|m| m.cols).max().unwrap_or(0)
}

/// Runs of a whole matrix.
fn whole(m: &Matrix) -> Runs<'_> {
    runs(m.rows, |r| (m, r))
}

/// Check, before anything is allocated, that each layer's gate and up are of one type (their
/// rows are interleaved into one matrix; `llama-quantize` never mixes them).
pub(super) fn check_gate_up_types(w: &Weights) -> Result<()> {
    w.layers.iter().try_for_each(|l| check_gate_up(&l.gate_up))
}

/// One layer's gate and up: of one type (a fused matrix always is).
fn check_gate_up(p: &Projections) -> Result<()> {
    match &p.matrices()[..] {
        [gate, up] if gate.dtype() != up.dtype() => Err(Error::unsupported(format!(
            "tensors {} ({}) and {} ({}): the CUDA backend needs a layer's gate and up projections in one type",
            gate.info.name,
            gate.dtype().name(),
            up.info.name,
            up.dtype().name()
        ))),
        _ => Ok(()),
    }
}

/// Copies host bytes to device addresses through the two staging buffers.
struct Uploader<'p> {
    ctx: Arc<Context>,
    stream: Stream,
    staging: [PinnedBuffer; 2],
    done: [Event; 2],
    /// Buffer being filled, and bytes in it.
    cur: usize,
    fill: usize,
    /// Copies waiting in the current buffer: (device address, offset in staging, length).
    pending: Vec<(u64, usize, usize)>,
    /// Set when a new allocation starts: its first bytes never extend the last pending copy
    /// (allocations can be adjacent, and one copy may not span two).
    new_allocation: bool,
    total: usize,
    sent: usize,
    progress: Option<&'p mut dyn FnMut(f32) -> bool>,
}

impl Uploader<'_> {
    /// Queue `bytes` for device address `dst`.
    fn push(&mut self, mut dst: u64, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            if self.fill == STAGING {
                self.flush()?;
            }
            let n = bytes.len().min(STAGING - self.fill);
            self.staging[self.cur].bytes_mut()[self.fill..self.fill + n].copy_from_slice(&bytes[..n]);
            match self.pending.last_mut() {
                Some((d, o, len)) if !self.new_allocation && *d + *len as u64 == dst && *o + *len == self.fill => {
                    *len += n
                }
                _ => self.pending.push((dst, self.fill, n)),
            }
            self.new_allocation = false;
            self.fill += n;
            dst += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Send the current buffer and switch to the other (once its copies are done).
    fn flush(&mut self) -> Result<()> {
        let base = self.staging[self.cur].as_ptr();
        for &(dst, off, len) in &self.pending {
            // SAFETY: the staging buffer is pinned and is not written again until `done[cur]`
            // has been waited for; `dst..dst + len` lies in an allocation made for it.
            unsafe { self.stream.upload(dst, base.add(off), len)? };
        }
        self.done[self.cur].record(&self.stream)?;
        self.sent += self.fill;
        self.pending.clear();
        self.fill = 0;
        self.cur ^= 1;
        self.done[self.cur].sync()?;
        if let Some(cb) = self.progress.as_mut() {
            if cb(self.sent as f32 / self.total.max(1) as f32) {
                self.stream.sync()?;
                return Err(Error::new(Status::Cancelled, "loading was cancelled by the progress callback"));
            }
        }
        Ok(())
    }

    /// A device matrix of `rows` rows of `cols` values of `ty`, filled from `runs`.
    fn matrix(&mut self, runs: Runs<'_>, w: &Weights, rows: usize, cols: usize, what: &str) -> Result<DeviceMatrix> {
        let dtype = runs[0].0.dtype();
        let ty = GpuWeight::of(dtype);
        if runs.iter().any(|(m, ..)| m.dtype() != dtype) {
            return Err(Error::internal(format!("{what}: projections of different types in one matrix")));
        }
        let row_bytes = dtype.row_bytes(cols).ok_or_else(|| Error::internal(format!("{what}: rows of part blocks")))?;
        let buf = self.ctx.alloc(rows * row_bytes + PAD, what)?;
        self.new_allocation = true;
        let mut at = buf.ptr();
        let mut gathered = Vec::new();
        for (m, r0, n) in runs {
            let mut err = Ok(());
            m.for_each_run(w, r0, r0 + n, &mut gathered, |_, bytes| {
                if err.is_ok() {
                    err = self.push(at, bytes);
                    at += bytes.len() as u64;
                }
            });
            err?;
        }
        Ok(DeviceMatrix { buf: Arc::new(buf), rows, cols, ty, row_bytes })
    }

    /// A device copy of an f32 vector.
    fn vector(&mut self, v: &[f32], what: &str) -> Result<DeviceBuffer> {
        let buf = self.ctx.alloc(v.len() * 4, what)?;
        self.new_allocation = true;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push(buf.ptr(), &bytes)?;
        Ok(buf)
    }
}

/// Upload `w` to the GPU of `ctx`, calling `progress` with the fraction sent (true cancels).
pub(super) fn upload(
    ctx: &Arc<Context>,
    w: &Weights,
    progress: Option<&mut dyn FnMut(f32) -> bool>,
) -> Result<DeviceWeights> {
    let tied = w.output.spans == w.tok_embd.spans;
    let mut total: usize = matrices(w).iter().map(|m| m.info.nbytes).sum();
    if !tied {
        total += w.output.info.nbytes;
    }
    let (free, all) = ctx.mem_info();
    if total > free {
        return Err(Error::new(
            Status::OutOfMemory,
            format!(
                "out of GPU memory: the weights need {} MiB but {} MiB of {} MiB are free",
                total.div_ceil(1 << 20),
                free >> 20,
                all >> 20
            ),
        ));
    }
    let stream = ctx.stream()?;
    let mut up = Uploader {
        ctx: ctx.clone(),
        staging: [ctx.alloc_pinned(STAGING)?, ctx.alloc_pinned(STAGING)?],
        done: [Event::new(ctx)?, Event::new(ctx)?],
        stream,
        cur: 0,
        fill: 0,
        pending: Vec::new(),
        new_allocation: true,
        total,
        sent: 0,
        progress,
    };
    // Record both events once so that the first waits return at once.
    up.done[0].record(&up.stream)?;
    up.done[1].record(&up.stream)?;

    let tok_embd = up.matrix(whole(&w.tok_embd), w, w.tok_embd.rows, w.tok_embd.cols, "the token embeddings")?;
    let mut layers = Vec::with_capacity(w.layers.len());
    let (mut by_host, mut norms) = (HashMap::new(), HashMap::new());
    for (i, l) in w.layers.iter().enumerate() {
        let name = |what: &str| format!("layer {i}'s {what}");
        let cols = l.wo.rows;
        let parts = l.qkv.matrices();
        let qkv = if parts.iter().all(|m| m.dtype() == parts[0].dtype()) {
            let qkv_rows: usize = parts.iter().map(|m| m.rows).sum();
            vec![up.matrix(runs(qkv_rows, unfused_source(&l.qkv)), w, qkv_rows, cols, &name("q/k/v"))?]
        } else {
            // Separate tensors (a fused one has one type): each its own matrix, in order.
            let mut v = Vec::with_capacity(parts.len());
            for m in parts {
                v.push(up.matrix(whole(m), w, m.rows, cols, &name("q/k/v"))?);
            }
            v
        };
        let gu_rows: usize = l.gate_up.matrices().iter().map(|m| m.rows).sum();
        let ff = gu_rows / 2;
        let src = unfused_source(&l.gate_up);
        // Destination row 2i is gate row i (unfused i), 2i + 1 up row i (unfused ff + i).
        let gate_up = up.matrix(runs(gu_rows, |d| src((d % 2) * ff + d / 2)), w, gu_rows, cols, &name("gate/up"))?;
        layers.push(DeviceLayer {
            attn_norm: up.vector(&l.attn_norm, &name("attention norm"))?,
            qkv,
            wo: up.matrix(whole(&l.wo), w, l.wo.rows, l.wo.cols, &name("attention output"))?,
            ffn_norm: up.vector(&l.ffn_norm, &name("feed-forward norm"))?,
            gate_up,
            down: up.matrix(whole(&l.w_down), w, l.w_down.rows, l.w_down.cols, &name("down projection"))?,
        });
        let dl = layers.last().expect("just pushed");
        norms.insert(l.attn_norm.as_ptr() as usize, dl.attn_norm.ptr());
        norms.insert(l.ffn_norm.as_ptr() as usize, dl.ffn_norm.ptr());
        for addr in [
            &l.qkv as *const Projections as usize,
            &l.gate_up as *const Projections as usize,
            &l.wo as *const Matrix as usize,
            &l.w_down as *const Matrix as usize,
        ] {
            by_host.insert(addr, i);
        }
    }
    let output_norm = up.vector(&w.output_norm, "the output norm")?;
    let output = if tied {
        DeviceMatrix { buf: tok_embd.buf.clone(), ..tok_embd }
    } else {
        up.matrix(whole(&w.output), w, w.output.rows, w.output.cols, "the output projection")?
    };
    up.flush()?;
    up.stream.sync()?;
    let dequant = layers
        .iter()
        .flat_map(|l| l.qkv.iter().chain([&l.wo, &l.gate_up, &l.down]))
        .filter(|m| matches!(m.ty, GpuWeight::Quant(_)))
        .map(|m| (m.rows * m.cols * 2, m.cols * 2))
        .fold((0, 0), |a, b| (a.0.max(b.0), a.1.max(b.1)));
    Ok(DeviceWeights { tok_embd, layers, output_norm, output, bytes: total, dequant, by_host, norms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FusedLayout, Span};
    use crate::tensor::{DType, TensorInfo};

    fn matrix(name: &str, rows: usize) -> Matrix {
        typed_matrix(name, rows, DType::F32)
    }

    fn typed_matrix(name: &str, rows: usize, dtype: DType) -> Matrix {
        let info = TensorInfo { name: name.into(), dtype, shape: vec![rows, 4], file: 0, offset: 0, nbytes: rows * 16 };
        Matrix { info, rows, cols: 4, spans: vec![Span { file: 0, offset: 0, len: rows * 16 }] }
    }

    /// (matrix name, source row) of every destination row of `runs`.
    fn rows_of(runs: &Runs<'_>) -> Vec<(String, usize)> {
        runs.iter().flat_map(|(m, r0, n)| (*r0..r0 + n).map(|r| (m.info.name.clone(), r))).collect()
    }

    #[test]
    fn qkv_rows_land_in_q_k_v_order_from_separate_and_fused_matrices() {
        let (n_head, n_kv, hd) = (4, 2, 2);
        let (qd, kvd) = (n_head * hd, n_kv * hd);
        let sep = Projections::Separate(vec![matrix("q", qd), matrix("k", kvd), matrix("v", kvd)]);
        let r = runs(qd + 2 * kvd, unfused_source(&sep));
        assert_eq!(r.len(), 3, "one run per matrix");
        let want: Vec<(String, usize)> = (0..qd)
            .map(|i| ("q".to_string(), i))
            .chain((0..kvd).map(|i| ("k".to_string(), i)))
            .chain((0..kvd).map(|i| ("v".to_string(), i)))
            .collect();
        assert_eq!(rows_of(&r), want);
        for layout in [FusedLayout::Concat, FusedLayout::Grouped] {
            let order = layout.qkv_order(n_head, n_kv, hd);
            let fused = Projections::Fused { w: matrix("qkv", qd + 2 * kvd), order: order.clone() };
            let got = rows_of(&runs(qd + 2 * kvd, unfused_source(&fused)));
            // Destination row u comes from the fused row that `order` sends to u.
            for (u, (_, r)) in got.iter().enumerate() {
                assert_eq!(order[*r] as usize, u, "{layout:?}");
            }
        }
    }

    #[test]
    fn gate_and_up_of_different_types_are_refused_naming_both() {
        let same = Projections::Separate(vec![typed_matrix("gate", 5, DType::F16), typed_matrix("up", 5, DType::F16)]);
        assert!(check_gate_up(&same).is_ok());
        let mixed =
            Projections::Separate(vec![typed_matrix("blk.3.ffn_gate", 5, DType::F16), matrix("blk.3.ffn_up", 5)]);
        let e = check_gate_up(&mixed).unwrap_err();
        assert_eq!(e.status, Status::Unsupported, "{e}");
        for part in ["blk.3.ffn_gate (F16)", "blk.3.ffn_up (F32)", "CUDA"] {
            assert!(e.message.contains(part), "{e}");
        }
    }

    #[test]
    fn gate_and_up_rows_are_interleaved() {
        let ff = 5;
        let interleave = |p: &Projections| {
            let src = unfused_source(p);
            rows_of(&runs(2 * ff, |d| src((d % 2) * ff + d / 2)))
        };
        let sep = Projections::Separate(vec![matrix("gate", ff), matrix("up", ff)]);
        let want: Vec<(String, usize)> =
            (0..ff).flat_map(|i| [("gate".to_string(), i), ("up".to_string(), i)]).collect();
        assert_eq!(interleave(&sep), want);
        // MindFormers >= 1.4 already interleaves them: one run, in place.
        let grouped =
            Projections::Fused { w: matrix("w_gate_hidden", 2 * ff), order: FusedLayout::Grouped.gate_up_order(ff) };
        let src = unfused_source(&grouped);
        let r = runs(2 * ff, |d| src((d % 2) * ff + d / 2));
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].1, r[0].2), (0, 2 * ff));
        let concat =
            Projections::Fused { w: matrix("w_gate_hidden", 2 * ff), order: FusedLayout::Concat.gate_up_order(ff) };
        let rows: Vec<usize> = interleave(&concat).into_iter().map(|(_, r)| r).collect();
        assert_eq!(rows, (0..ff).flat_map(|i| [i, ff + i]).collect::<Vec<_>>());
    }
}
