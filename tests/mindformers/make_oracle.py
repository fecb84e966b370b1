#!/usr/bin/env python3
"""The MindFormers yaml corpus and its PyYAML oracle for tests/mindformers_yamls.rs.

Usage: make_oracle.py MINDFORMERS_GIT_DIR OUT_DIR
Writes OUT_DIR/files/ (every *.yaml of every branch and tag, one copy per distinct content;
names are the path with '/' as '__', prefixed with the commit for files not on HEAD),
OUT_DIR/sources.tsv and OUT_DIR/oracle.jsonl: per file what yaml.SafeLoader (what MindFormers
uses) reads for the keys runllama reads, and the mapping keys given twice.
Then: RUNLLAMA_MF_CORPUS=OUT_DIR cargo test --test mindformers_yamls -- --ignored
(RUNLLAMA_MF_ALL=1 to check every config, not only the LLaMA family).
Development only (needs PyYAML and git); nothing here runs in CI.
"""
import json, math, os, re, subprocess, sys

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

KEYS = ["type", "hidden_size", "num_layers", "num_heads", "n_kv_heads", "vocab_size",
        "intermediate_size", "multiple_of", "ffn_dim_multiplier", "rms_norm_eps", "theta",
        "seq_length", "max_position_embedding", "bos_token_id", "eos_token_id", "pad_token_id",
        "tie_word_embeddings", "qkv_concat", "extend_method", "scaling_factor"]


def git(gd, *args):
    return subprocess.run(["git", "--git-dir", gd, *args], capture_output=True, check=True).stdout


def jsonable(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return repr(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return repr(v)


def duplicates(node, path, out):
    if isinstance(node, MappingNode):
        seen = set()
        for k, v in node.value:
            key = k.value if isinstance(k, ScalarNode) else repr(k)
            if key in seen:
                out.append(path + [key])
            seen.add(key)
            duplicates(v, path + [key], out)
    elif isinstance(node, SequenceNode):
        for i, v in enumerate(node.value):
            duplicates(v, path + [i], out)


def get(d, *keys):
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def main(gd, out):
    os.makedirs(os.path.join(out, "files"), exist_ok=True)
    head = git(gd, "rev-parse", "HEAD").decode().strip()
    refs = [head] + git(gd, "for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags").decode().split()
    seen = {}
    for ref in refs:
        commit = git(gd, "rev-parse", ref + "^{commit}").decode().strip()
        for line in git(gd, "ls-tree", "-r", commit).decode().splitlines():
            meta, path = line.split("\t", 1)
            _, kind, blob = meta.split()
            if kind == "blob" and re.search(r"\.ya?ml$", path, re.I) and blob not in seen:
                flat = path.replace("/", "__")
                name = flat if commit == head else f"{commit[:9]}__{flat}"
                seen[blob] = (name, commit, path)
                with open(os.path.join(out, "files", name), "wb") as f:
                    f.write(git(gd, "cat-file", "blob", blob))
    with open(os.path.join(out, "sources.tsv"), "w") as src, open(os.path.join(out, "oracle.jsonl"), "w") as orc:
        src.write("file\tcommit\tpath\tgit_blob\n")
        for blob, (name, commit, path) in sorted(seen.items(), key=lambda x: x[1][0]):
            src.write(f"{name}\t{commit}\t{path}\t{blob}\n")
            raw = open(os.path.join(out, "files", name), "rb").read()
            rec = {"file": name, "ok": False, "has_model_config": False, "model_config": {}, "duplicate_keys": []}
            try:
                doc = yaml.load(raw, Loader=yaml.SafeLoader)
                node = yaml.compose(raw, Loader=yaml.SafeLoader)
                rec["ok"] = True
            except yaml.YAMLError as e:
                rec["error"] = str(e)
                doc = node = None
            duplicates(node, [], rec["duplicate_keys"])
            mc = get(doc, "model", "model_config")
            if isinstance(mc, dict):
                rec["has_model_config"] = True
                rec["model_config"] = {k: jsonable(mc[k]) for k in KEYS if k in mc}
            for key, path in [("arch_type", ("model", "arch", "type")),
                              ("tokenizer_type", ("processor", "tokenizer", "type")),
                              ("tokenizer_vocab_file", ("processor", "tokenizer", "vocab_file"))]:
                if get(doc, *path) is not None:
                    rec[key] = jsonable(get(doc, *path))
            orc.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(len(seen), "yaml files from", len(refs), "refs")


if __name__ == "__main__":
    main(*sys.argv[1:3])
