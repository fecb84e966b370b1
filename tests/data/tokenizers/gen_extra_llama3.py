#!/usr/bin/env python3
"""Regenerate the LLaMA 3 fixtures of this folder with python tiktoken, through the project's
make_cases.py (Meta's Llama 3 Tokenizer.encode reproduced: tiktoken + Meta's 400,000 / 25,000
character slicing).

    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install sentencepiece tiktoken
    /tmp/tokvenv/bin/python gen_extra_llama3.py [--make-cases PATH/make_cases.py]
    # run inside tests/data/tokenizers; make_cases.py defaults to /work/shared/tokenizers/

Writes:
  cases-extra-llama3.jsonl    encode cases in make_cases.py format ("model": "llama3", with and
                              without BOS; "special": true lines parse special-token text);
                              "category" says what each text exercises
  hostile-llama3.jsonl        long hostile inputs (1,000,000 and 200,000 characters), described
                              by a recipe the Rust test rebuilds, with the number of ids, the
                              first/last 16 ids and an FNV-1a 64 checksum of all ids (u32 LE)
"""
import argparse
import importlib.util
import json
import random

ap = argparse.ArgumentParser()
ap.add_argument("--make-cases", default="/work/shared/tokenizers/make_cases.py")
ap.add_argument("--llama3", default="llama3/tokenizer.model")
a = ap.parse_args()
spec = importlib.util.spec_from_file_location("make_cases", a.make_cases)
mc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mc)
tok = mc.Llama3(a.llama3, "3.0")

cases = []  # (category, text)


def add(category, *texts):
    for t in texts:
        cases.append((category, t))


add("chinese",
    "为了解决广大人民群众玩不了大模型推理的根本问题",
    "北京是中华人民共和国的首都。", "我爱自然语言处理，特别是大语言模型！",
    "机器学习（ML）和深度学习（DL）是人工智能的重要分支。", "Rust语言的所有权系统保证了内存安全。",
    "今天天气很好，我们去公园散步吧。", "他说：“你好！”然后就走了……", "《红楼梦》是中国古典四大名著之一。",
    "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？", "一二三四五六七八九十百千万亿",
    "价格：¥1,299.00元（含税）", "第1章 第２節 第三回", "中文English混合text测试123",
    "请用中文回答：什么是大语言模型？", "繁體中文與簡體中文的區別", "龘靐齉齾爩鱻麤龗灪",
    "  前导空格和尾随空格  ", "换行\n符号\r\n测试", "标点，。、；：？！“”‘’（）【】《》—…",
    "你好" * 30, "的" * 100, "Python中的列表推导式：[x*2 for x in range(10)]")
add("japanese",
    "東京は日本の首都です。", "ひらがなとカタカナと漢字", "ラーメンが食べたい！", "吾輩は猫である。名前はまだ無い。",
    "ｶﾀｶﾅ半角", "今日は良い天気ですね。散歩に行きましょう。", "日本語の文章を正しくトークン化できますか？",
    "ゝゞヽヾ々〆〇", "「こんにちは」と彼女は言った。", "ｱｲｳｴｵ ﾊﾟﾋﾟﾌﾟ")
add("korean",
    "안녕하세요, 세계!", "대한민국의 수도는 서울입니다.", "한국어 형태소 분석은 어렵습니다.",
    "ㄱㄴㄷㄹㅁㅂㅅ ㅏㅑㅓㅕ", "한글 Hangul 123 테스트", "가나다라마바사아자차카타파하" * 5)
add("emoji",
    "🦙", "🦙🦙🦙", "I ❤️ Rust 🦀!", "😀😃😄😁😆😅😂🤣",
    "👨‍👩‍👧‍👦", "👩🏽‍💻 codes", "👍👍🏻👍🏼👍🏽👍🏾👍🏿", "🏳️‍🌈 🏴‍☠️", "🇺🇸🇯🇵🇨🇳🇰🇷🇩🇪🇫🇷",
    "🇨🇳", "1️⃣2️⃣3️⃣#️⃣*️⃣", "❤️‍🔥 ❤\ufe0f ❤\ufe0e", "🧑🏿‍🤝‍🧑🏻", "👁️‍🗨️", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "emoji at end 🎉", "🎉 emoji at start", "text🦙text", "👨‍👩‍👧‍👦" * 10, "🇨🇳" * 7)
