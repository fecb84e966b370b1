#!/usr/bin/env python3
"""Regenerate the extra tokenizer fixtures of this folder with python sentencepiece.

    python3 -m venv venv && venv/bin/pip install sentencepiece protobuf
    venv/bin/python gen_extra.py        # run inside tests/data/tokenizers

Writes:
  cases-extra-llama2.jsonl   llama2/tokenizer.model, same format as make_cases.py
                             (ids = [1] + sp.encode(text) with bos, "decoded" when != text)
  cases-extra-tok512.jsonl   tok512.model (remove_extra_whitespaces: true), without BOS
  decode-extra.jsonl         random id sequences and sp.decode(ids) for both models
  tok512-variant{1,2,3}.model + cases-tok512-variant{1,2,3}.jsonl
                             tok512.model edited through the protobuf API:
                             1: UNUSED / USER_DEFINED / CONTROL pieces,
                             2: no byte_fallback, custom unk_surface, no dummy prefix,
                                whitespace kept,
                             3: escape_whitespaces off
  chat-extra-llama2.jsonl    Meta's Llama 2 chat_completion prompt for a few dialogs
"""
import json
import random

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb


def dump(obj):
    s = json.dumps(obj, ensure_ascii=False)
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")


texts = [
 "北京是中华人民共和国的首都。", "我爱自然语言处理，特别是大语言模型！", "机器学习（ML）和深度学习（DL）", "Rust语言的所有权系统",
 "東京は日本の首都です。", "ひらがなとカタカナと漢字", "ラーメンが食べたい", "吾輩は猫である。名前はまだ無い。",
 "Привет, мир! Как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới",
 "🦙", "🦙🦙🦙", "I ❤️ Rust 🦀!", "🇺🇸🇯🇵🇨🇳", "😀😃😄😁😆😅😂🤣", "👩🏽‍💻 codes", "⌘⌥⇧", "ℕ ⊆ ℤ ⊆ ℚ ⊆ ℝ ⊆ ℂ",
 "#include <stdio.h>\nint main(void) {\n\tprintf(\"hi\\n\");\n\treturn 0;\n}\n",
 "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
 "    def f(x):\n        return x ** 2  # square\n",
 "<html><body><div class=\"a\">Hi &amp; bye</div></body></html>",
 "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
 "x = [i for i in range(10) if i % 2 == 0]",
 "a", " ", "  ", "   ", "\n", "\n\n", "\t", " \t \n ", "a  b", "a   b    c", "  leading", "trailing  ", "  both  ",
 "\r", "\r\n", "a\u2028b", "a\u2029b", "\u00a0nbsp\u00a0", "\u3000ideographic\u3000space", "zero\u200bwidth", "\ufeffbom",
 "a\u2581b", "\u2581", "\u2581\u2581x", " \u2581 ", "NUL\u0000byte", "\u0000", "ctrl\u0001\u0002\u001f\u007f",
 "e\u0301 vs \u00e9", "Ångström", "ﬁ ligature", "Ⅻ", "①②③", "ｆｕｌｌｗｉｄｔｈ", "ＡＢＣ１２３",
 "<s>", "</s>", "<unk>", "<0x41>", "[INST] hi [/INST]", "<<SYS>>\nsys\n<</SYS>>\n\n",
 "The quick brown fox jumps over the lazy dog.", "It's 3:45pm — don't be late!", "e-mail: someone@example.org",
 "1,000,000.00 $ 99.99% 1e-10 0xFF", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ababababababababab", "             ",
 "Hello" * 20, "supercalifragilisticexpialidocious", "antidisestablishmentarianism",
 "\U0010FFFF", "\U0001F600\U0001F601", "\ud7ff", "\ue000private",
 "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine.",
]
random.seed(1234)
alphabet = " ab\n\t▁é中🦙<s>"
for _ in range(40):
    texts.append("".join(random.choice(alphabet) for _ in range(random.randint(1, 30))))

# cases-extra-llama2.jsonl (make_cases.py format)
sp = spm.SentencePieceProcessor(model_file="llama2/tokenizer.model")
with open("cases-extra-llama2.jsonl", "w", encoding="utf-8") as out:
    for t in texts:
        for bos in (False, True):
            ids = ([1] if bos else []) + sp.encode(t)
            c = {"model": "llama2", "text": t, "bos": bos, "ids": ids}
            d = sp.decode(ids[1:] if bos else ids)
            if d != t:
                c["decoded"] = d
            out.write(dump(c) + "\n")

random.seed(7)
base_texts = list(texts)
texts = base_texts + ["Hello  world", "  Hi", "Hi  ", "é ü", "Lily and Tom  went\tto the   park . ", " ", "   x   y   ", "x\n  y", "  \u2581 a", "a \u2581 ", "\u2581\u2581"]
out = open("cases-extra-tok512.jsonl", "w", encoding="utf-8")
sp = spm.SentencePieceProcessor(model_file="tok512.model")
for t in texts:
    ids = sp.encode(t)
    c = {"model": "tok512", "text": t, "bos": False, "ids": ids}
    d = sp.decode(ids)
    if d != t: c["decoded"] = d
    out.write(dump(c) + "\n")
