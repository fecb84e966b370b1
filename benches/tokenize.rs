//! Encode throughput (bytes of text per second, one thread) of our tokenizers on three ~100 KB
//! texts: English prose, Chinese prose and mixed source code, all generated deterministically
//! here (no download). LLaMA 2: `tests/data/tokenizers/llama2/tokenizer.model`; LLaMA 3:
//! `$RUNLLAMA_LLAMA3_TOKENIZER`, else `tests/data/tokenizers/llama3/tokenizer.model`, else
//! `/work/shared/tokenizers/llama3/tokenizer.model` (skipped with a note while our tokenizer does
//! not load it).
//!
//! `cargo bench --bench tokenize` also writes the texts to `target/tokenize-bench/<text>.txt` and
//! our ids to `target/tokenize-bench/<model>-<text>.ids` (one id per line), so that
//! `benches/tokenize_python.py` (python sentencepiece / tiktoken) measures the very same texts and
//! checks that it gets the same ids; `benches/tokenize_compare.sh` runs both and prints the ratios.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use runllama::tokenizer::Tokenizer;

/// Size the generated texts reach (then stop at the end of the current sentence / snippet).
const TEXT_BYTES: usize = 100_000;

/// splitmix64: deterministic, the same stream on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.range(0, 99) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.next() as usize % items.len()]
    }
    /// Zipf-like pick: earlier items are much more frequent (as in real text).
    fn zipf<T: Copy>(&mut self, items: &[T]) -> T {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let i = ((items.len() as f64 + 1.0).powf(u) - 1.0) as usize;
        items[i.min(items.len() - 1)]
    }
}

/// Common English words, roughly by frequency.
#[rustfmt::skip]
const EN_WORDS: &[&str] = &[
    "the", "of", "and", "to", "a", "in", "is", "that", "it", "was", "for", "on", "as", "with", "he", "be", "at", "by",
    "his", "this", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you", "were",
    "her", "all", "she", "there", "would", "their", "we", "him", "been", "has", "when", "who", "will", "more", "no",
    "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can", "only", "other", "new",
    "some", "could", "time", "these", "two", "may", "then", "do", "first", "any", "my", "now", "such", "like", "our",
    "over", "man", "me", "even", "most", "made", "after", "also", "did", "many", "before", "must", "through", "back",
    "years", "where", "much", "your", "way", "well", "down", "should", "because", "each", "just", "those", "people",
    "how", "too", "little", "state", "good", "very", "make", "world", "still", "own", "see", "men", "work", "long",
    "get", "here", "between", "both", "life", "being", "under", "never", "day", "same", "another", "know", "while",
    "last", "might", "us", "great", "old", "year", "off", "come", "since", "against", "go", "came", "right", "used",
    "take", "three", "himself", "few", "house", "use", "during", "without", "again", "place", "American", "around",
    "however", "home", "small", "found", "thought", "went", "say", "part", "once", "general", "high", "upon",
    "school", "every", "don't", "does", "got", "united", "left", "number", "course", "war", "until", "always", "away",
    "something", "fact", "though", "water", "less", "public", "put", "think", "almost", "hand", "enough", "far",
    "took", "head", "yet", "government", "system", "better", "set", "told", "nothing", "night", "end", "why",
    "called", "didn't", "eyes", "find", "going", "look", "asked", "later", "knew", "point", "next", "program", "city",
    "business", "give", "group", "toward", "young", "days", "let", "room", "president", "side", "social", "given",
    "present", "several", "order", "national", "second", "possible", "rather", "per", "face", "among", "form",
    "important", "often", "things", "looked", "early", "white", "case", "John", "become", "large", "big", "need",
    "four", "within", "felt", "along", "children", "saw", "best", "church", "ever", "least", "power", "development",
    "light", "thing", "seemed", "family", "interest", "want", "members", "mind", "country", "area", "others",
    "although", "turned", "done", "open", "God", "service", "certain", "kind", "problem", "began", "different",
    "door", "thus", "help", "sense", "means", "whole", "matter", "perhaps", "itself", "it's", "York", "times", "law",
    "human", "line", "above", "name", "example", "action", "company", "hands", "local", "show", "whether", "five",
    "history", "gave", "today", "either", "act", "feet", "across", "taken", "past", "quite", "anything", "seen",
    "having", "death", "week", "experience", "body", "word", "half", "really", "field", "am", "car", "words",
    "already", "themselves", "I'm", "information", "tell", "together", "college", "shall", "money", "period", "held",
    "keep", "sure", "probably", "free", "seems", "political", "real", "behind", "cannot", "miss", "question", "air",
    "office", "making", "brought", "whose", "special", "major", "heard", "problems", "federal", "became", "study",
    "ago", "moment", "available", "known", "result", "street", "economic", "boy", "position", "reason", "change",
    "south", "board", "individual", "job", "areas", "society", "west", "close", "turn", "love", "community", "true",
    "court", "force", "full", "seem", "wife", "future", "age", "voice", "center", "woman", "control", "common",
    "policy", "necessary", "following", "front", "sometimes", "six", "girl", "clear", "further", "land", "run",
    "students", "provide", "feel", "party", "able", "mother", "music", "education", "university", "child", "effect",
    "level", "stood", "military", "town", "short", "morning", "total", "outside", "rate", "physical", "research",
    "understanding", "extraordinary", "responsibilities", "nevertheless", "characteristic", "photosynthesis",
    "infrastructure", "unprecedented", "notwithstanding", "entrepreneurship", "misunderstood",
];
#[rustfmt::skip]
const EN_NAMES: &[&str] = &[
    "Lily", "Tom", "Mrs. Hargreaves", "Dr. Okafor", "Paris", "the Thames", "Ms. Nakamura", "Professor Lindqvist",
    "Jean-Luc", "Amsterdam", "the Smithsonian", "Wednesday", "September", "NASA", "the BBC", "Mr. O'Connor",
];

