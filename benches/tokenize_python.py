#!/usr/bin/env python3
"""Encode throughput of the Python reference tokenizers on the texts of `benches/tokenize.rs`.

    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install sentencepiece tiktoken
    cargo bench --bench tokenize          # writes target/tokenize-bench/*.txt and our *.ids
    /tmp/tokvenv/bin/python benches/tokenize_python.py [--json out.json]

LLaMA 2: python `sentencepiece`, `SentencePieceProcessor.encode(text)` (what Meta's Llama 2
`Tokenizer.encode` calls). LLaMA 3: `tiktoken.Encoding` built from the tiktoken BPE file with
Meta's pattern and 256 special tokens exactly as Meta's `llama3/tokenizer.py` does, measured as
`encode(text, allowed_special=set(), disallowed_special=())` ("tiktoken"); the whole of Meta's
`Tokenizer.encode` (its 400,000 / 25,000-character splitting loop in Python, then tiktoken) is
printed too ("meta").

Each text is encoded in one call, single-threaded; after a warm-up the call is timed repeatedly
(at least --repeats times and --min-time seconds) and the median is reported in MB/s
(1 MB = 10^6 bytes of UTF-8 text). The ids are checked against ours (`<model>-<text>.ids`) when
that file exists, so that both sides are known to do the same work.
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["english", "chinese", "code"]

# Meta's llama3/tokenizer.py
LLAMA3_PAT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
NUM_RESERVED_SPECIAL_TOKENS = 256
TIKTOKEN_MAX_ENCODE_CHARS = 400_000
MAX_NO_WHITESPACES_CHARS = 25_000


def llama3_encoding(path):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    mergeable_ranks = load_tiktoken_bpe(path)
    num_base_tokens = len(mergeable_ranks)
    special_tokens = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|reserved_special_token_2|>",
        "<|reserved_special_token_3|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|reserved_special_token_4|>",
        "<|eot_id|>",  # end of turn
    ] + [f"<|reserved_special_token_{i}|>" for i in range(5, NUM_RESERVED_SPECIAL_TOKENS - 5)]
    special = {token: num_base_tokens + i for i, token in enumerate(special_tokens)}
    return tiktoken.Encoding(
        name=os.path.basename(path), pat_str=LLAMA3_PAT, mergeable_ranks=mergeable_ranks, special_tokens=special
    )


def _split_whitespaces_or_nonwhitespaces(s, max_consecutive_slice_len):
    # Meta's llama3/tokenizer.py, verbatim.
    current_slice_len = 0
    current_slice_is_space = s[0].isspace() if len(s) > 0 else False
    slice_start = 0
    for i in range(len(s)):
        is_now_space = s[i].isspace()
        if current_slice_is_space ^ is_now_space:
            current_slice_len = 1
            current_slice_is_space = is_now_space
        else:
            current_slice_len += 1
            if current_slice_len > max_consecutive_slice_len:
                yield s[slice_start:i]
                slice_start = i
                current_slice_len = 1
    yield s[slice_start:]


def meta_llama3_encode(enc, s):
    # Meta's Tokenizer.encode(s, bos=False, eos=False) with the default allowed/disallowed_special.
    substrs = (
        substr
        for i in range(0, len(s), TIKTOKEN_MAX_ENCODE_CHARS)
        for substr in _split_whitespaces_or_nonwhitespaces(s[i : i + TIKTOKEN_MAX_ENCODE_CHARS], MAX_NO_WHITESPACES_CHARS)
    )
    t = []
    for substr in substrs:
        t.extend(enc.encode(substr, allowed_special=set(), disallowed_special=()))
    return t


def measure(fn, text, repeats, min_time, warmup):
    """Median seconds of one call of fn(text)."""
    end = time.perf_counter() + warmup
    n = 0
    while n < 3 or time.perf_counter() < end:
        fn(text)
        n += 1
    times = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(times) < repeats or time.perf_counter() - start < min_time:
            t0 = time.perf_counter()
            fn(text)
            times.append(time.perf_counter() - t0)
    finally:
        if gc_was:
            gc.enable()
    return statistics.median(times), len(times)


def check_ids(bench_dir, model, name, ids):
    path = os.path.join(bench_dir, f"{model}-{name}.ids")
    if not os.path.exists(path):
        return "no ids file"
    with open(path) as f:
        ours = [int(x) for x in f.read().split()]
    if ours == ids:
        return "same ids"
    k = next((i for i, (a, b) in enumerate(zip(ours, ids)) if a != b), min(len(ours), len(ids)))
    return f"IDS DIFFER: ours {len(ours)} ids, python {len(ids)}, first difference at index {k}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "tokenize-bench"))
    ap.add_argument("--llama2", default=os.path.join(ROOT, "tests/data/tokenizers/llama2/tokenizer.model"))
    default3 = os.path.join(ROOT, "tests/data/tokenizers/llama3/tokenizer.model")
    if not os.path.exists(default3):
        default3 = "/work/shared/tokenizers/llama3/tokenizer.model"
    ap.add_argument("--llama3", default=os.environ.get("RUNLLAMA_LLAMA3_TOKENIZER", default3))
    ap.add_argument("--repeats", type=int, default=30, help="at least this many timed calls")
    ap.add_argument("--min-time", type=float, default=5.0, help="at least this many seconds of timed calls")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--only", help="MODEL/TEXT (e.g. llama3/english): just that text, every implementation of that model")
    args = ap.parse_args()

    texts = {}
    for name in TEXTS:
        path = os.path.join(args.dir, f"{name}.txt")
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run `cargo bench --bench tokenize` first (it writes the texts)")
        with open(path, "rb") as f:
            texts[name] = f.read().decode("utf-8")

    import sentencepiece as spm
    import tiktoken

    print(f"python {sys.version.split()[0]}, sentencepiece {spm.__version__}, tiktoken {tiktoken.__version__}")
    sp = spm.SentencePieceProcessor(model_file=args.llama2)
    enc = llama3_encoding(args.llama3)
    runs = [
        ("llama2", "sentencepiece", lambda s: sp.encode(s)),
        ("llama3", "tiktoken", lambda s: enc.encode(s, allowed_special=set(), disallowed_special=())),
        ("llama3", "meta", lambda s: meta_llama3_encode(enc, s)),
    ]
    results = []
    for model, impl, fn in runs:
        for name in TEXTS:
            if args.only and args.only != f"{model}/{name}":
                continue
            text = texts[name]
            nbytes = len(text.encode("utf-8"))
            ids = fn(text)
            check = check_ids(args.dir, model, name, ids)
            sec, n = measure(fn, text, args.repeats, args.min_time, args.warmup)
            mbps = nbytes / sec / 1e6
            print(
                f"{model:7} {impl:13} {name:8} {nbytes:7} bytes {len(ids):6} ids  median {sec * 1e3:8.3f} ms "
                f"over {n:4} calls  {mbps:8.2f} MB/s  ({check})",
                flush=True,
            )
            results.append(
                {"model": model, "impl": impl, "text": name, "bytes": nbytes, "ids": len(ids), "median_s": sec,
                 "calls": n, "mb_per_s": mbps, "ids_check": check}
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
