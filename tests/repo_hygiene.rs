//! Rules for what the repository's own files say.

use std::path::Path;
use std::process::Command;

/// No tracked file names a package registry's web address (say "from PyPI", not where).
#[test]
fn no_file_names_a_package_registry_address() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listed = Command::new("git").arg("-C").arg(root).args(["ls-files", "-z"]).output();
    let files: Vec<String> = match listed {
        Ok(o) if o.status.success() => {
            String::from_utf8_lossy(&o.stdout).split('\0').filter(|f| !f.is_empty()).map(str::to_string).collect()
        }
        // Not a git checkout (a source tarball): nothing to check against.
        _ => return,
    };
    // Spelled in pieces so that this file does not match itself.
    let hosts: Vec<String> = [
        ["pypi", ".org"],
        ["pythonhosted", ".org"],
        ["//crates", ".io"],
        ["crates", ".io/"],
        ["npmjs", ".org"],
        ["npmjs", ".com"],
        ["deb.debian", ".org"],
        ["nuget", ".org"],
    ]
    .iter()
    .map(|p| p.concat())
    .collect();
    let mut found = Vec::new();
    for f in &files {
        let Ok(bytes) = std::fs::read(root.join(f)) else { continue };
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        for h in &hosts {
            if text.contains(h.as_str()) {
                found.push(format!("{f}: {h}"));
            }
        }
    }
    assert!(found.is_empty(), "files name a package registry's address: {found:?}");
}
