//! A session: one conversation's KV cache, token history, sampler and last logits.
//!
//! All mutable state sits behind a mutex taken with `try_lock`, so a second thread calling into
//! a session that is in use gets `Busy` instead of racing. A step computes into scratch buffers
//! and commits (position, history, logits, generator) only after everything succeeded, so a
//! failed or cancelled step leaves the session exactly as it was.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

pub use crate::backend::KvType;
use crate::backend::{Batch, SessionState};
use crate::error::{Error, Result, Status};
use crate::model::ModelRef;
use crate::sampler::{sample, Rng, SamplerParams};

/// Session settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionParams {
    /// Context length (0 = min(training context, 4096)).
    pub n_ctx: u32,
    /// Sampler settings.
    pub sampler: SamplerParams,
    /// Seed of the sampler's generator.
    pub seed: u64,
    /// Element type of the K cache, and of the V cache unless `kv_type_v` says otherwise.
    pub kv_type: KvType,
    /// Element type of the V cache (`None`: `kv_type`).
    pub kv_type_v: Option<KvType>,
}

struct Inner {
    state: Box<dyn SessionState>,
    history: Vec<u32>,
    rng: Rng,
    logits: Vec<f32>,
    next_logits: Vec<f32>,
    has_logits: bool,
    scratch: crate::sampler::Scratch,
}

/// One session of a model.
pub struct Session {
    model: ModelRef,
    params: SessionParams,
    n_ctx: usize,
    inner: Mutex<Inner>,
    abort: AtomicBool,
    position: AtomicU32,
    logits_ptr: AtomicPtr<f32>,
}

impl Session {
    /// A new empty session of `model`.
    pub fn new(model: ModelRef, params: SessionParams) -> Result<Session> {
        params.sampler.validate()?;
        let train = model.hparams.n_ctx_train;
        let n_ctx = if params.n_ctx == 0 { train.clamp(1, 4096) } else { params.n_ctx as usize };
        if n_ctx > u32::MAX as usize / 2 {
            return Err(Error::invalid(format!("n_ctx {n_ctx} is too large")));
        }
        let v_type = params.kv_type_v.unwrap_or(params.kv_type);
        let state = model.backend()?.new_state(&model.hparams, n_ctx, params.kv_type, v_type)?;
        let n_vocab = model.hparams.n_vocab;
        let inner = Inner {
            state,
            history: Vec::new(),
            rng: Rng::new(params.seed),
            logits: vec![0.0; n_vocab],
            next_logits: vec![0.0; n_vocab],
            has_logits: false,
            scratch: Default::default(),
        };
        Ok(Session {
            model,
            params,
            n_ctx,
            inner: Mutex::new(inner),
            abort: AtomicBool::new(false),
            position: AtomicU32::new(0),
            logits_ptr: AtomicPtr::new(std::ptr::null_mut()),
        })
    }

    /// The model this session runs.
    pub fn model(&self) -> &ModelRef {
        &self.model
    }

    /// Context length.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Bytes of the KV cache (0 while another thread uses the session).
    pub fn kv_bytes(&self) -> usize {
        self.inner.try_lock().map_or(0, |g| g.state.kv_bytes())
    }

    /// Number of tokens in the KV cache.
    pub fn position(&self) -> u32 {
        self.position.load(Ordering::Acquire)
    }

    /// Pointer to the last step's logits (null before the first step or after a reset).
    pub fn logits_ptr(&self) -> *const f32 {
        self.logits_ptr.load(Ordering::Acquire)
    }

