//! Run-time CPU detection without std: CPUID for what the CPU implements, XGETBV for what the
//! operating system saves on a context switch (a feature whose register state the OS does not
//! save is reported absent). Detected once, cached in atomics; `set_max_path` caps the choice.

/// Which implementation of the kernels runs, from slowest to fastest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Path {
    /// The portable reference code (any CPU).
    Scalar = 0,
    /// x86-64 AVX2 + FMA + F16C, 8 f32 lanes.
    Avx2 = 1,
    /// [`Path::Avx2`] plus AVX-VNNI (the best path of Intel's client cores from Alder Lake on,
    /// which have no AVX-512): the quantized types' byte products are VEX `vpdpbusd`, the same
    /// results; every other op as [`Path::Avx2`]. Only where the CPU has AVX-VNNI (a CPU with
    /// AVX-512 but without it, as Zen 4, capped here runs [`Path::Avx2`]).
    AvxVnni = 2,
    /// x86-64 AVX-512 F/BW/VL (+ AVX2/FMA/F16C), 16 f32 lanes.
    Avx512 = 3,
    /// AVX-512 plus Intel AMX tiles (AMX-TILE, AMX-BF16) for batched products of f16/bf16
    /// weights (`matmul`); every other op as [`Path::Avx512`].
    Amx = 4,
}

impl Path {
    /// Every path, slowest first.
    pub const ALL: [Path; 5] = [Path::Scalar, Path::Avx2, Path::AvxVnni, Path::Avx512, Path::Amx];

    /// `"scalar"`, `"avx2"`, `"avxvnni"`, `"avx512"` or `"amx"` (the values `RUNLLAMA_CPU`
    /// takes).
    pub const fn name(self) -> &'static str {
        match self {
            Path::Scalar => "scalar",
            Path::Avx2 => "avx2",
            Path::AvxVnni => "avxvnni",
            Path::Avx512 => "avx512",
            Path::Amx => "amx",
        }
    }

    /// The inverse of [`Path::name`] (ASCII case-insensitive); `None` for anything else.
    pub fn from_name(s: &str) -> Option<Path> {
        Path::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    #[cfg(target_arch = "x86_64")]
    const fn from_u8(v: u8) -> Path {
        match v {
            0 => Path::Scalar,
            1 => Path::Avx2,
            2 => Path::AvxVnni,
            3 => Path::Avx512,
            _ => Path::Amx,
        }
    }
}

/// The CPU features the kernels care about, as usable by this process (implemented by the CPU
/// and, for the AVX/AVX-512 register state, enabled by the OS). All false off x86-64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuFeatures {
    /// AVX2 (256-bit integer ops).
    pub avx2: bool,
    /// FMA3.
    pub fma: bool,
    /// F16C (f16 <-> f32 conversion).
    pub f16c: bool,
    /// AVX-512 Foundation.
    pub avx512f: bool,
    /// AVX-512 Byte and Word.
    pub avx512bw: bool,
    /// AVX-512 Vector Length extensions.
    pub avx512vl: bool,
    /// AVX-512 VNNI (`vpdpbusd`: the quantized types' byte dot products, with AVX-512 VL).
    pub avx512vnni: bool,
    /// AVX-512 BF16 (`vdpbf16ps`: the bf16 products `set_bf16_products` offers, `bf16_dot.rs`).
    pub avx512bf16: bool,
    /// AVX-VNNI (the VEX-encoded 256-bit `vpdpbusd`: [`Path::AvxVnni`]).
    pub avxvnni: bool,
    /// AVX-512 FP16 (detected and reported, not used).
    pub avx512fp16: bool,
    /// GFNI (`vgf2p8affineqb`: one instruction takes a bit field out of each byte and puts it
    /// in place, for the quantized decode rows of the AVX-VNNI and AVX-512 paths).
    pub gfni: bool,
    /// The CPU is Intel's (CPUID vendor "GenuineIntel"): see [`CpuFeatures::sw_prefetch`].
    pub intel: bool,
    /// AMX-TILE and AMX-BF16, usable: the CPU has them, the OS saves the tile state (XCR0)
    /// and, on Linux, granted this process its use (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, asked
    /// once at detection). Only Linux is asked: elsewhere this stays false.
    pub amx: bool,
    /// AMX-INT8 (`tdpbsud`: the K-quants' batched byte products, `qdot_x86_panel.rs`), with
    /// [`CpuFeatures::amx`].
    pub amx_int8: bool,
}

