//! A step's parallel regions on threads that spin between them.
//!
//! A decode step runs ~130 matrix-vector regions of about a millisecond each. On rayon's own
//! join every region woke a sleeping worker: on the Xeon VM (7B Q4_K_M decode, a timer around
//! each region) the two threads' first claims of rows came 21-33 us after the region's start on
//! average, the caller's at once, so the other thread's ~50 us late. Kept awake by a spinning
//! job, the other thread joined within 1-2 us, but then the caller slept about as long waiting
//! for it at the region's end. A [`Team`] keeps the pool's other threads busy-waiting for the
//! whole step, as llama.cpp's thread pool does: [`Team::run`] opens a region that those
//! threads join within a microsecond, and waits for the ones that joined by spinning, not
//! sleeping. Measured against rayon's join (e2e, 2 threads, alternating): 7B Q4_K_M decode
//! 6.74 -> 6.87 tok/s (10 runs each; 6.92 -> 6.95 in 4 later ones), Q4_0 +1.2 %, pp8 of a
//! 4-layer 7B F16 +13 %.
//!
//! The region's work must not depend on who joins: a closure that claims its pieces from a
//! shared counter, as the matrix-vector products do, is correct with any number of threads,
//! the caller's alone included. So a thread that is busy elsewhere (another session's step, a
//! nested job) simply does not join, and nothing waits for it.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The bit of [`Team::slot`] that says its region can be joined.
const OPEN: u64 = 1 << 31;
/// The bits of [`Team::slot`] that count the threads that joined its region.
const JOINED: u64 = OPEN - 1;
/// [`Team::slot`]'s region number is above its lower 32 bits.
const REGION: u64 = 1 << 32;

/// Idle rounds after which a waiting thread also offers its core to the OS scheduler (where the
/// pool has more threads than the machine has cores, a spinning thread would otherwise hold up
/// one that has work).
const ROUNDS_BEFORE_OS_YIELD: u32 = 64;

thread_local! {
    /// Whether this thread is running a step or serving a team (so that a second serving on it,
    /// which would never return until its own step ends, is refused).
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// The region to run: its closure as a type-erased pointer and the function that calls it.
type Job = (*const (), unsafe fn(*const ()));

/// Threads that run a step's regions together: the step's own thread, which calls
/// [`Team::run`], and every thread of the pool that [`Team::serve`]s it.
pub(super) struct Team {
    /// Region number, [`OPEN`] and the count of threads that joined, in one word, so that a
    /// thread joins only while the region is open and the caller counts exactly the joiners.
    slot: AtomicU64,
    /// The open region's job; written by `run` only while no thread can read it.
    job: UnsafeCell<Job>,
    /// Threads (besides the caller) that have returned from the current region's closure.
    finished: AtomicUsize,
    /// Set when the step ends: the serving threads return.
    done: AtomicBool,
    /// The panic of a joiner's share of the region, which `run` resumes on the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `job` is the only field that is not already `Sync`. `run` writes it only while no
// region is open and every thread that joined the previous one has finished with it (the
// caller waited for them); a joiner reads it only after its join succeeded, which it does
// with an acquire load of `slot`, the caller having opened the region with a release store
// after writing `job`.
unsafe impl Sync for Team {}

// SAFETY: `job`'s pointer is the only field that is not already `Send`; it is dereferenced only
// under the protocol above, whichever thread holds the team.
unsafe impl Send for Team {}

/// Calls the closure that `p` points to.
///
/// # Safety
/// `p` is a `*const F` to a live `F`.
unsafe fn call<F: Fn()>(p: *const ()) {
    // SAFETY: the caller's contract.
    unsafe { (*(p as *const F))() }
}

/// Counts a joiner as finished when it leaves the region, also when the closure panics (the
/// caller would otherwise wait for it forever).
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// Closes the region and waits for its joiners, also when the caller's own share panics
/// (the joiners borrow the closure, which must outlive them).
struct Close<'a>(&'a Team);

impl Drop for Close<'_> {
    fn drop(&mut self) {
        let t = self.0;
        let joined = (t.slot.fetch_and(!OPEN, Ordering::AcqRel) & JOINED) as usize;
        while t.finished.load(Ordering::Acquire) < joined {
            std::hint::spin_loop();
        }
    }
}

impl Team {
    /// A team with no region open.
    pub(super) fn new() -> Team {
        Team {
            slot: AtomicU64::new(0),
            job: UnsafeCell::new((std::ptr::null(), call::<fn()>)),
            finished: AtomicUsize::new(0),
            done: AtomicBool::new(false),
            panic: Mutex::new(None),
        }
    }

