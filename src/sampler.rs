//! Choosing the next token from logits: repeat penalty, then greedy (temperature 0) or
//! temperature → top-k → top-p → a draw from a seeded generator, so that the same seed and the
//! same inputs give the same tokens on every machine.

use crate::error::{Error, Result};

/// How many of the most recent tokens the repeat penalty looks at (llama.cpp's default).
pub const REPEAT_LAST_N: usize = 64;

/// Sampler settings (validated by [`SamplerParams::validate`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: i32,
    /// 1.0 = off.
    pub top_p: f32,
    /// 1.0 = off.
    pub repeat_penalty: f32,
}

impl SamplerParams {
    /// Reject values that have no meaning (negative temperature, NaN, top_p outside (0, 1]...).
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::invalid(format!("temperature {} must be >= 0", self.temperature)));
        }
        if self.top_k < 0 {
            return Err(Error::invalid(format!("top_k {} must be >= 0 (0 = off)", self.top_k)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid(format!("top_p {} must be in (0, 1] (1 = off)", self.top_p)));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(Error::invalid(format!("repeat_penalty {} must be > 0 (1 = off)", self.repeat_penalty)));
        }
        Ok(())
    }
}

/// A small, portable, seedable generator (SplitMix64 seeding a xoshiro256** state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Index of the largest value, lowest index on ties (NaN never wins; all NaN: the last).
pub fn argmax(x: &[f32]) -> usize {
    // The maximum, then the first chunk of 16 that holds it: 7 us instead of 120 for 32000
    // logits on a Xeon, which a GPU decode step of 2.6 ms had spent on each token.
    const L: usize = 16;
    let max = max_value(x);
    if max == f32::NEG_INFINITY {
        // Nothing above -inf: the first -inf, or with NaNs the scan's own rule.
        return argmax_scan(x);
    }
    let chunk = x.chunks(L).position(|c| c.iter().fold(false, |any, &v| any | (v == max))).unwrap_or(0);
    chunk * L + x[chunk * L..].iter().position(|&v| v == max).unwrap_or(0)
}

/// The largest value, NaNs passed over (-inf if there is none), in 16 lanes (the compiler's
/// vectors: a single running maximum would be one long dependency chain).
fn max_value(x: &[f32]) -> f32 {
    const L: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; L];
    let chunks = x.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    lanes.iter().chain(rest).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// [`argmax`] one value at a time: a NaN at the front is passed over by whatever follows.