impl CpuFeatures {
    /// The fastest path these features allow (and this build has: the AVX-512 and AVX-VNNI
    /// paths need Rust >= 1.89 to compile; an older compiler's build stops at AVX2).
    pub const fn best_path(self) -> Path {
        let avx2 = self.avx2 && self.fma && self.f16c;
        if cfg!(runllama_avx512) && avx2 && self.avx512f && self.avx512bw && self.avx512vl {
            if self.amx {
                Path::Amx
            } else {
                Path::Avx512
            }
        } else if cfg!(runllama_avx512) && avx2 && self.avxvnni {
            Path::AvxVnni
        } else if avx2 {
            Path::Avx2
        } else {
            Path::Scalar
        }
    }

    /// Whether matrix-vector products issue software prefetches along their weight rows.
    /// On an AVX-512 Xeon they lift one thread's f16 4096x11008 stream from 12.9 to 15.3
    /// GiB/s (its hardware prefetcher alone keeps too few lines in flight). On AMD's Zen 4
    /// (EPYC VM, family 25 model 17) they pay where the memory is fast: 2-thread decode, one
    /// process switching every 2 tokens, prefetching tokens against the others (B/A), 7B F16
    /// 1.19-1.30 with the probe at 55-65 GB/s, 8B BF16 1.02-1.21, Q4_K_M 1.00-1.05, Q4_0
    /// 1.00 at 34 GB/s; the worst, 8B BF16 at 34-36 GB/s, 0.97-0.98 (an earlier Zen 4
    /// session, before the L2 prefetches, had measured 0.90). So: on Intel CPUs, and on AMD's
    /// with AVX-512 (Zen 4 and later); not on Zen 3 and older, where they were not measured.
    /// Quantized decoding asks [`CpuFeatures::quant_prefetch`] instead.
    pub const fn sw_prefetch(self) -> bool {
        self.intel || self.avx512f
    }

    /// Whether quantized decoding (`qdot_x86.rs`' row products) issues software prefetches,
    /// and with them runs two streams through each matrix: on Intel CPUs (see
    /// [`CpuFeatures::sw_prefetch`] and `qdot_x86.rs`' `QPF_L2`: on the Xeon they made a
    /// 2-thread 7B decode 11-14 % faster). On Zen 4 they cost: 2-thread 7B decode, one process
    /// switching every 2 tokens, tokens without prefetches against those with (B/A, 3
    /// repetitions each), with the probe at 38-69 GB/s: Q4_K_M 1.14-1.17 (1.00 at 37 GB/s),
    /// Q5_K_M 1.04-1.10 (0.99-1.01 at 38), Q6_K 1.02-1.05, Q4_0 1.02-1.13, Q8_0 0.97-1.06
    /// (2026-12-07, after the 512-bit rows of `qdot_x86_wide.rs` were made faster; before them
    /// Q4_K_M had measured 1.00-1.05 the other way). It is the L1 prefetches that cost: Q4_K_M
    /// without them (the L2 ones kept) 1.05-1.13, without the L2 ones 0.96-1.01. Why is not
    /// established: a Q4_K row 12 % faster from L2 decoded no faster with two threads
    /// (0.94-1.06), yet rows doing half their arithmetic decoded 12-17 % faster where the probe
    /// read 63-71 GB/s (`docs/speed-history.md`, 2026-12-08 (early morning)).
    pub const fn quant_prefetch(self) -> bool {
        self.intel
    }

    /// Whether decoding's quantized row products run on 512-bit vectors (`qdot_x86_wide.rs`):
    /// on Intel's AVX-512 cores two 512-bit integer instructions issue a cycle (ports 0 and 5),
    /// so a 512-bit kernel does a third more per cycle than three 256-bit ports and needs
    /// fewer shuffles. Measured on a Xeon (CPUID family 6 model 207), one thread, 160 rows in
    /// L2: Q4_K 19-21 -> 26-27 GB/s, Q6_K 26 -> 29. Zen 4 splits each 512-bit instruction in
    /// two, yet decodes faster with them too (fewer instructions): 2-thread 7B decode, one
    /// process switching every 2 tokens, 512-bit tokens against 256-bit ones: Q4_0 1.04-1.05,
    /// Q4_K_M 1.04-1.06, 4-layer Q5_K_M 1.01-1.05, Q6_K 0.99-1.02, Q8_0 0.98-1.01.
    pub const fn wide_int(self) -> bool {
        self.avx512bw && self.avx512vnni
    }

    /// Whether `p` can run here.
    pub const fn supports(self, p: Path) -> bool {
        p as u8 <= self.best_path() as u8 && (!matches!(p, Path::AvxVnni) || cfg!(runllama_avx512) && self.avxvnni)
    }

    /// The path a cap of `cap` gives: the fastest here at most `cap`.
    pub const fn capped(self, cap: Path) -> Path {
        let best = self.best_path();
        if best as u8 <= cap as u8 {
            best
        } else if matches!(cap, Path::AvxVnni) && !self.supports(Path::AvxVnni) {
            Path::Avx2
        } else {
            cap
        }
    }