    /// Runs `f` on this thread and on every serving thread that joins while it runs, and
    /// returns once all of them have returned from it (a panic in any of them resumes here).
    /// `f` must do the region's whole work whoever joins (e.g. claim pieces from a shared
    /// counter until none are left).
    pub(super) fn run<F: Fn() + Sync>(&self, f: F) {
        let job: Job = ((&f as *const F).cast(), call::<F>);
        // SAFETY: no region is open and the joiners of the last one have all finished (the
        // last `run` waited for them), so no other thread reads `job` now (see `impl Sync`).
        unsafe { *self.job.get() = job };
        self.finished.store(0, Ordering::Relaxed);
        let region = (self.slot.load(Ordering::Relaxed) / REGION).wrapping_add(1) % REGION;
        self.slot.store((region * REGION) | OPEN, Ordering::Release);
        {
            let _close = Close(self);
            f();
        }
        if let Some(p) = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            panic::resume_unwind(p);
        }
    }

    /// Runs `f(i)` for every `i` in `0..n` as one region, each `i` claimed by one thread from a
    /// shared counter.
    pub(super) fn for_each(&self, n: usize, f: impl Fn(usize) + Sync) {
        let next = AtomicUsize::new(0);
        self.run(|| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return;
            }
            f(i);
        });
    }

    /// Joins the team's regions as they open until the step ends (see [`Team::with`]), running
    /// the pool's other work (rayon's jobs) between them. Returns at once on a thread that is
    /// already running a step or serving a team.
    pub(super) fn serve(&self) {
        if BUSY.replace(true) {
            return;
        }
        let mut seen = u64::MAX;
        let mut idle = 0u32;
        while !self.done.load(Ordering::Relaxed) {
            let s = self.slot.load(Ordering::Relaxed);
            if s & OPEN != 0 && s / REGION != seen {
                if self.slot.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    seen = s / REGION;
                    let _leave = Leave(&self.finished);
                    // SAFETY: joined (`slot` read with acquire after `run` wrote `job` and
                    // released it), so `job` is this region's, and `run` keeps its closure alive
                    // until this thread has left (`Leave`).
                    let (p, call) = unsafe { *self.job.get() };
                    // SAFETY: as above, `p` points to the live closure that `call` expects.
                    if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| unsafe { call(p) })) {
                        *self.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    }
                }
                idle = 0;
                continue;
            }
            if rayon::yield_now() == Some(rayon::Yield::Executed) {
                idle = 0;
            } else if idle == ROUNDS_BEFORE_OS_YIELD {
                std::thread::yield_now();
                idle = 0;
            } else {
                idle += 1;
                std::hint::spin_loop();
            }
        }
        BUSY.set(false);
    }

    /// Runs `step` on this thread (one of a rayon pool's `threads`) as a team's caller, the
    /// pool's other threads serving the team (jobs spawned on the pool) until `step` returns or
    /// unwinds. Nothing waits for those jobs: one that starts late, on a thread that was busy,
    /// finds the step over and returns, so a step never waits for another session's.
    pub(super) fn with<R>(threads: usize, step: impl FnOnce(&Team) -> R) -> R {
        let team = Arc::new(Team::new());
        let _finish = Finish(&team, BUSY.replace(true));
        for _ in 1..threads {
            let team = Arc::clone(&team);
            rayon::spawn(move || team.serve());
        }
        step(&team)
    }
}

/// Ends the team's serving when the step returns or unwinds, and gives the thread back the
/// busy state it had before.
struct Finish<'a>(&'a Team, bool);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::Relaxed);
        BUSY.set(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
    }

    /// Every index of every region runs exactly once, whoever joins, and the regions' writes
    /// are visible to the caller when `run` returns.
    #[test]
    fn each_index_runs_once_in_every_region() {
        for threads in [1, 2, 4] {
            let hits: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
            pool(threads).install(|| {
                Team::with(threads, |team| {
                    for round in 0..200 {
                        team.for_each(hits.len(), |i| {
                            hits[i].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == round + 1), "{threads} threads");
                    }
                })
            });
        }
    }

    /// Runs `f` until it returns true or 10 s pass.
    fn eventually(f: impl Fn() -> bool) -> bool {
        let t = Instant::now();
        while !f() {
            if t.elapsed() > Duration::from_secs(10) {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    /// A panic on a serving thread reaches the caller, after every joiner has left.
    #[test]
    fn a_joiners_panic_resumes_on_the_caller() {
        let entered = AtomicUsize::new(0);
        let r = pool(2).install(|| {
            let me = rayon::current_thread_index();
            Team::with(2, |team| {
                panic::catch_unwind(AssertUnwindSafe(|| {
                    team.run(|| {
                        entered.fetch_add(1, Ordering::Relaxed);
                        assert!(eventually(|| entered.load(Ordering::Relaxed) == 2), "the other thread never joined");
                        if rayon::current_thread_index() != me {
                            panic!("joiner");
                        }
                    })
                }))
            })
        });
        let e = r.expect_err("the joiner's panic");
        assert_eq!(e.downcast_ref::<&str>(), Some(&"joiner"));
    }

    /// Steps of two teams on one pool at once (as two sessions of one model) both finish, each
    /// region complete, and neither serves inside the other's step.
    #[test]
    fn two_teams_on_one_pool_do_not_wait_for_each_other() {
        let p = pool(3);
        let sums: Vec<usize> = std::thread::scope(|sc| {
            let runs: Vec<_> = (0..2)
                .map(|_| {
                    sc.spawn(|| {
                        p.install(|| {
                            Team::with(3, |team| {
                                let total = AtomicUsize::new(0);
                                for _ in 0..500 {
                                    team.for_each(64, |i| {
                                        total.fetch_add(i, Ordering::Relaxed);
                                    });
                                }
                                total.into_inner()
                            })
                        })
                    })
                })
                .collect();
            runs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(sums, [500 * (63 * 64 / 2); 2]);
    }
}