    /// Ask the running step, or if none runs the next one, to stop with `Cancelled`. Callable
    /// from any thread; [`Session::reset`] and [`Session::rewind`] clear it.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Release);
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        match self.inner.try_lock() {
            Ok(g) => Ok(g),
            // State is only committed at the end of a step, so a panic mid-step left it consistent.
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(Error::new(
                Status::Busy,
                "the session is in use by another thread (one session, one thread at a time)",
            )),
        }
    }

    /// Append `tokens` at the current position, run the model over them in one pass, and sample
    /// the next token (not appended). On error nothing observable changes.
    pub fn step(&self, tokens: &[u32]) -> Result<u32> {
        let mut g = self.lock()?;
        let inner = &mut *g;
        if tokens.is_empty() {
            return Err(Error::invalid("llama_step needs at least one token"));
        }
        let n_vocab = self.model.hparams.n_vocab;
        if let Some((i, &t)) = tokens.iter().enumerate().find(|(_, &t)| t as usize >= n_vocab) {
            return Err(Error::invalid(format!("token {t} at index {i} is out of range (n_vocab {n_vocab})")));
        }
        let pos = inner.history.len();
        if pos + tokens.len() > self.n_ctx {
            return Err(Error::new(
                Status::ContextFull,
                format!(
                    "position {pos} + {} tokens exceeds the context of {} (llama_session_reset or rewind to make room)",
                    tokens.len(),
                    self.n_ctx
                ),
            ));
        }
        crate::backend::llama::check_cancel(&self.abort)?;
        let m = &self.model;
        m.backend()?.forward(
            &m.hparams,
            inner.state.as_mut(),
            Batch { tokens, pos },
            &mut inner.next_logits,
            &self.abort,
        )?;
        // Checked 64 at a time without early exit (vectorised), and only then searched.
        let finite = inner.next_logits.chunks(64).all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()));
        let bad = if finite { None } else { inner.next_logits.iter().enumerate().find(|(_, v)| !v.is_finite()) };
        if let Some((i, v)) = bad {
            // Nothing is committed: the cache rows just written lie past the session's position.
            return Err(Error::format(format!(
                "logit {i} is {v}: the model's weights hold a NaN or an infinity, or overflow (the session is unchanged)"
            )));
        }
        let mut rng = inner.rng.clone();
        let mut seen = inner.history.clone();
        seen.extend_from_slice(tokens);
        let next = sample(&inner.next_logits, &seen, &self.params.sampler, &mut rng, &mut inner.scratch);
        // Commit.
        inner.history = seen;
        inner.rng = rng;
        std::mem::swap(&mut inner.logits, &mut inner.next_logits);
        inner.has_logits = true;
        self.position.store(inner.history.len() as u32, Ordering::Release);
        self.logits_ptr.store(inner.logits.as_mut_ptr(), Ordering::Release);
        Ok(next)
    }

    /// Forget every token (position 0); the sampler's generator restarts from the seed; an
    /// abort no step has consumed is cleared.
    pub fn reset(&self) -> Result<()> {
        let mut g = self.lock()?;
        self.abort.store(false, Ordering::Release);
        g.history.clear();
        g.rng = Rng::new(self.params.seed);
        g.has_logits = false;
        self.position.store(0, Ordering::Release);
        self.logits_ptr.store(std::ptr::null_mut(), Ordering::Release);
        Ok(())
    }

    /// Forget the tokens at positions `>= position`; an abort no step has consumed is cleared.
    pub fn rewind(&self, position: u32) -> Result<()> {
        let mut g = self.lock()?;
        let cur = g.history.len();
        if position as usize > cur {
            return Err(Error::invalid(format!("cannot rewind to position {position}: the session is at {cur}")));
        }
        self.abort.store(false, Ordering::Release);
        if position as usize != cur {
            g.history.truncate(position as usize);
            g.has_logits = false;
            self.logits_ptr.store(std::ptr::null_mut(), Ordering::Release);
            self.position.store(position, Ordering::Release);
        }
        Ok(())
    }

    /// A copy of the last step's logits (None before the first step).
    pub fn logits(&self) -> Result<Option<Vec<f32>>> {
        let g = self.lock()?;
        Ok(g.has_logits.then(|| g.logits.clone()))
    }

    /// The tokens in the cache, in order.
    pub fn history(&self) -> Result<Vec<u32>> {
        Ok(self.lock()?.history.clone())
    }
}