    #[cfg(target_arch = "x86_64")]
    const fn to_bits(self) -> u16 {
        (self.avx2 as u16)
            | (self.fma as u16) << 1
            | (self.f16c as u16) << 2
            | (self.avx512f as u16) << 3
            | (self.avx512bw as u16) << 4
            | (self.avx512vl as u16) << 5
            | (self.avx512bf16 as u16) << 6
            | (self.avx512fp16 as u16) << 7
            | (self.intel as u16) << 8
            | (self.amx as u16) << 9
            | (self.avx512vnni as u16) << 10
            | (self.amx_int8 as u16) << 11
            | (self.avxvnni as u16) << 12
            | (self.gfni as u16) << 13
    }

    #[cfg(target_arch = "x86_64")]
    const fn from_bits(b: u16) -> CpuFeatures {
        CpuFeatures {
            avx2: b & 1 != 0,
            fma: b & 1 << 1 != 0,
            f16c: b & 1 << 2 != 0,
            avx512f: b & 1 << 3 != 0,
            avx512bw: b & 1 << 4 != 0,
            avx512vl: b & 1 << 5 != 0,
            avx512bf16: b & 1 << 6 != 0,
            avx512fp16: b & 1 << 7 != 0,
            intel: b & 1 << 8 != 0,
            amx: b & 1 << 9 != 0,
            avx512vnni: b & 1 << 10 != 0,
            amx_int8: b & 1 << 11 != 0,
            avxvnni: b & 1 << 12 != 0,
            gfni: b & 1 << 13 != 0,
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{CpuFeatures, Path};
    use core::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv, CpuidResult};
    use core::sync::atomic::{AtomicU16, AtomicU8, Ordering::Relaxed};

    /// Feature bits of `CpuFeatures::to_bits`, or `UNSET` before the first detection.
    static FEATURES: AtomicU16 = AtomicU16::new(UNSET);
    const UNSET: u16 = 1 << 15;
    /// The cap set by `set_max_path` (a `Path as u8`).
    static CAP: AtomicU8 = AtomicU8::new(Path::Amx as u8);

    fn cpuid(leaf: u32, sub: u32) -> CpuidResult {
        // SAFETY: CPUID exists on every x86-64 CPU; leaves above the maximum return zeros or
        // the highest basic leaf's data, and callers check the maximum leaf first. (`__cpuid`
        // is a safe fn in recent Rust, `unsafe` in older releases: keep the block for those.)
        #[allow(unused_unsafe)]
        unsafe {
            if sub == 0 {
                __cpuid(leaf)
            } else {
                __cpuid_count(leaf, sub)
            }
        }
    }

    #[target_feature(enable = "xsave")]
    unsafe fn xcr0() -> u64 {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { _xgetbv(0) }
    }

    fn detect() -> CpuFeatures {
        let mut f = CpuFeatures::default();
        let l0 = cpuid(0, 0);
        let max_leaf = l0.eax;
        // The vendor string is EBX, EDX, ECX: "Genu" "ineI" "ntel".
        f.intel = (l0.ebx, l0.edx, l0.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e);
        if max_leaf < 1 {
            return f;
        }
        let l1 = cpuid(1, 0);
        let (osxsave, avx) = (l1.ecx & 1 << 27 != 0, l1.ecx & 1 << 28 != 0);
        if !osxsave || !avx {
            return f;
        }
        // SAFETY: CPUID.1:ECX.OSXSAVE is set, so the OS enabled XGETBV (and the CPU has XSAVE).
        let xcr0 = unsafe { xcr0() };
        // XCR0 bit 1 SSE, 2 AVX (YMM upper halves); 5 opmask, 6 ZMM0-15 upper, 7 ZMM16-31.
        if xcr0 & 0b110 != 0b110 {
            return f;
        }
        let zmm_state = xcr0 & 0b1110_0110 == 0b1110_0110;
        f.fma = l1.ecx & 1 << 12 != 0;
        f.f16c = l1.ecx & 1 << 29 != 0;
        if max_leaf >= 7 {
            let l7 = cpuid(7, 0);
            f.avx2 = l7.ebx & 1 << 5 != 0;
            // CPUID.7.1:EAX bit 4 (a VEX encoding: YMM state suffices).
            f.avxvnni = l7.eax >= 1 && cpuid(7, 1).eax & 1 << 4 != 0;
            // CPUID.7.0:ECX bit 8 (its VEX and EVEX forms need the AVX and AVX-512 state).
            f.gfni = l7.ecx & 1 << 8 != 0;
            if zmm_state {
                f.avx512f = l7.ebx & 1 << 16 != 0;
                f.avx512bw = l7.ebx & 1 << 30 != 0;
                f.avx512vl = l7.ebx & 1 << 31 != 0;
                f.avx512fp16 = f.avx512f && l7.edx & 1 << 23 != 0;
                f.avx512vnni = f.avx512f && l7.ecx & 1 << 11 != 0;
                if l7.eax >= 1 {
                    f.avx512bf16 = f.avx512f && cpuid(7, 1).eax & 1 << 5 != 0;
                }
                // CPUID.7.0:EDX bit 22 AMX-BF16, 24 AMX-TILE; XCR0 bits 17 TILECFG, 18 TILEDATA.
                let amx_cpu = l7.edx & 1 << 22 != 0 && l7.edx & 1 << 24 != 0;
                let amx_os = xcr0 & 0b11 << 17 == 0b11 << 17;
                f.amx = f.avx512f && f.avx512bw && amx_cpu && amx_os && request_tile_state();
                // CPUID.7.0:EDX bit 25.
                f.amx_int8 = f.amx && l7.edx & 1 << 25 != 0;
            }
        }
        f
    }

    /// Ask Linux for this process's use of the AMX tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM,
    /// XFEATURE_XTILEDATA)`, Linux >= 5.16; without it the first tile instruction faults).
    /// Granted once for the whole process; asking again is harmless.
    #[cfg(target_os = "linux")]
    fn request_tile_state() -> bool {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: the arch_prctl system call with these arguments only changes which register
        // state this process may use; it reads and writes no memory of ours. `syscall`
        // clobbers rcx and r11, declared; the result is in rax.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack, preserves_flags)
            );
        }
        ret == 0
    }

    #[cfg(not(target_os = "linux"))]
    fn request_tile_state() -> bool {
        false
    }

    #[inline]
    pub(crate) fn detected() -> CpuFeatures {
        let mut b = FEATURES.load(Relaxed);
        if b == UNSET {
            // Racing first calls all compute (and store) the same value.
            b = detect().to_bits();
            FEATURES.store(b, Relaxed);
        }
        CpuFeatures::from_bits(b)
    }

    #[inline]
    pub(crate) fn path() -> Path {
        detected().capped(Path::from_u8(CAP.load(Relaxed)))
    }

    pub(crate) fn set_max_path(p: Path) {
        CAP.store(p as u8, Relaxed);
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::{CpuFeatures, Path};

    pub(crate) fn detected() -> CpuFeatures {
        CpuFeatures::default()
    }

    pub(crate) fn path() -> Path {
        Path::Scalar
    }

    pub(crate) fn set_max_path(_: Path) {}
}