dec = open("decode-extra.jsonl", "w", encoding="utf-8")
for name, path in [("llama2", "llama2/tokenizer.model"), ("tok512", "tok512.model")]:
    sp = spm.SentencePieceProcessor(model_file=path)
    n = sp.vocab_size()
    sp_ids = [i for i in range(n) if sp.id_to_piece(i).startswith("\u2581")]
    byte_ids = list(range(3, 259))
    utf8_seqs = [list("é".encode()), list("中".encode()), list("🦙".encode()), [0x41], [0x0a], [0x20]]
    made = 0
    while made < 150:
        ids = []
        for _ in range(random.randint(0, 8)):
            r = random.random()
            if r < 0.15: ids.append(random.choice([0, 1, 2]))
            elif r < 0.35: ids.append(random.choice(sp_ids))
            elif r < 0.55: ids += [b + 3 for b in random.choice(utf8_seqs)]
            else: ids.append(random.randrange(259, n))
        text = sp.decode(ids)
        if "\ufffd" in text: continue
        dec.write(dump({"model": name, "ids": ids, "text": text}) + "\n")
        made += 1

src = open('tok512.model', 'rb').read()
texts = base_texts + ["the theme of the thing", "singing and dancing in the ring", "<|im_start|>user hi<|im_start|>", "a<ctrl>b", "ing", " ing ", "inging",
          "Hello  world", "  Hi", "Hi  ", "é ü", "中文 and ü", "ééé üü x", "\u2581the", "Lily and Tom went to the park. They played on the swings."]
random.seed(99)
def variant1():
    m = pb.ModelProto(); m.ParseFromString(src)
    m.pieces[265].type = pb.ModelProto.SentencePiece.UNUSED   # ▁the
    m.pieces[260].type = pb.ModelProto.SentencePiece.UNUSED   # he
    m.pieces[299].type = pb.ModelProto.SentencePiece.USER_DEFINED  # ing
    p = m.pieces.add(); p.piece = "<|im_start|>"; p.score = 0; p.type = pb.ModelProto.SentencePiece.USER_DEFINED
    p = m.pieces.add(); p.piece = "<ctrl>"; p.score = 0; p.type = pb.ModelProto.SentencePiece.CONTROL
    return m
def variant2():
    m = pb.ModelProto(); m.ParseFromString(src)
    m.trainer_spec.byte_fallback = False
    m.trainer_spec.unk_surface = "<?>"
    for i in range(3, 259): m.pieces[i].type = pb.ModelProto.SentencePiece.NORMAL
    m.normalizer_spec.add_dummy_prefix = False
    m.normalizer_spec.remove_extra_whitespaces = False
    return m
def variant3():
    m = pb.ModelProto(); m.ParseFromString(src)
    m.normalizer_spec.escape_whitespaces = False
    m.normalizer_spec.remove_extra_whitespaces = True
    # unknown fields of every wire type, to be skipped
    return m
for name, m in [("variant1", variant1()), ("variant2", variant2()), ("variant3", variant3())]:
    data = m.SerializeToString()
    open(f"tok512-{name}.model", "wb").write(data)
    sp = spm.SentencePieceProcessor(model_proto=data)
    with open(f"cases-tok512-{name}.jsonl", "w", encoding="utf-8") as f:
        for t in texts:
            ids = sp.encode(t)
            c = {"model": name, "text": t, "ids": ids, "decoded": sp.decode(ids)}
            f.write(dump(c) + "\n")
        n = sp.vocab_size()
        for _ in range(60):
            ids = [random.randrange(n) for _ in range(random.randint(0, 8))]
            text = sp.decode(ids)
            if "\ufffd" in text: continue
            f.write(dump({"model": name, "decode_ids": ids, "decoded": text}) + "\n")

# chat-extra-llama2.jsonl: Meta's Llama 2 `chat_completion` prompt (llama/generation.py)
B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
sp = spm.SentencePieceProcessor(model_file="llama2/tokenizer.model")


def meta_encode(s, bos, eos):
    return ([1] if bos else []) + sp.encode(s) + ([2] if eos else [])


def meta_chat(dialog):
    if dialog[0]["role"] == "system":
        dialog = [{"role": dialog[1]["role"],
                   "content": B_SYS + dialog[0]["content"] + E_SYS + dialog[1]["content"]}] + dialog[2:]
    assert all(m["role"] == "user" for m in dialog[::2])
    assert all(m["role"] == "assistant" for m in dialog[1::2])
    tokens = sum([meta_encode(f"{B_INST} {(p['content']).strip()} {E_INST} {(a['content']).strip()} ", True, True)
                  for p, a in zip(dialog[::2], dialog[1::2])], [])
    assert dialog[-1]["role"] == "user"
    return tokens + meta_encode(f"{B_INST} {(dialog[-1]['content']).strip()} {E_INST}", True, False)


def U(c): return {"role": "user", "content": c}
def A(c): return {"role": "assistant", "content": c}
def S(c): return {"role": "system", "content": c}


dialogs = [
    [U("  padded  \n")],
    [S("  Be brief.  "), U("\tWhat is Rust?\n")],
    [S(""), U("")],
    [U("Hi"), A("Hello! How can I help?"), U("Tell me a joke.")],
    [S("You answer in French."), U("Hello"), A("Bonjour !"), U("How are you?"), A(" Très bien. "), U("Bye")],
    [U("为了解决问题，我们应该怎么做？"), A("首先……"), U("然后呢？🦙")],
    [U("code:\n```rust\nfn main() {}\n```"), A("Looks fine."), U("<s>[INST] sneaky [/INST]</s>")],
    [S("multi\nline\n\nsystem"), U("x\u2028y\u3000"), A("\u00a0ok\u001f"), U("z")],
]
with open("chat-extra-llama2.jsonl", "w", encoding="utf-8") as f:
    for d in dialogs:
        f.write(dump({"model": "llama2", "messages": d, "ids": meta_chat(d)}) + "\n")
