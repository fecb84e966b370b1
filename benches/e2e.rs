//! End-to-end speed of one model at real scale, in the units llama.cpp's `llama-bench` reports:
//! load time, prefill of prompts of the given lengths (pp) and decode of 64 tokens (tg) in
//! tokens/s, each after `depth` tokens already in the context (llama-bench's `-d`: 0 by
//! default), memory split into file-backed and anonymous, and beside them a STREAM-like
//! read of RAM with the same threads, in the same run, which gives the decode limit
//! (read bandwidth / bytes of weights read per token): once over 4 GiB before loading, and
//! right before and after every decode run (memory speed here drifts by tens of percent
//! between minutes, so each run's tg / limit uses the probes around it).
//!
//! ```text
//! cargo bench --bench e2e -- MODEL [--threads N] [--prompt 128[,512...]] [--gen 64]
//!                                  [--depth 0[,4096...]] [--reps 3]
//!                                  [--kv f16|f32|q8_0|q4_0|q8_0_q4_0] [--ctx 4096] [--json FILE]
//!                                  [--bf16-products f32|rounded] [--no-mmap]
//!                                  [--device cuda[:N] [--gpu-gbps GB/s]]
//!                                  [--sample T,TOP_K,TOP_P]
//! ```
//! For each depth, as llama-bench: every prompt length, then the decode run. The depth's tokens
//! are prefilled once (untimed) and each repetition rewinds to them; `--prompt 0` or
//! `--gen 0` leaves that kind out. Decode is greedy unless `--sample` gives a temperature, top-k
//! and top-p (e.g. `0.8,40,0.95`): the sampler's time per token is then part of tg.
//! With `--device cuda` (a build with `--features cuda`) the model runs on GPU N; the host
//! read probes are skipped and the limit is `--gpu-gbps` (the card's read bandwidth, measured
//! beside the run) / weight bytes.
//! MODEL: anything `llama_load` takes (a .gguf, .safetensors, a safetensors directory, .ckpt,
//! llama2.c .bin). Real-shape models: `../shared/tools/make_random_llama.py`;
//! `benches/llamacpp_compare.sh` runs this beside llama.cpp's `llama-bench` on the same GGUF.
//! `--no-mmap` reads the weights into anonymous memory instead of mapping the file (llama-bench's
//! `-mmp 0`), e.g. to see whether decode reads the page cache's pages slower than the probe's.
//! Figures are medians over `--reps` repetitions.
//!
//! `cargo bench --bench e2e -- --read-probe THREADS` runs only the probe that brackets decode
//! (1 GiB, median of 5 passes) and prints `read-probe GB/s`: `llamacpp_compare.sh` reads it
//! right around llama-bench's decode, so that llama.cpp's tg / limit is as near in time as ours.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use runllama::backend::Device;
use runllama::loader::{load, LoadOptions};
use runllama::sampler::SamplerParams;
use runllama::session::{KvType, Session, SessionParams};
use runllama_kernels as k;
use runllama_kernels::Bf16Products;