add("other_scripts",
    "Привет, мир! Как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
    "สวัสดีชาวโลก", "Xin chào thế giới", "Ångström", "e\u0301 vs \u00e9", "ﬁ ligature", "Ⅻ ①②③",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３", "ℕ ⊆ ℤ ⊆ ℚ ⊆ ℝ ⊆ ℂ", "∀x∈ℝ: x²≥0", "ሰላም ልዑል", "ᚠᚢᚦᚨᚱᚲ",
    "\U00020000\U0002A6D6 CJK ext B")
add("code",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"hi\\n\");\n\treturn 0;\n}\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "def f(x):\n    return x ** 2  # square\n\nclass A:\n    pass\n",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "<html><body><div class=\"a\">Hi &amp; bye</div></body></html>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "x = [i for i in range(10) if i % 2 == 0]", "if (a && b || !c) { x += 1; } else { x -= 1; }",
    "$ ls -la | grep '\\.rs$' > out.txt 2>&1", "const re = /^[a-z]+\\d*$/gi;",
    "    \n\t\tindented\n        more    \n", "a->b; c::d; e<=f; g!=h; i===j; k?.l ?? m",
    "// comment\n/* block */\n#define X 1\n", "std::vector<std::pair<int, std::string>> v;",
    "print('hello')\r\nprint(\"world\")\r\n", "0x7fff_ffff 0b1010 1_000_000u64 3.14f32 1e-9")
ws = []
for n in list(range(1, 21)) + [24, 31, 32, 33, 40, 64, 100, 127, 128, 129, 255, 256, 1000]:
    ws += [" " * n, "a" + " " * n + "b", " " * n + "x", "x" + " " * n]
for n in [1, 2, 3, 4, 7, 8, 16, 17]:
    ws += ["\t" * n, "\n" * n, "\r\n" * n, "a" + "\t" * n + "b", "a" + "\n" * n + "b", " \n" * n, "\n " * n]
ws += ["\r", "\r\n", "\n\r", "\r\r\n\n", " \t \n ", "  \t\t  \n\n  ", "a \n b", "a\t\n\tb", "a  \r\n  b",
       "line1\nline2\r\nline3\rline4", "  leading", "trailing  ", "  both  ", "\u00a0nbsp\u00a0", "\u3000全角\u3000空格",
       "a\u2028b", "a\u2029b", "a\u0085b", "\u000b\u000c", "\u001c\u001d\u001e\u001f", "zero\u200bwidth", "\ufeffbom",
       " \u00a0 \u3000 \u2003 ", "end with newline\n", "\n\nstart with newlines", "x \n\n y", "   \n   \n   ",
       "word  \n  word", " a", "  a", "   a", "\ta", "\t\ta", "\na", "\n\na", "a \t", "! !", "  !", "\n!"]
add("whitespace", *ws)
nums = ["0", "7", "42", "123", "1234", "12345", "123456", "1234567", "12345678", "123456789", "1234567890"]
nums += ["9" * n for n in range(10, 31)] + ["1" * 50, "31415926535897932384626433832795028841971"]
nums += ["3.14159", "1,000,000.00", "$99.99", "99.99%", "1e-10", "6.022e23", "0xFF", "2024-01-15", "12:34:56",
         "+86 138-0013-8000", "v1.2.3", "x1y22z333w4444", "a1234b", "１２３４５", "٠١٢٣٤٥٦٧٨٩", "०१२३४", "²³¹",
         "½ ¾ ⅓", "Ⅳ Ⅸ", "①②③④⑤", "1st 2nd 3rd 4th", "-1 -12 -123 -1234", "1 2 3 4 5", "10000 20000"]
add("numbers", *nums)
add("contractions",
    "it's", "IT'S", "he'll", "HE'LL", "they're", "THEY'RE", "We'Re", "I've", "I'M", "i'm", "she'd", "you'D",
    "don't", "DON'T", "can't won't shouldn't", "it’s curly", "''s", "'s", "'ll", "'RE", "'", "''", "'''",
    "rock 'n' roll", "the dog's bone's", "O'Reilly's", "'s'll're've'm'd't", "x's y'S z'sS")
add("special_looking",
    "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>user<|end_header_id|>",
    "<|reserved_special_token_0|>", "<|reserved_special_token_250|>", "<|eom_id|>", "<|python_tag|>",
    "<|eot_id", "eot_id|>", "<|", "|>", "<||>", "<s>", "</s>", "<unk>", "[INST] hi [/INST]",
    "text <|eot_id|> text", "<|eot_id|><|eot_id|>")
