#!/usr/bin/env bash
# Windows check of runllama, on Linux: build runllama.dll for x86_64-pc-windows-gnu and run the
# C examples (and the C# one) against it under wine.
#
#   tests/windows/run.sh
#
# What it does:
#   1. Installs what is missing with apt-get (root): wine + wine64 (wine 8 in Debian 12), the
#      MinGW-w64 cross compiler (gcc-mingw-w64-x86-64-win32), and the run-time libraries of Debian's
#      rustc-web toolchain. If they cannot be had, prints "SKIPPED: ..." and exits 0 (only then).
#   2. A Rust toolchain with the Windows target: Debian's rustc-web / cargo-web / rust-web-src
#      (+ libstd-rust-web-*), `apt-get download`ed into the cache and unpacked with `dpkg -x` into a
#      private directory (nothing is installed over the system's rustup toolchain). Its sysroot
#      holds lib/rustlib/src/rust -> the std sources, which is where `-Zbuild-std` looks; of
#      rust-web-src only library/ is unpacked; std's own crates.io dependencies come from
#      crates.io through library/Cargo.lock.
#   3. `cargo rustc -Zbuild-std --target x86_64-pc-windows-gnu --release --lib --crate-type cdylib`
#      (RUSTC_BOOTSTRAP=1, linker x86_64-w64-mingw32-gcc; no debug info, stripped, thin LTO) into
#      target/windows/: runllama.dll and its import library librunllama.dll.a.
#   4. A one-function bcryptprimitives.dll (tests/windows/bcryptprimitives.c: ProcessPrng, which
#      Rust's std imports and wine 8 lacks), and the C examples, built with MinGW against
#      include/runllama.h and the DLL's import library, all in target/windows/bin/.
#   5. Under wine (temporary prefix, no display, no debug output, no Mono/Gecko prompts):
#      - api_test <data dir> exits 0;
#      - run_model with no arguments prints tests/data/stories260K/expected.txt + "\n", byte for byte;
#      - the same story with -M/-F in a directory named with non-ASCII characters, and with the
#        executable and the DLLs themselves in that directory;
#      - unload_test <runllama.dll> <data dir> 10 (LoadLibraryW / FreeLibrary cycles) exits 0;
#      - C#: examples-c/csharp/Chat.cs and BindingTest.cs, each compiled with include/RunLlama.cs
#        by Mono's mcs, on a Windows .NET Core 3.1 runtime (PyPI's dotnetcore2 wheel for
#        win_amd64): Chat prints the same story (also from the non-ASCII directory), BindingTest
#        passes. Skipped with a "SKIPPED (C# ...)" note when mcs or the runtime cannot be had.
#
# Environment:
#   RUNLLAMA_WIN_CACHE   where the .debs, the unpacked toolchain and the .NET runtime are kept
#                        (default target/windows/cache)
#   RUNLLAMA_WIN_KEEP=1  keep the temporary directory (wine prefix, outputs) and say where it is
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

T_START=$SECONDS
TARGET=x86_64-pc-windows-gnu
WIN_DIR=$ROOT/target/windows
CACHE=${RUNLLAMA_WIN_CACHE:-$WIN_DIR/cache}
BIN=$WIN_DIR/bin
DATA=$ROOT/tests/data/stories260K
RUST_WEB_PKGS=(rustc-web cargo-web rust-web-src libstd-rust-web-dev)

say() { echo "tests/windows: $*"; }
phase() { say "[$((SECONDS - T_START)) s] $*"; }
fail() {
  echo "tests/windows: FAILED: $*" >&2
  exit 1
}
skip() {
  echo "SKIPPED: tests/windows/run.sh: $*"
  exit 0
}

# --- 1. Debian packages ---------------------------------------------------------------------
apt_updated=0
apt_get() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  if [ $apt_updated = 0 ]; then
    # Not fatal: one unreachable third-party source fails the update, not Debian's packages.
    apt-get update -qq >/dev/null 2>&1 || true
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get "$@"
}
apt_install() {
  say "installing $*"
  apt_get install -y -qq --no-install-recommends "$@" >/dev/null
}
installed() { [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]; }