/// The CPU features detected at run time (once; later calls read the cached bits).
pub fn detected() -> CpuFeatures {
    imp::detected()
}

/// The path every public op uses now: the best the CPU supports, capped by [`set_max_path`].
#[inline]
pub fn path() -> Path {
    imp::path()
}

/// The name of [`path()`]: `"scalar"`, `"avx2"`, `"avxvnni"`, `"avx512"` or `"amx"`.
pub fn path_name() -> &'static str {
    path().name()
}

/// Cap the path for the whole process (e.g. from `RUNLLAMA_CPU=scalar|avx2|avxvnni|avx512`):
/// later calls use the fastest path here at most `p` ([`CpuFeatures::capped`]). Raising the cap
/// again is allowed. Calls already running finish on the path they started with; each op reads
/// the cap once per call.
pub fn set_max_path(p: Path) {
    imp::set_max_path(p)
}

/// What batched products of bf16 weights use on the AVX-512 path of a CPU with AVX-512 BF16
/// (`bf16_dot.rs`; elsewhere, and on the AMX path, this changes nothing). Chosen per product
/// through [`Products`]: a model loaded with one choice keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Products {
    /// The f32 FMA kernel over widened weights (the default).
    F32 = 0,
    /// `vdpbf16ps` over activations rounded to bf16 (within `2^-9` of them), as llama.cpp's
    /// bf16 products: about twice the speed.
    Rounded = 1,
}

impl Bf16Products {
    /// `"f32"` or `"rounded"`.
    pub const fn name(self) -> &'static str {
        match self {
            Bf16Products::F32 => "f32",
            Bf16Products::Rounded => "rounded",
        }
    }

    /// The inverse of [`Bf16Products::name`] (ASCII case-insensitive).
    pub fn from_name(s: &str) -> Option<Bf16Products> {
        [Bf16Products::F32, Bf16Products::Rounded].into_iter().find(|m| m.name().eq_ignore_ascii_case(s.trim()))
    }
}

/// How a batched product runs: its SIMD path and what products bf16 weights use on it. A
/// packing and the product over it take the same value (the packed layout depends on both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Products {
    /// The SIMD path.
    pub path: Path,
    /// What batched products of bf16 weights use.
    pub bf16: Bf16Products,
}

impl From<Path> for Products {
    /// The path's exact products ([`Bf16Products::F32`]).
    fn from(path: Path) -> Products {
        Products { path, bf16: Bf16Products::F32 }
    }
}