fn english(len: usize) -> String {
    let mut r = Rng(0x0E46_1157);
    let mut s = String::with_capacity(len + 1024);
    while s.len() < len {
        // A paragraph of 3..8 sentences.
        for k in 0..r.range(3, 8) {
            if k > 0 {
                s.push(' ');
            }
            let quoted = r.chance(8);
            if quoted {
                s.push('"');
            }
            let n = r.range(5, 28);
            for i in 0..n {
                let w: String = if r.chance(4) {
                    r.pick(EN_NAMES).to_string()
                } else if r.chance(2) {
                    format!("{}", r.range(2, 2030))
                } else {
                    r.zipf(EN_WORDS).to_string()
                };
                if i == 0 {
                    let mut c = w.chars();
                    let first = c.next().expect("word");
                    s.extend(first.to_uppercase());
                    s.push_str(c.as_str());
                } else {
                    s.push(' ');
                    if r.chance(2) {
                        s.push('(');
                        s.push_str(&w);
                        s.push(')');
                    } else {
                        s.push_str(&w);
                    }
                }
                if i + 1 < n && r.chance(7) {
                    s.push_str(r.pick(&[",", ",", ",", ";", ":", " -", "'s"]));
                }
            }
            s.push_str(r.pick(&[".", ".", ".", ".", ".", "?", "!", "..."]));
            if quoted {
                s.push('"');
            }
        }
        s.push_str("\n\n");
    }
    s
}

/// Common Chinese words, roughly by frequency.
#[rustfmt::skip]
const ZH_WORDS: &[&str] = &[
    "的", "是", "在", "了", "和", "我们", "他", "这个", "有", "一个", "中国", "不", "人", "也", "就", "他们", "对", "说", "上", "时候", "可以",
    "发展", "工作", "问题", "社会", "经济", "国家", "没有", "自己", "什么", "已经", "这些", "我", "你", "她", "因为", "所以", "但是", "如果", "还是",
    "而且", "需要", "进行", "通过", "提高", "重要", "企业", "技术", "市场", "政府", "研究", "历史", "文化", "教育", "学生", "老师", "学校", "城市", "农村",
    "生活", "环境", "科学", "世界", "人民", "时间", "今天", "明天", "去年", "北京", "上海", "广州", "深圳", "长江", "黄河", "语言", "模型", "数据", "计算机",
    "网络", "信息", "系统", "管理", "服务", "质量", "能力", "方法", "结果", "过程", "影响", "作用", "关系", "认为", "表示", "知道", "觉得", "希望", "喜欢",
    "开始", "继续", "完成", "实现", "建设", "改革", "开放", "政策", "制度", "法律", "安全", "健康", "医院", "医生", "家庭", "孩子", "父母", "朋友", "公司",
    "产品", "价格", "增长", "投资", "银行", "金融", "交通", "铁路", "飞机", "汽车", "手机", "电脑", "互联网", "人工智能", "自然", "语言处理", "机器学习",
    "深度学习", "山", "水", "天气", "春天", "夏天", "秋天", "冬天", "美丽", "安静", "热闹", "非常", "特别", "比较", "一定", "可能", "应该", "必须", "大家",
    "一起", "每天", "经常", "突然", "终于", "故事", "小说", "电影", "音乐", "艺术", "传统", "现代", "未来", "梦想", "努力", "成功", "失败", "经验", "机会",
    "挑战", "合作", "交流", "理解", "支持", "帮助", "保护", "发现", "创造", "选择", "决定", "组织", "活动", "会议", "报告", "文章", "内容", "方面", "部分",
    "地区", "全国", "国际", "合作伙伴", "可持续发展", "基础设施", "乡村振兴",
];