fn argmax_scan(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] || x[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Buffers the sampler reuses from one token to the next (one per session).
#[derive(Debug, Default)]
pub struct Scratch {
    /// The logits after the repeat penalty.
    penalised: Vec<f32>,
    /// Order keys (see [`order_key`]) of the candidates top-k or top-p look at.
    keys: Vec<u64>,
    /// The weights of the kept candidates, in `keys`' order.
    kept: Vec<f32>,
    /// One weight per token id: e^(logit × (1/T) - max) (with top-k: valid for its candidates
    /// only).
    weights: Vec<f32>,
    /// The weights summed eight ids at a time.
    chunks: Vec<f64>,
    /// The kept candidates as (id, weight) in id order, where they are few.
    pairs: Vec<(u32, f32)>,
    /// Top-p's buckets of weights ([`cut_by_buckets`]).
    buckets: Buckets,
}

/// What [`cut_by_buckets`] reuses.
#[derive(Debug, Default)]
struct Buckets {
    /// The weights summed by bucket.
    mass: Vec<f64>,
    /// The order keys of the edge bucket's ids.
    keys: Vec<u64>,
}

/// Pick the next token from `logits` given the tokens seen so far (`history`, for the repeat
/// penalty). Only `rng` is advanced (never for greedy).
///
/// Sampling, fully determined by the inputs and the seed on every machine:
/// - candidates: the ids whose logit is not NaN, ordered best first (logit × (1/T) descending,
///   ids ascending on ties); top-k keeps the first k;
/// - weights: `expf(logit × (1/T) - max)` (f32, libm's bits on every kernel path);
/// - top-p keeps the shortest prefix of that order whose weights, summed in that order in f64,
///   reach top_p × (all candidates' weights summed in id order, eight ids at a time, in f64);
/// - the draw: u × (the kept weights summed the same way), walked through in id order.
///
/// Only the ids that top-k or top-p can reach are ever ordered (found by cheap passes over the
/// weights, which take an id's weight to rank as its scaled logit does: `expf` never decreases on
/// [-104, 0], which the kernels' test `exp_never_decreases_on_the_samplers_domain` checks for every
/// f32 there), and with top-k only its candidates' weights are computed and walked: 60–95 µs for
/// 32,000 logits, 0.2–0.35 ms for 128,256 (`cargo bench --bench step -- sample`, Xeon VM), where a
/// full sort of every candidate and an f64 `exp` of each took 1.4–1.9 ms and 7–8 ms: half a GPU
/// decode step of 7B Q4_K_M. Where top-p's nucleus is most of the vocabulary (flat logits), it is
/// cut by buckets of weights whose sums are exact in any order (`EXACT_FLOOR`): 0.25–0.3 ms and
/// 1.1–1.35 ms, where ordering it took 1.3 and 5.9 ms.
pub fn sample(logits: &[f32], history: &[u32], p: &SamplerParams, rng: &mut Rng, scratch: &mut Scratch) -> u32 {
    if p.temperature == 0.0 && p.repeat_penalty == 1.0 {
        return argmax(logits) as u32;
    }
    let Scratch { penalised, keys, kept, weights, chunks, pairs, buckets } = scratch;
    let logits = if p.repeat_penalty == 1.0 {
        logits
    } else {
        penalise(logits, history, p.repeat_penalty, penalised);
        penalised.as_slice()
    };
    if p.temperature == 0.0 {
        return argmax(logits) as u32;
    }
    // Logits scaled by 1/T (a product, cheaper than a division); the largest scaled logit is
    // the largest logit scaled (1/T > 0 keeps the order).
    let inv_t = 1.0 / p.temperature;
    let max = max_value(logits) * inv_t;
    if !max.is_finite() {
        // All NaN or -inf, or a temperature so small that the scaled logits overflow: the
        // distribution is the greedy one.
        return argmax(logits) as u32;
    }
    // d = logit × (1/T) - max (NaN: -inf); the weights are e^d.
    weights.clear();
    weights.extend(logits.iter().map(|&l| {
        let d = l * inv_t - max;
        if d.is_nan() {
            f32::NEG_INFINITY
        } else {
            d
        }
    }));
    let top_k = usize::try_from(p.top_k).unwrap_or(0);
    // With top-k, `keys` holds the kept candidates and only their weights are computed (the
    // draw then runs over them alone); without, every id's weight.
    let mut few = top_k > 0;
    if few {
        // The k best lie among the ids with d ≥ the highest of these floors that leaves k;
        // where -1 leaves far more (flat logits), the highest of some finer ones.
        let mut floor = f32::NEG_INFINITY;
        for f in [-1.0, -4.0, -16.0, -64.0] {
            let n = count_at_least(weights, f);
            if n >= top_k {
                floor = f;
                if f == -1.0 && n / 64 > top_k {
                    for finer in [-1.0 / 4.0, -1.0 / 16.0, -1.0 / 64.0] {
                        if count_at_least(weights, finer) < top_k {
                            break;
                        }
                        floor = finer;
                    }
                }
                break;
            }
        }
        gather(logits, inv_t, weights, floor, keys);
        if top_k < keys.len() {
            keys.select_nth_unstable(top_k - 1);
            keys.truncate(top_k);
        }
        take_out(keys, weights, kept);
        runllama_kernels::exp(kept);
        put_back(keys, kept, weights);
    } else {
        runllama_kernels::exp(weights);
    }
    // Every id's chunk sums, made once where top-p's target and the draw both need them.
    let mut dense_total = None;
    if p.top_p < 1.0 {
        let all = if few {
            by_id(keys, weights, pairs);
            sparse_sum(pairs)
        } else {
            *dense_total.insert(chunk_sums(weights, chunks))
        };
        let target = f64::from(p.top_p) * all;
        // Top-k's candidates, or the ids weighing ≥ the highest of these floors whose weights
        // pass the target with 1 % to spare (ids below a floor are after every id above it).
        let floors: &[f32] = if few { &[0.0] } else { &[1.0 / 4.0, 1.0 / 64.0, 1.0 / 4096.0, 1e-7, 0.0] };
        for &floor in floors {
            let (sum, count) = if floor > 0.0 { sum_at_least(weights, floor) } else { (0.0, 0) };
            if floor > 0.0 && f64::from(sum) < 1.01 * target {
                continue;
            }
            // Many candidates (a flat distribution): cut by buckets, without ordering them.
            let exact = !few && floor >= EXACT_FLOOR && weights.len() < EXACT_COUNT;
            if exact && count > weights.len() / 16 {
                if cut_by_buckets(logits, inv_t, weights, floor, target, buckets) {
                    dense_total = None;
                    break;
                }
                continue;
            }
            if !few {
                gather(logits, inv_t, weights, floor, keys);
            }
            if let Some(cut) = nucleus(keys, weights, target) {
                // keys[..=cut] are sorted and kept; the rest of the candidates go.
                keys.truncate(cut + 1);
                few = true;
                break;
            }
        }
    }
    let u = rng.next_f64();
    if few && keys.len() <= weights.len() / 8 {
        by_id(keys, weights, pairs);
        return sparse_draw(pairs, u * sparse_sum(pairs));
    }
    if few {
        // Many kept (a large top-k or nucleus): rather than order them by id, weigh every id
        // left out 0 and draw over every id: the same sums, the same id.
        take_out(keys, weights, kept);
        weights.fill(0.0);
        put_back(keys, kept, weights);
        dense_total = None;
    }
    let total = dense_total.unwrap_or_else(|| chunk_sums(weights, chunks));
    draw(weights, chunks, u * total)
}

/// `kept[i] = weights[id]` for the id of each `keys[i]` ([`put_back`] undoes it).
fn take_out(keys: &[u64], weights: &[f32], kept: &mut Vec<f32>) {
    kept.clear();
    kept.extend(keys.iter().map(|&key| weights[id_of(key)]));
}

/// `weights[id] = kept[i]` for the id of each `keys[i]`.
fn put_back(keys: &[u64], kept: &[f32], weights: &mut [f32]) {
    for (&key, &w) in keys.iter().zip(kept) {
        weights[id_of(key)] = w;
    }
}

/// How many of `x` are ≥ `floor` (16 lanes: the compiler's vectors).
fn count_at_least(x: &[f32], floor: f32) -> usize {
    let mut lanes = [0u32; 16];
    for c in x.chunks(16) {
        for (n, &v) in lanes.iter_mut().zip(c) {
            *n += u32::from(v >= floor);
        }
    }
    lanes.iter().map(|&n| n as usize).sum()
}

/// The sum and the number of the values of `x` that are ≥ `floor` (16 lanes; the sum in f32,
/// so good to ~1e-3 at LLaMA 3's 128,256 ids: callers leave a margin).
fn sum_at_least(x: &[f32], floor: f32) -> (f32, usize) {
    let (mut sums, mut counts) = ([0f32; 16], [0u32; 16]);
    for c in x.chunks(16) {
        for ((s, n), &v) in sums.iter_mut().zip(counts.iter_mut()).zip(c) {
            *s += if v >= floor { v } else { 0.0 };
            *n += u32::from(v >= floor);
        }
    }
    (sums.iter().sum(), counts.iter().map(|&n| n as usize).sum())
}

/// Into `keys`: the [`order_key`]s of the ids (their logits scaled by `inv_t`) whose `by` value
/// is ≥ `floor` (NaN logits left out). Looks 16 at a time for any (few ids are above the floors
/// the callers choose).
fn gather(logits: &[f32], inv_t: f32, by: &[f32], floor: f32, keys: &mut Vec<u64>) {
    keys.clear();
    for (c, (l16, b16)) in logits.chunks(16).zip(by.chunks(16)).enumerate() {
        if b16.iter().fold(false, |any, &b| any | (b >= floor)) {
            for (i, (&l, &b)) in l16.iter().zip(b16).enumerate() {
                if b >= floor && !l.is_nan() {
                    keys.push(order_key(l * inv_t, c * 16 + i));
                }
            }
        }
    }
}

/// The repeat penalty over `logits` into `out`: each distinct id among the last
/// [`REPEAT_LAST_N`] of `history` has its logit divided by `penalty` if positive, multiplied
/// if not.
fn penalise(logits: &[f32], history: &[u32], penalty: f32, out: &mut Vec<f32>) {
    out.clear();
    out.extend_from_slice(logits);
    let recent = &history[history.len().saturating_sub(REPEAT_LAST_N)..];
    let mut seen: Vec<u32> = recent.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for t in seen {
        if let Some(l) = out.get_mut(t as usize) {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// A key whose ascending order is the candidates' order: scaled logit descending, then id
/// ascending; NaN gives `u64::MAX` (after every candidate).
fn order_key(v: f32, id: usize) -> u64 {
    let b = v.to_bits();
    // Ascending f32 order as unsigned order (negative values flipped), then inverted.
    let ascending = if b >> 31 == 1 { !b } else { b | 0x8000_0000 };
    if v.is_nan() {
        u64::MAX
    } else {
        (u64::from(!ascending) << 32) | id as u64
    }
}

/// The token id an [`order_key`] holds.
fn id_of(key: u64) -> usize {
    (key & 0xffff_ffff) as usize
}

/// Fill `chunks` with the sums (f64, in order) of eight weights at a time; return their sum
/// in order.
fn chunk_sums(weights: &[f32], chunks: &mut Vec<f64>) -> f64 {
    chunks.clear();
    chunks.extend(weights.chunks(8).map(|c| c.iter().fold(0.0, |s, &w| s + f64::from(w))));
    chunks.iter().fold(0.0, |s, &c| s + c)
}

/// Sort `keys` (the kept candidates) best first only as far as needed for their weights,
/// summed in that order, to reach `target`: the index of the last one needed, or `None` if
/// they never do (rounding, with top_p just below 1). Sorts 64, then 512, 4096 ... at a time,
/// each piece picked from the rest by a linear-time selection.
fn nucleus(keys: &mut [u64], weights: &[f32], target: f64) -> Option<usize> {
    let mut cum = 0.0;
    let (mut start, mut piece) = (0, 64);
    while start < keys.len() {
        let end = keys.len().min(start + piece);
        if end < keys.len() {
            keys[start..].select_nth_unstable(end - start - 1);
        }
        keys[start..end].sort_unstable();
        for (i, &key) in keys[start..end].iter().enumerate() {
            cum += f64::from(weights[id_of(key)]);
            if cum >= target {
                return Some(start + i);
            }
        }
        start = end;
        piece *= 8;
    }
    None
}

/// Candidates whose weights are all at least this (2^-13), fewer than [`EXACT_COUNT`] of them,
/// sum exactly in f64 in any order: each weight is a multiple of 2^-36 and at most 1, so every
/// partial sum is a multiple of 2^-36 below 2^17, i.e. under 2^53 units of 2^-36.
const EXACT_FLOOR: f32 = 1.0 / 8192.0;
/// See [`EXACT_FLOOR`].
const EXACT_COUNT: usize = 1 << 17;

/// Top-p's cut where the candidates above `floor` are all weighed at least [`EXACT_FLOOR`]
/// (their sums exact in any order, so the sums in the candidates' order need no ordering):
/// the weights summed by bucket (their top 16 bits: exponent and 7 bits of mantissa) in one
/// pass, the bucket where the running sum from the heaviest reaches `target` found, only its
/// ids ordered, and every id after the cut weighed 0 in `weights` (the kept ones are the
/// heavier buckets' and the first of the edge bucket's). Linear time: a flat distribution's
/// nucleus (30,000 ids of LLaMA 2's 32,000) took a sort. `false` (weights unchanged) if the
/// candidates never reach `target` (rounding).
fn cut_by_buckets(logits: &[f32], inv_t: f32, weights: &mut [f32], floor: f32, target: f64, s: &mut Buckets) -> bool {
    const LOW: usize = (EXACT_FLOOR.to_bits() >> 16) as usize;
    let bucket = |w: f32| (w.to_bits() >> 16) as usize - LOW;
    s.mass.clear();
    s.mass.resize(bucket(1.0) + 1, 0.0);
    for &w in weights.iter() {
        if w >= floor {
            s.mass[bucket(w)] += f64::from(w);
        }
    }
    let mut before = 0.0;
    let Some(edge) = (0..s.mass.len()).rev().find(|&b| {
        let reached = before + s.mass[b] >= target;
        if !reached {
            before += s.mass[b];
        }
        reached
    }) else {
        return false;
    };
    s.keys.clear();
    for (id, (&w, &l)) in weights.iter().zip(logits).enumerate() {
        if w >= floor && bucket(w) == edge {
            s.keys.push(order_key(l * inv_t, id));
        }
    }
    s.keys.sort_unstable();
    let mut cum = before;
    let Some(&last) = s.keys.iter().find(|&&key| {
        cum += f64::from(weights[id_of(key)]);
        cum >= target
    }) else {
        return false;
    };
    for (id, (w, &l)) in weights.iter_mut().zip(logits).enumerate() {
        let kept = *w >= floor && (bucket(*w) > edge || bucket(*w) == edge && order_key(l * inv_t, id) <= last);
        if !kept {
            *w = 0.0;
        }
    }
    true
}

/// The first id (in id order) at which the running sum of `weights` passes `r`, found chunk by
/// chunk (`chunks`: their sums eight at a time); rounding that runs past the end gives the
/// last id with a weight.
fn draw(weights: &[f32], chunks: &[f64], mut r: f64) -> u32 {
    let last_weighed = |ids: std::ops::Range<usize>| ids.rev().find(|&i| weights[i] != 0.0);
    let mut last = 0;
    for (j, &c) in chunks.iter().enumerate() {
        if c == 0.0 {
            continue;
        }
        last = j;
        if r < c {
            let ids = j * 8..weights.len().min(j * 8 + 8);
            for i in ids.clone() {
                let w = f64::from(weights[i]);
                if r < w {
                    return i as u32;
                }
                r -= w;
            }
            return last_weighed(ids).unwrap_or(j * 8) as u32;
        }
        r -= c;
    }
    last_weighed(last * 8..weights.len().min(last * 8 + 8)).unwrap_or(0) as u32
}

/// `keys`' ids and their `weights` as (id, weight) pairs in id order, into `pairs`.
fn by_id(keys: &[u64], weights: &[f32], pairs: &mut Vec<(u32, f32)>) {
    pairs.clear();
    pairs.extend(keys.iter().map(|&key| (id_of(key) as u32, weights[id_of(key)])));
    pairs.sort_unstable_by_key(|&(id, _)| id);
}

/// The (id, weight) pairs of each chunk of eight ids that has any, in order (`pairs` in id
/// order), with their sum in order: [`chunk_sums`]'s sums, the ids without a weight adding 0.
fn sparse_chunks(pairs: &[(u32, f32)]) -> impl Iterator<Item = (&[(u32, f32)], f64)> {
    pairs.chunk_by(|a, b| a.0 / 8 == b.0 / 8).map(|c| (c, c.iter().fold(0.0, |s, &(_, w)| s + f64::from(w))))
}

/// [`chunk_sums`]' total of the weights of `pairs` (id order; every other id weighs 0).
fn sparse_sum(pairs: &[(u32, f32)]) -> f64 {
    sparse_chunks(pairs).fold(0.0, |s, (_, c)| s + c)
}

/// [`draw`] where only the ids of `pairs` (id order) weigh anything: the same id.
fn sparse_draw(pairs: &[(u32, f32)], mut r: f64) -> u32 {
    let last_weighed = |c: &[(u32, f32)]| c.iter().rev().find(|&&(_, w)| w != 0.0).map(|&(id, _)| id);
    let mut last = None;
    for (chunk, c) in sparse_chunks(pairs) {
        if c == 0.0 {
            continue;
        }
        last = last_weighed(chunk);
        if r < c {
            for &(id, w) in chunk {
                if r < f64::from(w) {
                    return id;
                }
                r -= f64::from(w);
            }
            return last.unwrap_or(chunk[0].0);
        }
        r -= c;
    }
    last.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: i32, top_p: f32, repeat_penalty: f32) -> SamplerParams {
        SamplerParams { temperature, top_k, top_p, repeat_penalty }
    }

    #[test]
    fn greedy_takes_lowest_id_on_ties() {
        let mut rng = Rng::new(1);
        let mut s = Scratch::default();
        assert_eq!(sample(&[0.5, 2.0, 2.0, 1.0], &[], &params(0.0, 0, 1.0, 1.0), &mut rng, &mut s), 1);
        assert_eq!(rng, Rng::new(1), "greedy must not advance the generator");
    }

    #[test]
    fn argmax_gives_the_one_value_at_a_time_scans_index() {
        let (nan, inf) = (f32::NAN, f32::INFINITY);
        let mut rng = Rng::new(9);
        for len in [0usize, 1, 15, 16, 17, 33, 200, 32000] {
            for case in 0..12 {
                let mut x: Vec<f32> = (0..len).map(|_| (rng.next_f64() * 8.0 - 4.0) as f32).collect();
                // Ties, infinities, NaNs (at the front too), all -inf, all NaN.
                for (i, v) in x.iter_mut().enumerate() {
                    let r = rng.next_f64();
                    *v = match case {
                        1 if r < 0.3 => 3.75,
                        2 if r < 0.05 => nan,
                        3 if i == 0 || r < 0.01 => nan,
                        4 if r < 0.02 => inf,
                        5 if r < 0.02 => -inf,
                        6 => -inf,
                        7 => nan,
                        8 if i > 0 => -inf,
                        8 => nan,
                        9 => (*v * 4.0).round(),
                        _ => *v,
                    };
                }
                if len > 0 {
                    assert_eq!(argmax(&x), argmax_scan(&x), "length {len}, case {case}: {x:?}");
                }
            }
        }
    }

    #[test]
    fn a_tiny_temperature_is_greedy() {
        let mut rng = Rng::new(1);
        let mut s = Scratch::default();
        for t in [1e-38, f32::MIN_POSITIVE, 1e-45] {
            assert_eq!(sample(&[0.5, 3.0, 2.0, -1.0], &[], &params(t, 0, 1.0, 1.0), &mut rng, &mut s), 1, "T {t}");
        }
    }

    #[test]
    fn nan_and_infinite_logits_never_pick_a_nan_and_never_panic() {
        let mut rng = Rng::new(3);
        let mut s = Scratch::default();
        let nan = f32::NAN;
        assert_eq!(argmax(&[nan, 1.0, nan, 2.0, nan]), 3);
        for t in [0.0, 0.7, 1.5] {
            for k in [0, 2] {
                for _ in 0..50 {
                    let id = sample(&[nan, 1.0, nan, 0.5, 2.0], &[], &params(t, k, 0.9, 1.0), &mut rng, &mut s);
                    assert!(matches!(id, 1 | 3 | 4), "T {t} top-k {k}: picked NaN logit {id}");
                }
            }
            // An infinite logit is the greedy choice; -inf is never picked over a finite one.
            let p = params(t, 0, 1.0, 1.0);
            assert_eq!(sample(&[0.0, f32::INFINITY, nan, 3.0], &[], &p, &mut rng, &mut s), 1, "T {t}");
            assert_eq!(sample(&[f32::NEG_INFINITY, 0.5, nan], &[], &p, &mut rng, &mut s), 1, "T {t}");
            // All NaN: an id in range, no panic.
            assert!(sample(&[nan, nan], &[], &p, &mut rng, &mut s) < 2);
        }
    }

    #[test]
    fn repeat_penalty_changes_greedy_choice() {
        let mut rng = Rng::new(1);
        let mut s = Scratch::default();
        let p = params(0.0, 0, 1.0, 2.0);
        assert_eq!(sample(&[1.0, 3.0, 2.0], &[1], &p, &mut rng, &mut s), 2);
        // negative logits are multiplied, so they get less likely too
        assert_eq!(sample(&[-1.0, -0.6, -2.0], &[1], &p, &mut rng, &mut s), 0);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut rng = Rng::new(7);
        let mut s = Scratch::default();
        for _ in 0..50 {
            assert_eq!(sample(&[0.1, 0.3, 0.2, 0.3], &[], &params(1.5, 1, 1.0, 1.0), &mut rng, &mut s), 1);
        }
    }

    #[test]
    fn top_p_cuts_the_tail() {
        let mut rng = Rng::new(3);
        let mut s = Scratch::default();
        // p(0) ≈ 0.97: with top_p 0.5 only id 0 survives.
        for _ in 0..100 {
            assert_eq!(sample(&[5.0, 1.0, 0.0, -1.0], &[], &params(1.0, 0, 0.5, 1.0), &mut rng, &mut s), 0);
        }
    }

    #[test]
    fn same_seed_same_tokens_and_frequencies_follow_softmax() {
        let logits = [0.0f32, (2.0f32).ln(), (3.0f32).ln()]; // probabilities 1/6, 2/6, 3/6
        let p = params(1.0, 0, 1.0, 1.0);
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            let mut s = Scratch::default();
            (0..6000).map(|_| sample(&logits, &[], &p, &mut rng, &mut s)).collect::<Vec<_>>()
        };
        let a = draw(42);
        assert_eq!(a, draw(42));
        assert_ne!(a, draw(43));
        let count = |id| a.iter().filter(|&&t| t == id).count() as f64 / 6000.0;
        assert!((count(0) - 1.0 / 6.0).abs() < 0.03, "{}", count(0));
        assert!((count(1) - 2.0 / 6.0).abs() < 0.03, "{}", count(1));
        assert!((count(2) - 3.0 / 6.0).abs() < 0.03, "{}", count(2));
    }

    /// [`sample`]'s definition written plainly: every candidate sorted, weights walked one id
    /// at a time (the same draws but for a rounding case about once in 10^13).
    fn sample_by_definition(logits: &[f32], p: &SamplerParams, u: f64) -> u32 {
        let inv_t = 1.0 / p.temperature;
        let mut cand: Vec<(usize, f32)> =
            logits.iter().enumerate().filter(|(_, l)| !l.is_nan()).map(|(i, &l)| (i, l * inv_t)).collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            cand.truncate(p.top_k as usize);
        }
        let max = cand[0].1;
        let mut w = vec![f32::NEG_INFINITY; logits.len()];
        for &(i, v) in &cand {
            w[i] = v - max;
        }
        runllama_kernels::exp(&mut w);
        let all = chunk_sums(&w, &mut Vec::new());
        let mut cum = 0.0;
        let keep = cand.iter().position(|&(i, _)| {
            cum += f64::from(w[i]);
            cum >= f64::from(p.top_p) * all
        });
        if let (Some(keep), true) = (keep, p.top_p < 1.0) {
            for &(i, _) in &cand[keep + 1..] {
                w[i] = 0.0;
            }
        }
        let mut r = u * chunk_sums(&w, &mut Vec::new());
        for (i, &w) in w.iter().enumerate() {
            if r < f64::from(w) {
                return i as u32;
            }
            r -= f64::from(w);
        }
        w.iter().rposition(|&w| w != 0.0).unwrap() as u32
    }

    #[test]
    fn sampling_follows_its_definition() {
        let mut gen = Rng::new(11);
        let mut s = Scratch::default();
        let mut draws = 0;
        for n in [1usize, 5, 8, 9, 100, 1000, 32000] {
            for shape in 0..6 {
                // Spread like a language model's logits; flat (top-p cut by buckets, top-k's
                // finer floors); with ties; with NaNs; spread so far that top-k looks past every
                // floor; a few ids above a flat crowd (top-k's finer floors stop above it).
                let logits: Vec<f32> = (0..n)
                    .map(|i| {
                        let g = (0..4).map(|_| gen.next_f64()).sum::<f64>() * 2.0 - 4.0;
                        match shape {
                            0 => (g * 3.0) as f32,
                            1 => (g * 0.01) as f32,
                            2 => g.round() as f32,
                            3 if gen.next_f64() < 0.1 => f32::NAN,
                            4 => (g * 60.0) as f32,
                            5 if i % 1600 == 7 => (0.15 + g * 0.001) as f32,
                            5 => (g * 0.01) as f32,
                            _ => (g * 2.0) as f32,
                        }
                    })
                    .collect();
                if logits.iter().all(|l| l.is_nan()) {
                    continue;
                }
                for (t, k, top_p) in [(0.8, 0, 1.0), (1.0, 40, 0.95), (0.6, 0, 0.95), (1.5, 3, 1.0), (2.0, 0, 0.1)] {
                    for k in [k, n as i32 + 5] {
                        let p = params(t, k, top_p, 1.0);
                        let mut rng = Rng::new(gen.next_u64());
                        for _ in 0..16 {
                            let u = rng.clone().next_f64();
                            let id = sample(&logits, &[], &p, &mut rng, &mut s);
                            assert_eq!(id, sample_by_definition(&logits, &p, u), "n {n}, shape {shape}, {p:?}");
                            draws += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(draws, 7 * 6 * 10 * 16);
    }

    #[test]
    fn invalid_params_are_rejected() {
        assert!(params(-1.0, 0, 1.0, 1.0).validate().is_err());
        assert!(params(f32::NAN, 0, 1.0, 1.0).validate().is_err());
        assert!(params(1.0, -2, 1.0, 1.0).validate().is_err());
        assert!(params(1.0, 0, 0.0, 1.0).validate().is_err());
        assert!(params(1.0, 0, 1.5, 1.0).validate().is_err());
        assert!(params(1.0, 0, 1.0, 0.0).validate().is_err());
        assert!(params(0.8, 40, 0.95, 1.1).validate().is_ok());
    }
}