struct Args {
    model: PathBuf,
    threads: usize,
    prompts: Vec<usize>,
    gen: usize,
    depths: Vec<usize>,
    reps: usize,
    /// K cache type, and V's when it differs.
    kv: (KvType, Option<KvType>),
    ctx: u32,
    json: Option<PathBuf>,
    device: Device,
    gpu_gbps: f64,
    bf16_products: Bf16Products,
    sampler: SamplerParams,
    use_mmap: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("{msg}\nusage: cargo bench --bench e2e -- MODEL [--threads N] [--prompt 128[,N...]] [--gen 64] [--depth 0[,N...]] [--reps 3] [--kv f16|f32|q8_0|q4_0|q8_0_q4_0] [--ctx N] [--json FILE] [--bf16-products f32|rounded] [--no-mmap] [--device cuda[:N] [--gpu-gbps GB/s]] [--sample T,TOP_K,TOP_P]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        model: PathBuf::new(),
        threads: 0,
        prompts: vec![128],
        gen: 64,
        depths: vec![0],
        reps: 3,
        kv: (KvType::F16, None),
        ctx: 0,
        json: None,
        device: Device::Cpu,
        gpu_gbps: f64::NAN,
        bf16_products: Bf16Products::F32,
        sampler: SamplerParams { temperature: 0.0, top_k: 0, top_p: 1.0, repeat_penalty: 1.0 },
        use_mmap: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        let mut list = |name: &str| -> Vec<usize> {
            let v = value(name);
            v.split(',')
                .map(|n| n.trim().parse().unwrap_or_else(|_| usage(&format!("{name} {v}: not numbers"))))
                .collect()
        };
        let mut num = |name: &str| match list(name)[..] {
            [n] => n,
            _ => usage(&format!("{name}: one number")),
        };
        match arg.as_str() {
            "--bench" => {} // passed by `cargo bench`
            "--threads" | "-t" => a.threads = num("--threads"),
            "--prompt" | "-p" => a.prompts = list("--prompt").into_iter().filter(|&p| p > 0).collect(),
            "--gen" | "-n" => a.gen = num("--gen"),
            "--depth" | "-d" => a.depths = list("--depth"),
            "--reps" | "-r" => a.reps = num("--reps").max(1),
            "--ctx" => a.ctx = num("--ctx") as u32,
            "--kv" => {
                a.kv = match value("--kv").as_str() {
                    "f16" => (KvType::F16, None),
                    "f32" => (KvType::F32, None),
                    "q8_0" => (KvType::Int8, None),
                    "q4_0" => (KvType::Int4, None),
                    "q8_0_q4_0" => (KvType::Int8, Some(KvType::Int4)),
                    other => usage(&format!("--kv {other}: f16, f32, q8_0, q4_0 or q8_0_q4_0 (K q8_0, V q4_0)")),
                }
            }
            "--json" => a.json = Some(PathBuf::from(value("--json"))),
            "--no-mmap" => a.use_mmap = false,
            "--bf16-products" => {
                let v = value("--bf16-products");
                a.bf16_products = Bf16Products::from_name(&v)
                    .unwrap_or_else(|| usage(&format!("--bf16-products {v}: f32 or rounded")))
            }
            "--device" => {
                a.device = match value("--device").as_str() {
                    "cpu" => Device::Cpu,
                    "cuda" => Device::Cuda { index: 0 },
                    d => match d.strip_prefix("cuda:").and_then(|i| i.parse().ok()) {
                        Some(index) => Device::Cuda { index },
                        None => usage(&format!("--device {d}: cpu, cuda or cuda:N")),
                    },
                }
            }
            "--gpu-gbps" => {
                a.gpu_gbps = value("--gpu-gbps").parse().unwrap_or_else(|_| usage("--gpu-gbps: not a number"))
            }
            "--sample" => {
                let v = value("--sample");
                let f: Vec<f32> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                let [temperature, top_k, top_p] = f[..] else { usage(&format!("--sample {v}: T,TOP_K,TOP_P")) };
                a.sampler = SamplerParams { temperature, top_k: top_k as i32, top_p, repeat_penalty: 1.0 };
                a.sampler.validate().unwrap_or_else(|e| usage(&format!("--sample {v}: {e}")));
            }
            s if s.starts_with('-') => usage(&format!("unknown option {s}")),
            s => a.model = PathBuf::from(s),
        }
    }
    if a.model.as_os_str().is_empty() {
        usage("no MODEL given");
    }
    a
}

/// The kB fields `names` (e.g. `"RssFile:"`) of a `/proc` file, in MiB (Linux; zero elsewhere
/// or when absent).
fn proc_mib<const N: usize>(file: &str, names: [&str; N]) -> [f64; N] {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    names.map(|name| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    })
}

/// `RssFile` and `RssAnon` of this process in MiB (Linux; zeros elsewhere).
fn rss_mib() -> (f64, f64) {
    let [file, anon] = proc_mib("/proc/self/status", ["RssFile:", "RssAnon:"]);
    (file, anon)
}