fn chinese(len: usize) -> String {
    let mut r = Rng(0x2BC4_1E5E);
    let mut s = String::with_capacity(len + 1024);
    while s.len() < len {
        for _ in 0..r.range(3, 7) {
            if r.chance(8) {
                s.push('“');
            }
            for _ in 0..r.range(1, 4) {
                for _ in 0..r.range(3, 9) {
                    if r.chance(3) {
                        s.push_str(&format!("{}", r.range(1, 2025)));
                        s.push_str(r.pick(&["年", "月", "日", "个", "%", "万", "亿元"]));
                    } else if r.chance(2) {
                        s.push_str(r.pick(&["AI", "GDP", "5G", "iPhone", "Python", "LLaMA"]));
                    } else {
                        s.push_str(r.zipf(ZH_WORDS));
                    }
                }
                s.push_str(r.pick(&["，", "，", "，", "、", "；", "："]));
            }
            s.pop();
            s.push_str(r.pick(&["。", "。", "。", "。", "？", "！"]));
            if s.ends_with('“') {
                s.pop();
            }
            if r.chance(8) {
                s.push('”');
            }
        }
        s.push('\n');
    }
    s
}

/// Identifier parts for the code generator.
#[rustfmt::skip]
const IDENTS: &[&str] = &[
    "index", "count", "buffer", "value", "result", "token", "tokens", "text", "len", "size", "offset", "config",
    "model", "layer", "weights", "input", "output", "state", "cache", "key", "item", "node", "parent", "child",
    "request", "response", "user", "name", "path", "file", "data", "bytes", "score", "scores", "vocab", "merge",
    "piece", "pieces", "id", "ids", "max", "min", "total", "start", "end", "line", "column", "error", "status",
];

fn ident(r: &mut Rng, style: usize) -> String {
    let parts: Vec<&str> = (0..r.range(1, 3)).map(|_| r.zipf(IDENTS)).collect();
    match style {
        0 => parts.join("_"),
        _ => {
            let mut s = parts[0].to_string();
            for p in &parts[1..] {
                let mut c = p.chars();
                s.extend(c.next().expect("part").to_uppercase());
                s.push_str(c.as_str());
            }
            s
        }
    }
}