command -v dpkg-deb >/dev/null 2>&1 || skip "dpkg-deb is not available (this script needs Debian's packages)"
need=()
[ -x /usr/lib/wine/wine64 ] && command -v wine >/dev/null 2>&1 || need+=(wine wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64-win32) # the win32-thread variant alone
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}" || skip "could not install ${need[*]} with apt-get"
fi
command -v wine >/dev/null 2>&1 && command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 ||
  skip "wine or x86_64-w64-mingw32-gcc missing after installation"

# --- 2. the rustc-web toolchain, unpacked privately ------------------------------------------
deb_of() { # the cached .deb of package $1 (newest if several), or nothing
  local f
  f=$(ls -1 "$CACHE/debs/$1"_*.deb 2>/dev/null | sort -V | tail -n 1) || true
  printf '%s' "$f"
}
mkdir -p "$CACHE/debs"
missing=()
for p in "${RUST_WEB_PKGS[@]}"; do [ -n "$(deb_of "$p")" ] || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "downloading ${missing[*]}"
  (cd "$CACHE/debs" && apt_get download "${missing[@]}" >"$CACHE/debs/download.log" 2>&1) || {
    cat "$CACHE/debs/download.log" >&2
    skip "could not apt-get download ${missing[*]} (Debian's rustc-web toolchain)"
  }
fi
# libstd-rust-web-dev depends on the versioned libstd-rust-web-X.Y that holds the compiler's libraries.
libstd=$(dpkg-deb -f "$(deb_of libstd-rust-web-dev)" Depends | tr ',' '\n' | sed -n 's/^ *\(libstd-rust-web-[0-9.]*\).*/\1/p' | head -n 1)
[ -n "$libstd" ] || fail "cannot read libstd-rust-web-dev's dependency on libstd-rust-web-X.Y"
if [ -z "$(deb_of "$libstd")" ]; then
  say "downloading $libstd"
  (cd "$CACHE/debs" && apt_get download "$libstd" >"$CACHE/debs/download.log" 2>&1) || {
    cat "$CACHE/debs/download.log" >&2
    skip "could not apt-get download $libstd"
  }
fi
DEBS=()
for p in "${RUST_WEB_PKGS[@]}" "$libstd"; do DEBS+=("$(deb_of "$p")"); done

# The run-time libraries the compiler and cargo link to (libLLVM, libgit2, ...): install the
# missing ones (system libraries only; the toolchain itself stays private).
libs=()
for d in "$(deb_of "$libstd")" "$(deb_of cargo-web)" "$(deb_of rustc-web)"; do
  while read -r dep; do
    name=${dep%% *}
    case "$name" in
      lib*-web* | libc-dev | "") ;;
      lib*) installed "$name" || libs+=("$name") ;;
    esac
  done < <(dpkg-deb -f "$d" Depends | tr ',' '\n' | sed 's/|.*//; s/^ *//')
