//! What the tests that build and run host programs share (tests/c_examples.rs,
//! tests/csharp.rs): this test run's library, a scratch directory, running a program and
//! showing what it printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The directory with `librunllama.so` and `librunllama.a` from this test run's build.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let so = format!("{}runllama{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
        let exe = std::env::current_exe().expect("current_exe");
        let deps = exe.parent().expect("the test executable's directory").to_path_buf();
        let mut tried = Vec::new();
        for dir in [Some(deps.clone()), deps.parent().map(Path::to_path_buf)].into_iter().flatten() {
            if dir.join(&so).is_file() && dir.join("librunllama.a").is_file() {
                return dir;
            }
            tried.push(dir.display().to_string());
        }
        panic!(
            "{so} and librunllama.a not found in {tried:?}: cargo builds them with the test's dependencies \
             when Cargo.toml's [lib] crate-type lists cdylib and staticlib"
        )
    })
}

/// A per-process scratch directory under the system temp dir, one per test binary (old ones of
/// dead processes are removed).
pub fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        let prefix = concat!("runllama-", env!("CARGO_CRATE_NAME"), "-");
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(pid) = name.strip_prefix(prefix) {
                    if pid.parse::<u32>().is_ok()
                        && !Path::new("/proc").join(pid).exists()
                        && Path::new("/proc/self").exists()
                    {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = tmp.join(format!("{prefix}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    })
}

pub fn run_cmd(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `o` succeeded and printed exactly `expected`.
pub fn assert_ok_with_stdout(o: &Output, expected: &[u8], what: &str) {
    assert!(o.status.success(), "{what}: failed\n{}", show(o));
    if o.stdout != expected {
        let common = o.stdout.iter().zip(expected).take_while(|(a, b)| a == b).count();
        panic!(
            "{what}: stdout differs from the expected {} bytes at byte {common} (got {} bytes)\n{}",
            expected.len(),
            o.stdout.len(),
            show(o)
        );
    }
}