add("english",
    "The quick brown fox jumps over the lazy dog.", "It's 3:45pm — don't be late!", "e-mail: someone@example.org",
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine.",
    "Hello" * 20, "supercalifragilisticexpialidocious", "antidisestablishmentarianism", "HELLO WORLD", "hElLo WoRlD",
    "a", "A", "ab", "", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ababababababababab",
    "NUL\u0000byte", "\u0000", "ctrl\u0001\u0002\u001f\u007f", "\U0010FFFF", "\ue000private", "\ud7ff")

random.seed(20240501)
pools = ["中文日本語한국어", "abcXYZ", "0123456789", " \t\n\r", "🦙👍🏽👨‍👩‍👧🇨🇳", "'sllre", ",.!?;:()[]{}<>|", "éüñçø",
         "ابجد", "абвгд", "\u3000\u00a0\u2028", "<|eot_id|>"]
for _ in range(60):
    n = random.randint(1, 60)
    t = "".join(random.choice(random.choice(pools)) for _ in range(n))
    add("random_mix", t)
for _ in range(20):
    parts = [random.choice(pools) * random.randint(1, 8) for _ in range(random.randint(2, 6))]
    add("random_runs", "".join(parts))

special_texts = [
    "<|begin_of_text|>", "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
    "text before <|eot_id|> text after", "<|eot_id|><|eot_id|>", "<|eot_id", "<|<|eot_id|>|>",
    "a<|reserved_special_token_0|>b<|reserved_special_token_250|>c", "<|reserved_special_token_251|>",
    "<|eom_id|><|python_tag|>", "中文<|end_of_text|>中文", "  <|eot_id|>  ", "\n<|start_header_id|>\n",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n你是一个助手<|eot_id|>",
    "<|reserved_special_token_4|><|reserved_special_token_5|>", "", "plain text only",
]


def dump(obj):
    return mc.dump(obj)


with open("cases-extra-llama3.jsonl", "w", encoding="utf-8") as out:
    n = 0
    for cat, t in cases:
        for bos in (False, True):
            c = mc.make_case(tok, "llama3", t, bos)
            c["category"] = cat
            out.write(dump(c) + "\n")
            n += 1
    for t in special_texts:
        for bos in (False, True):
            c = mc.make_case(tok, "llama3", t, bos, special=True)
            c["category"] = "special_parsing"
            out.write(dump(c) + "\n")
            n += 1
print("cases-extra-llama3.jsonl:", n, "cases")


# ------------------------------------------------------------------ hostile inputs
def lcg_text(alphabet, n, seed):
    """Deterministic text: n characters drawn from `alphabet` by a 64-bit LCG (the Rust test
    rebuilds it the same way)."""
    x = seed
    out = []
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(alphabet[(x >> 33) % len(alphabet)])
    return "".join(out)


def build(recipe):
    if "lcg" in recipe:
        return lcg_text(recipe["lcg"], recipe["chars"], recipe["seed"])
    unit = recipe["unit"]
    return unit * (recipe["chars"] // len(unit)) + recipe.get("suffix", "")


def fnv(ids):
    h = 0xcbf29ce484222325
    for i in ids:
        for b in i.to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001b3) % (1 << 64)
    return h


mixed = ("a中b日한🦙 \n\t1٣é!'ßЖ\u3000ม" "ع" "👍🏽" "\u200d")
recipes = [
    {"name": "spaces", "unit": " "},
    {"name": "spaces_then_word", "unit": " ", "suffix": "word"},
    {"name": "one_letter", "unit": "a"},
    {"name": "one_cjk", "unit": "中"},
    {"name": "newlines", "unit": "\n"},
    {"name": "crlf", "unit": "\r\n"},
    {"name": "space_tab", "unit": " \t"},
    {"name": "digits", "unit": "1234567890"},
    {"name": "punct", "unit": "!"},
    {"name": "letter_space", "unit": "a "},
    {"name": "emoji_zwj", "unit": "👨‍👩‍👧‍👦"},
    {"name": "special_text", "unit": "<|eot_id|>"},
    {"name": "special_text_parsed", "unit": "<|eot_id|>", "special": True},
    {"name": "mixed_scripts", "lcg": mixed, "seed": 42},
]
with open("hostile-llama3.jsonl", "w", encoding="utf-8") as out:
    for chars in (200_000, 1_000_000):
        for r in recipes:
            r = dict(r, chars=chars)
            text = build(r)
            ids = tok.encode(text, False, r.get("special", False))
            assert tok.decode(ids) == text
            row = dict(r, n_ids=len(ids), head=ids[:16], tail=ids[-16:], fnv1a64=fnv(ids))
            out.write(dump(row) + "\n")
            print(r["name"], chars, len(ids))