fn code(len: usize) -> String {
    let mut r = Rng(0xC0DE);
    let mut s = String::with_capacity(len + 4096);
    while s.len() < len {
        let (a, b, c) = (ident(&mut r, 0), ident(&mut r, 0), ident(&mut r, 0));
        let (ca, cb) = (ident(&mut r, 1), ident(&mut r, 1));
        let n = r.range(0, 4096);
        let comment = r.zipf(EN_WORDS);
        let snippet = match r.range(0, 6) {
            0 => format!(
                "/// Returns the {comment} of `{a}` ({n} at most).\npub fn {a}_{b}(&self, {c}: &[u32]) -> Result<Vec<u32>> {{\n    let mut {b} = Vec::with_capacity({c}.len());\n    for (i, &{a}) in {c}.iter().enumerate() {{\n        if {a} > {n} {{\n            return Err(Error::invalid(format!(\"{a}[{{i}}] = {{{a}}} is too large\")));\n        }}\n        {b}.push({a} * 2 + 1);\n    }}\n    Ok({b})\n}}\n\n"
            ),
            1 => format!(
                "def {a}({b}, {c}={n}):\n    \"\"\"Compute the {comment} for {b}.\"\"\"\n    {ca} = {{}}\n    for i, x in enumerate({b}):\n        if x is None or i >= {c}:\n            continue\n        {ca}[x] = {ca}.get(x, 0) + 1  # {comment}\n    return sorted({ca}.items(), key=lambda kv: -kv[1])\n\n\n"
            ),
            2 => format!(
                "static int {a}(const char *{b}, size_t {c}) {{\n\tint {cb} = 0;\n\tfor (size_t i = 0; i < {c}; i++) {{\n\t\tif ({b}[i] == '\\n') {{\n\t\t\t{cb} += {n};\n\t\t}} else if ({b}[i] >= 0x80) {{\n\t\t\t{cb}--; /* {comment} */\n\t\t}}\n\t}}\n\treturn {cb};\n}}\n\n"
            ),
            3 => format!(
                "export async function {ca}({cb}) {{\n  const {a} = await fetch(`/api/v1/{b}/${{{cb}.id}}?limit={n}`);\n  if (!{a}.ok) throw new Error(\"{comment}: \" + {a}.status);\n  return ({a}.json()).{c} ?? [];\n}}\n\n"
            ),
            4 => format!(
                "{{\n  \"{a}\": {n},\n  \"{b}\": [{}, {}, {}],\n  \"{c}\": {{ \"enabled\": true, \"name\": \"{comment}\", \"ratio\": 0.{n} }}\n}}\n",
                r.range(0, 99),
                r.range(0, 999),
                r.range(0, 9999)
            ),
            5 => format!(
                "# {comment}\nfor f in \"${a}\"/*.{b}; do\n    [ -f \"$f\" ] || continue\n    grep -c '{c}' \"$f\" >> /tmp/{cb}.log 2>&1 && echo \"ok: $f\"\ndone\n\n"
            ),
            _ => format!(
                "    // {comment} {comment} ({n})\n    let {a}: HashMap<String, usize> = {b}.iter().map(|{c}| ({c}.to_string(), {c}.len())).collect();\n"
            ),
        };
        s.push_str(&snippet);
    }
    s
}

fn texts() -> Vec<(&'static str, String)> {
    vec![("english", english(TEXT_BYTES)), ("chinese", chinese(TEXT_BYTES)), ("code", code(TEXT_BYTES))]
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    let target = if target.is_absolute() { target } else { root().join(target) };
    target.join("tokenize-bench")
}

fn load(path: &Path) -> Result<Tokenizer, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Tokenizer::from_file_bytes(&bytes, &path.display().to_string()).map_err(|e| e.to_string())
}

fn tokenizers() -> Vec<(&'static str, Tokenizer)> {
    let mut out = Vec::new();
    let llama2 = root().join("tests/data/tokenizers/llama2/tokenizer.model");
    out.push(("llama2", load(&llama2).unwrap_or_else(|e| panic!("{e}"))));
    let llama3 = std::env::var_os("RUNLLAMA_LLAMA3_TOKENIZER").map(PathBuf::from).unwrap_or_else(|| {
        let local = root().join("tests/data/tokenizers/llama3/tokenizer.model");
        if local.exists() {
            local
        } else {
            PathBuf::from("/work/shared/tokenizers/llama3/tokenizer.model")
        }
    });
    match load(&llama3) {
        Ok(t) => out.push(("llama3", t)),
        Err(e) => eprintln!("note: skipping LLaMA 3 ({}): not supported by our tokenizer yet: {e}", llama3.display()),
    }
    out
}

fn bench_encode(c: &mut Criterion) {
    let texts = texts();
    let toks = tokenizers();
    let dir = out_dir();
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for (name, text) in &texts {
        std::fs::write(dir.join(format!("{name}.txt")), text).expect("write text");
    }
    // The ids, for the python script to check that it measures the same work.
    for (model, t) in &toks {
        for (name, text) in &texts {
            let ids = t.encode(text, false, false).expect("encode");
            let lines: String = ids.iter().map(|id| format!("{id}\n")).collect();
            std::fs::write(dir.join(format!("{model}-{name}.ids")), lines).expect("write ids");
            eprintln!("{model} {name}: {} bytes, {} chars -> {} ids", text.len(), text.chars().count(), ids.len());
        }
    }
    let mut g = c.benchmark_group("tokenize_encode");
    g.sample_size(30);
    g.warm_up_time(std::time::Duration::from_secs(2));
    g.measurement_time(std::time::Duration::from_secs(6));
    for (model, t) in &toks {
        for (name, text) in &texts {
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_with_input(BenchmarkId::new(*model, *name), text.as_str(), |b, text| {
                b.iter(|| t.encode(text, false, false).expect("encode"))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_encode);
criterion_main!(benches);