/// How much of this process's file mappings the kernel maps in 2 MiB pages (`FilePmdMapped`),
/// MiB. The page cache keeps a file in the folio sizes it was read in with: a file read through
/// our huge-page-advised mapping comes in 2 MiB folios, while one read in small pieces earlier
/// (or split under memory pressure) stays in small ones, and decode then loses to TLB misses.
fn file_pmd_mapped_mib() -> f64 {
    proc_mib("/proc/self/smaps_rollup", ["FilePmdMapped:"])[0]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A STREAM-like read probe: `threads` threads over an anonymous buffer far larger than any
/// cache, each reading its own contiguous share as one stream (the sum of its squares: the
/// kernels bench's `sum_squares`) and, in another pass, as two streams (the dot product of its
/// two halves: `dot_halves`); the faster of the two is the figure (on the Xeon two streams per
/// core read faster, on the EPYC one). The buffer asks for transparent huge pages, as
/// most of a mapped model gets (its `FilePmdMapped`), so the probe is not slowed by TLB misses
/// that decode does not pay.
struct ReadProbe {
    buf: memmap2::MmapMut,
    pool: rayon::ThreadPool,
    threads: usize,
}

impl ReadProbe {
    fn new(bytes: usize, threads: usize) -> ReadProbe {
        let mut buf = memmap2::MmapMut::map_anon(bytes).expect("probe buffer");
        #[cfg(target_os = "linux")]
        let _ = buf.advise(memmap2::Advice::HugePage); // a hint: ignored where THP is off
                                                       // Write every page (so reads hit real memory, not the shared zero page).
        buf.iter_mut().step_by(4096).for_each(|b| *b = 0x3c);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        ReadProbe { buf, pool, threads }
    }

    /// GB/s (10^9 bytes/s): the better of the two read patterns, each the median of `passes`
    /// passes after one untimed pass.
    fn gbps(&self, passes: usize) -> f64 {
        self.gbps_streams(passes, 1).max(self.gbps_streams(passes, 2))
    }

    /// GB/s reading each thread's share as `streams` (1 or 2) streams.
    fn gbps_streams(&self, passes: usize, streams: usize) -> f64 {
        // SAFETY: the mapping is `len` bytes, page-aligned (so aligned for f32), initialised
        // (anonymous memory reads as zero, then written above), and borrowed for this call.
        let f: &[f32] = unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast(), self.buf.len() / 4) };
        let share = f.len() / self.threads;
        let pass = || {
            let t = Instant::now();
            let sum: f32 = self.pool.install(|| {
                use rayon::prelude::*;
                f.par_chunks(share)
                    .map(|c| {
                        if streams == 1 {
                            k::dot_f32(c, c)
                        } else {
                            let (a, b) = c.split_at(c.len() / 2);
                            k::dot_f32(a, b)
                        }
                    })
                    .sum()
            });
            std::hint::black_box(sum);
            (f.len() * 4) as f64 / t.elapsed().as_secs_f64() / 1e9
        };
        pass();
        median((0..passes).map(|_| pass()).collect())
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--read-probe") {
        let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or_else(|| usage("--read-probe THREADS"));
        println!("read-probe {:.2}", ReadProbe::new(1 << 30, threads).gbps(5));
        return;
    }
    let a = parse_args();
    let threads = if a.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { a.threads };
    println!("model     {}", a.model.display());
    let cpu_path = format!("{} bf16_products={}", runllama::cpu::system_info(), a.bf16_products.name());
    println!("cpu path  {cpu_path}");

    let on_cpu = a.device == Device::Cpu;
    let bw = if on_cpu { ReadProbe::new(4 << 30, threads).gbps(5) } else { a.gpu_gbps };
    if on_cpu {
        println!("read      {bw:.1} GB/s ({threads} threads, 4 GiB buffer, the faster of 1 and 2 streams per thread, median of 5 each)");
    } else {
        println!("device    {:?}; read bandwidth given: {bw:.1} GB/s", a.device);
    }

    // MiB in use on the GPU (None on the CPU); first with only a CUDA context on it.
    let gpu_used = || match a.device {
        Device::Cuda { index } => runllama::backend::gpu_memory(index).map(|(free, total)| (total - free) >> 20),
        Device::Cpu => None,
    };
    let gpu_before = gpu_used();
    let opts = || LoadOptions {
        n_threads: threads,
        device: a.device,
        bf16_products: a.bf16_products,
        use_mmap: a.use_mmap,
        ..Default::default()
    };
    let t = Instant::now();
    let first = load(&a.model, opts()).unwrap_or_else(|e| {
        eprintln!("load failed: {e}");
        std::process::exit(1)
    });
    let load_first = t.elapsed().as_secs_f64();
    drop(first);
    let t = Instant::now();
    let model = Arc::new(load(&a.model, opts()).expect("second load"));
    let load_s = t.elapsed().as_secs_f64();
    let (file_load, anon_load) = rss_mib();
    let hp = model.hparams.clone();
    let weight_bytes = model.weight_bytes_per_token();
    println!(
        "shape     n_vocab {} n_embd {} n_layer {} n_head {}/{} n_ff {} dtype {}",
        hp.n_vocab,
        hp.n_embd,
        hp.n_layer,
        hp.n_head,
        hp.n_head_kv,
        hp.n_ff,
        model.main_dtype().map_or("?", |d| d.name())
    );
    println!("load      {load_s:.3} s (first in this process {load_first:.3} s)");

    let max_prompt = a.prompts.iter().copied().max().unwrap_or(0);
    let max_depth = a.depths.iter().copied().max().unwrap_or(0);
    let params = SessionParams {
        n_ctx: if a.ctx == 0 { (max_depth + max_prompt.max(a.gen) + 1) as u32 } else { a.ctx },
        sampler: a.sampler,
        seed: 0,
        kv_type: a.kv.0,
        kv_type_v: a.kv.1,
    };
    let session = Session::new(model.clone(), params).unwrap_or_else(|e| {
        eprintln!("session failed: {e}");
        std::process::exit(1)
    });
    // Deterministic ordinary token ids (clear of the low byte/special ids and the LLaMA 3 specials).
    // Memory speed on these VMs drifts between minutes: each decode run is also bracketed by
    // probes of a 1 GiB buffer (4x the largest L3 here), and its tg / limit uses their mean.
    // (Made after the memory figures after load, and dropped before those after the run.)
    let near = on_cpu.then(|| ReadProbe::new(1 << 30, threads));
    let near_gbps = |near: &Option<ReadProbe>| near.as_ref().map_or(bw, |p| p.gbps(5));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    // (A tiny test vocabulary: its ids past the byte tokens.)
    let base = if hp.n_vocab > 2600 { 1000 } else { (hp.n_vocab as u64 / 2).min(259) };
    let span = (hp.n_vocab as u64).saturating_sub(base + 300).max(1);
    let tokens: Vec<u32> = (0..max_depth + max_prompt.max(1))
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (base + seed % span) as u32
        })
        .collect();
    let (context, prompt) = tokens.split_at(max_depth);

    // Warm-up, untimed, as llama-bench does: one prompt pass and one decode step (this also
    // faults in the mapping's pages).
    session.step(&prompt[..max_prompt.max(1)]).expect("warm-up prefill");
    session.reset().expect("reset");
    session.step(&prompt[..1]).expect("warm-up decode step");

    let mut tests = Vec::new();
    for &depth in &a.depths {
        session.reset().expect("reset");
        if depth > 0 {
            session.step(&context[..depth]).expect("depth prefill");
        }
        let at = if depth > 0 { format!(" @ d{depth}") } else { String::new() };
        for &n in &a.prompts {
            let mut samples = Vec::new();
            for _ in 0..a.reps {
                session.rewind(depth as u32).expect("rewind");
                let t = Instant::now();
                session.step(&prompt[..n]).expect("prefill");
                samples.push(n as f64 / t.elapsed().as_secs_f64());
            }
            let tps = median(samples.clone());
            println!("pp{n}{at}  {tps:.2} tok/s (median of {}: {})", a.reps, list(&samples, 2));
            tests.push(serde_json::json!({"kind": "pp", "n": n, "depth": depth, "tps": tps, "samples": samples}));
        }
        if a.gen == 0 {
            continue;
        }
        let (mut samples, mut near_bw, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..a.reps {
            session.rewind(depth as u32).expect("rewind");
            let mut tok = prompt[0];
            let before = near_gbps(&near);
            let t = Instant::now();
            for _ in 0..a.gen {
                tok = session.step(&[tok]).expect("decode step");
            }
            let tps = a.gen as f64 / t.elapsed().as_secs_f64();
            let after = near_gbps(&near);
            samples.push(tps);
            near_bw.push((before + after) / 2.0);
            ratios.push(tps / ((before + after) / 2.0 * 1e9 / weight_bytes as f64));
            println!(
                "rep       tg{}{at} {tps:.3} tok/s ({:.1} GB/s of weights)   read before/after {before:.1}/{after:.1} GB/s   tg/limit {:.2}",
                a.gen,
                tps * weight_bytes as f64 / 1e9,
                ratios[ratios.len() - 1]
            );
        }
        let (tps, near_med, ratio) = (median(samples.clone()), median(near_bw), median(ratios));
        println!(
            "tg{}{at}  {tps:.3} tok/s (median of {}); limit {:.3} tok/s = read bandwidth next to decode ({near_med:.1} GB/s) / weight bytes; tg/limit {ratio:.2} (median of the runs' ratios)",
            a.gen,
            a.reps,
            near_med * 1e9 / weight_bytes as f64
        );
        tests.push(serde_json::json!({
            "kind": "tg", "n": a.gen, "depth": depth, "tps": tps, "samples": samples,
            "read_near_gbps": near_med, "tg_over_limit": ratio,
        }));
    }
    drop(near);
    let (file_end, anon_end) = rss_mib();
    let file_pmd = file_pmd_mapped_mib();
    let kv_mib = session.kv_bytes() as f64 / 1048576.0;
    let gpu_used_mib = gpu_used();
    if let Some(used) = gpu_used_mib {
        println!(
            "gpu       {used} MiB in use on the GPU (this process and any other; {} MiB with only a CUDA context); weights read per token {:.0} MiB, KV cache {:.0} MiB",
            gpu_before.unwrap_or(0),
            weight_bytes as f64 / 1048576.0,
            session.kv_bytes() as f64 / 1048576.0
        );
    }
    println!("weights   {:.2} GB read per decoded token", weight_bytes as f64 / 1e9);
    println!(
        "memory    after load: file {file_load:.0} MiB, anon {anon_load:.0} MiB; after the run: file {file_end:.0} MiB ({file_pmd:.0} MiB of it in 2 MiB pages), anon {anon_end:.0} MiB (KV cache {kv_mib:.0} MiB, n_ctx {})",
        session.n_ctx()
    );
    if let Some(path) = a.json {
        let j = serde_json::json!({
            "model": a.model.display().to_string(),
            "threads": threads,
            "cpu_path": cpu_path,
            "device": format!("{:?}", a.device),
            "gpu": model.backend().ok().and_then(|b| b.device()),
            "read_gbps": bw,
            "weight_bytes": weight_bytes,
            "load_s": load_s,
            "load_first_s": load_first,
            "tests": tests,
            "rss_file_mib": file_end,
            "file_pmd_mapped_mib": file_pmd,
            "rss_anon_mib": anon_end,
            "rss_anon_after_load_mib": anon_load,
            "kv_mib": kv_mib,
            "gpu_used_mib": gpu_used_mib,
            "gpu_context_mib": gpu_before,
            "kv": match a.kv {
                (k, Some(v)) => format!("K {k:?}, V {v:?}"),
                (k, None) => format!("{k:?}"),
            },
        });
        std::fs::write(&path, j.to_string()).expect("write --json file");
    }
}

/// The samples as text, `digits` after the point.
fn list(samples: &[f64], digits: usize) -> String {
    samples.iter().map(|x| format!("{x:.digits$}")).collect::<Vec<_>>().join(", ")
}