done
if [ ${#libs[@]} -gt 0 ]; then
  apt_install "${libs[@]}" || skip "could not install ${libs[*]} (needed by rustc-web) with apt-get"
fi

version=$(dpkg-deb -f "$(deb_of rustc-web)" Version)
TC=$CACHE/rust-web-$version
if [ ! -e "$TC/.unpacked" ]; then
  phase "unpacking rustc-web $version into $TC"
  rm -rf "$TC"
  mkdir -p "$TC"
  src_deb=$(deb_of rust-web-src)
  for d in "${DEBS[@]}"; do
    if [ "$d" = "$src_deb" ]; then
      # Of the whole compiler source (~430 MB unpacked) -Zbuild-std reads only library/ (std's
      # crates, their vendored dependencies, library/Cargo.lock: ~60 MB) through the sysroot's
      # lib/rustlib/src/rust link.
      dpkg-deb --fsys-tarfile "$d" | tar -x -C "$TC" --wildcards \
        './usr/lib/rustlib/src/*' './usr/src/rustc-*/library/*' ||
        fail "unpacking the std sources from $d"
    else
      dpkg-deb -x "$d" "$TC"
    fi
  done
  touch "$TC/.unpacked"
fi
RW=$TC/usr
[ -d "$RW/lib/rustlib/src/rust/library/std" ] || fail "no std sources at $RW/lib/rustlib/src/rust/library (rust-web-src)"
rw_env=(env -u RUSTC_WRAPPER -u RUSTFLAGS -u CARGO_BUILD_TARGET -u CARGO_BUILD_RUSTFLAGS
  "LD_LIBRARY_PATH=$RW/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  "RUSTC=$RW/bin/rustc" "RUSTDOC=$RW/bin/rustdoc")
rustc_version=$("${rw_env[@]}" "$RW/bin/rustc" --version) || fail "the unpacked rustc-web does not run: $RW/bin/rustc"

# --- 3. runllama.dll -------------------------------------------------------------------------
# Only the cdylib (`cargo rustc --crate-type cdylib`): with the rlib and staticlib of Cargo.toml's
# crate-type in the same build, cargo drops -C lto, and without LTO the DLL keeps code nothing
# calls (tiktoken-rs's four bundled OpenAI vocabularies among it): 11.4 MB instead of 3.6.
phase "building runllama.dll with $rustc_version ($TARGET, release, thin LTO, stripped)"
"${rw_env[@]}" RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$WIN_DIR" \
  CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
  "$RW/bin/cargo" rustc -Zbuild-std --target $TARGET --release --lib --crate-type cdylib \
  --config 'profile.release.debug=false' --config 'profile.release.strip=true' --config 'profile.release.lto="thin"' ||
  fail "cargo rustc -Zbuild-std --target $TARGET --crate-type cdylib failed"
OUT=$WIN_DIR/$TARGET/release
[ -f "$OUT/runllama.dll" ] && [ -f "$OUT/librunllama.dll.a" ] || fail "no runllama.dll / librunllama.dll.a in $OUT"
say "runllama.dll: $(stat -c %s "$OUT/runllama.dll") bytes"

# --- 4. the programs ---------------------------------------------------------------------------
phase "building the C programs with $(x86_64-w64-mingw32-gcc -dumpversion) (MinGW-w64)"
rm -rf "$BIN"
mkdir -p "$BIN"
cp "$OUT/runllama.dll" "$BIN/"
WARN=(-Wall -Wextra -Werror -pedantic)
x86_64-w64-mingw32-gcc -std=c99 "${WARN[@]}" -O2 -shared -o "$BIN/bcryptprimitives.dll" \
  tests/windows/bcryptprimitives.c -ladvapi32 || fail "building bcryptprimitives.dll"
win_path() { # absolute unix path -> the same file through wine's Z: drive
  printf 'Z:%s' "${1//\//\\}"
}
data_win=$(win_path "$DATA")
progs=(api_test run_model)
[ -f examples-c/unload_test.c ] && progs+=(unload_test)
for p in "${progs[@]}"; do
  x86_64-w64-mingw32-gcc -std=c99 "${WARN[@]}" -O2 -Iinclude -DRUNLLAMA_DATA_DIR="\"${data_win//\\//}\"" \
    "examples-c/$p.c" -o "$BIN/$p.exe" "$OUT/librunllama.dll.a" || fail "building $p.exe with MinGW"
done
if command -v x86_64-w64-mingw32-g++ >/dev/null 2>&1; then
  for f in examples-c/*.c; do
    x86_64-w64-mingw32-g++ -x c++ "${WARN[@]}" -Iinclude -fsyntax-only "$f" || fail "$f does not compile as C++ with MinGW"
  done
fi

# --- 5. under wine -----------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/runllama-windows.XXXXXX")
cleanup() {
  WINEPREFIX=$TMP/prefix wineserver -k >/dev/null 2>&1 || true
  if [ "${RUNLLAMA_WIN_KEEP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
unset DISPLAY WAYLAND_DISPLAY
export WINEPREFIX=$TMP/prefix WINEARCH=win64 WINEDEBUG=-all
# No Mono / Gecko install prompts, no debugger on a crash (the process just fails).
export WINEDLLOVERRIDES='mscoree,mshtml,winedbg.exe=d'
# Wine turns the Unix command line into UTF-16 by the locale's charset: make it UTF-8.
export LC_ALL=C.UTF-8
phase "creating a wine prefix ($(wine --version))"
wine wineboot -i >"$TMP/wineboot.log" 2>&1 || {
  cat "$TMP/wineboot.log" >&2
  fail "wineboot"
}

passed=0
expected=$TMP/expected.txt
{
  cat "$DATA/expected.txt"
  printf '\n'
} >"$expected"
run_wine() { # run_wine <name> <stdout file> <exe> [args]: wine with a time limit, stderr to <name>.err
  local name=$1 out=$2
  shift 2
  timeout 300 wine "$@" >"$out" 2>"$TMP/$name.err"
}
check_story() { # check_story <name> <stdout file>
  if ! cmp -s "$expected" "$2"; then
    echo "--- stdout (first bytes that differ):" >&2
    cmp "$expected" "$2" >&2 || true
    echo "--- its last 64 bytes:" >&2
    tail -c 64 "$2" | od -c >&2
    echo "--- stderr:" >&2
    cat "$TMP/$1.err" >&2
    fail "$1: stdout is not tests/data/stories260K/expected.txt + \"\\n\" (CRLF would mean stdout is not binary)"
  fi
}
ok() {
  passed=$((passed + 1))
  phase "ok: $*"
}

# 1. api_test
if ! run_wine api_test "$TMP/api_test.out" "$BIN/api_test.exe" "$data_win" "$(win_path "$TMP")"; then
  cat "$TMP/api_test.out" "$TMP/api_test.err" >&2
  fail "api_test.exe under wine"
fi
ok "api_test: $(tail -n 1 "$TMP/api_test.out")"

# 2. run_model, no arguments: the bundled model, found through the compiled-in data dir.
(cd "$TMP" && run_wine run_model "$TMP/run_model.out" "$BIN/run_model.exe") || {
  cat "$TMP/run_model.err" >&2
  fail "run_model.exe (no arguments) under wine"
}
check_story run_model "$TMP/run_model.out"
ok "run_model (no arguments) printed the reference story"

# 3. a non-ASCII directory: the model there, then the program and the DLLs there too.
UDIR="$TMP/模型 ü"
mkdir -p "$UDIR"
cp "$DATA/stories260K.bin" "$DATA/tok512.bin" "$UDIR/"
u_args=(-M "$(win_path "$UDIR")\\stories260K.bin" -F "$(win_path "$UDIR")\\tok512.bin")
run_wine run_model_utf8 "$TMP/run_model_utf8.out" "$BIN/run_model.exe" "${u_args[@]}" || {
  cat "$TMP/run_model_utf8.err" >&2
  fail "run_model.exe -M/-F in \"模型 ü\" under wine (the examples need rl_utf8_argv from common.h)"
}
check_story run_model_utf8 "$TMP/run_model_utf8.out"
cp "$BIN/run_model.exe" "$BIN/runllama.dll" "$BIN/bcryptprimitives.dll" "$UDIR/"
run_wine run_model_utf8_exe "$TMP/run_model_utf8_exe.out" "$UDIR/run_model.exe" "${u_args[@]}" || {
  cat "$TMP/run_model_utf8_exe.err" >&2
  fail "run_model.exe in \"模型 ü\" under wine"
}
check_story run_model_utf8_exe "$TMP/run_model_utf8_exe.out"
ok "run_model with the model, and then the program and DLLs, in \"模型 ü\": the reference story"

# 4. load / step / free / unload cycles.
if [ -f "$BIN/unload_test.exe" ]; then
  run_wine unload_test "$TMP/unload_test.out" "$BIN/unload_test.exe" "$(win_path "$BIN")\\runllama.dll" "$data_win" 10 || {
    cat "$TMP/unload_test.out" "$TMP/unload_test.err" >&2
    fail "unload_test.exe (10 LoadLibraryW/FreeLibrary cycles) under wine"
  }
  ok "unload_test: 10 load/step/free/unload cycles"
else
  fail "examples-c/unload_test.c is missing"
fi

# 5. C#: Chat.exe and BindingTest.exe (Mono's mcs, the flags of examples-c/csharp/Makefile) on the
# Windows .NET Core runtime. Each is one assembly with include/RunLlama.cs compiled in: a separate
# managed RunLlama.dll cannot sit beside the native runllama.dll on Windows (file names are
# case-insensitive there; DllImport("runllama") would find the managed one).
csharp_skip() {
  echo "SKIPPED (C# under wine only): $*"
}
csharp() {
  local dn=$CACHE/dotnet whl app=$TMP/csharp dotnet exe
  local mcs_flags=(-langversion:7.2 -warn:4 -warnaserror+ -nologo -r:System.Core.dll)
  [ -f examples-c/csharp/Chat.cs ] && [ -f include/RunLlama.cs ] || {
    csharp_skip "no examples-c/csharp/Chat.cs or include/RunLlama.cs"
    return 0
  }
  command -v mcs >/dev/null 2>&1 || apt_install mono-mcs || true
  command -v mcs >/dev/null 2>&1 || {
    csharp_skip "no mcs (Debian package mono-mcs)"
    return 0
  }
  if [ ! -f "$dn/root/dotnetcore2/bin/dotnet.exe" ]; then
    mkdir -p "$dn"
    whl=$(ls -1 "$dn"/dotnetcore2-*-win_amd64.whl 2>/dev/null | tail -n 1) || true
    if [ -z "$whl" ]; then
      say "downloading the .NET Core 3.1 runtime for Windows (PyPI: dotnetcore2, win_amd64)"
      python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --platform win_amd64 -d "$dn" 'dotnetcore2==3.1.23' >/dev/null 2>&1 || {
        csharp_skip "could not pip download dotnetcore2 (win_amd64)"
        return 0
      }
      whl=$(ls -1 "$dn"/dotnetcore2-*-win_amd64.whl | tail -n 1)
    fi
    rm -rf "$dn/root"
    python3 -m zipfile -e "$whl" "$dn/root" || fail "unpacking $whl"
  fi
  dotnet=$dn/root/dotnetcore2/bin/dotnet.exe
  mkdir -p "$app"
  cp "$BIN/runllama.dll" "$BIN/bcryptprimitives.dll" "$app/"
  for exe in Chat BindingTest; do
    [ -f "examples-c/csharp/$exe.cs" ] || continue
    mcs "${mcs_flags[@]}" -out:"$app/$exe.exe" "examples-c/csharp/$exe.cs" include/RunLlama.cs >"$TMP/mcs.log" 2>&1 || {
      cat "$TMP/mcs.log" >&2
      fail "mcs $exe.cs RunLlama.cs"
    }
    # The Mono-built assembly runs on .NET Core: its mscorlib / System.Core facades forward the types.
    printf '%s\n' '{"runtimeOptions":{"tfm":"netcoreapp3.1","framework":{"name":"Microsoft.NETCore.App","version":"3.1.0"}}}' \
      >"$app/$exe.runtimeconfig.json"
  done
  (cd "$ROOT" && run_wine csharp "$TMP/csharp.out" "$dotnet" "$(win_path "$app")\\Chat.exe") || {
    cat "$TMP/csharp.out" "$TMP/csharp.err" >&2
    fail "dotnet.exe Chat.exe under wine"
  }
  check_story csharp "$TMP/csharp.out"
  run_wine csharp_utf8 "$TMP/csharp_utf8.out" "$dotnet" "$(win_path "$app")\\Chat.exe" "${u_args[@]}" || {
    cat "$TMP/csharp_utf8.out" "$TMP/csharp_utf8.err" >&2
    fail "dotnet.exe Chat.exe -M/-F in \"模型 ü\" under wine"
  }
  check_story csharp_utf8 "$TMP/csharp_utf8.out"
  ok "C# Chat.exe on .NET Core $(ls "$dn/root/dotnetcore2/bin/shared/Microsoft.NETCore.App" | head -n 1) (Windows) under wine: the reference story, also from \"模型 ü\""
  if [ -f "$app/BindingTest.exe" ]; then
    mkdir -p "$TMP/scratch"
    run_wine bindingtest "$TMP/bindingtest.out" "$dotnet" "$(win_path "$app")\\BindingTest.exe" \
      "$(win_path "$ROOT/tests/data")" "$(win_path "$TMP/scratch")" || {
      grep -v '^PASS ' "$TMP/bindingtest.out" >&2 || true
      cat "$TMP/bindingtest.err" >&2
      fail "dotnet.exe BindingTest.exe under wine"
    }
    ok "C# BindingTest.exe on .NET Core (Windows) under wine: $(grep -c '^PASS ' "$TMP/bindingtest.out") checks passed"
  fi
}
csharp

phase "done"
echo "tests/windows: $passed passed, 0 failed"
