//! A deterministic corpus of JSON chat messages for the permessage-deflate
//! benchmarks (`benches/deflate.rs`, `examples/deflate_corpus.rs`).
//!
//! The messages look like what a chat server relays: mostly
//! `{"type":"message","room":…,"user":…,"ts":…,"id":…,"text":…}` with
//! English-like text of varied length, plus short `typing` and `reaction`
//! events. Every byte comes from a seeded SplitMix64 generator, so the same
//! seed and count give the same corpus on every machine.

/// The seed the benchmarks use.
pub(crate) const SEED: u64 = 0x5eed_c0de_2024_1124;

/// How many messages the benchmarks use.
pub(crate) const COUNT: usize = 5000;

/// SplitMix64: small, fast and good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the bias is negligible here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index into a list of `n` skewed towards the front, as word
    /// frequencies are.
    fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * u) * n as f64) as usize
    }

    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[self.below(list.len())]
    }
}

/// Common English words, roughly by frequency, with some chat vocabulary.
const WORDS: &[&str] = &[
    "the",
    "I",
    "to",
    "a",
    "and",
    "you",
    "it",
    "is",
    "that",
    "of",
    "in",
    "we",
    "for",
    "this",
    "on",
    "be",
    "have",
    "not",
    "just",
    "do",
    "with",
    "so",
    "but",
    "was",
    "are",
    "can",
    "it's",
    "my",
    "if",
    "at",
    "what",
    "think",
    "me",
    "I'm",
    "yeah",
    "all",
    "they",
    "get",
    "like",
    "will",
    "about",
    "know",
    "one",
    "there",
    "up",
    "out",
    "no",
    "or",
    "from",
    "now",
    "would",
    "time",
    "an",
    "go",
    "more",
    "then",
    "don't",
    "some",
    "see",
    "how",
    "when",
    "here",
    "did",
    "should",
    "need",
    "still",
    "good",
    "back",
    "thanks",
    "today",
    "really",
    "also",
    "could",
    "work",
    "ok",
    "make",
    "going",
    "been",
    "want",
    "because",
    "new",
    "sure",
    "which",
    "people",
    "look",
    "right",
    "it",
    "let",
    "were",
    "something",
    "any",
    "them",
    "got",
    "same",
    "only",
    "tomorrow",
    "maybe",
    "build",
    "deploy",
    "release",
    "branch",
    "review",
    "meeting",
    "test",
    "tests",
    "server",
    "client",
    "issue",
    "fix",
    "fixed",
    "bug",
    "config",
    "latency",
    "logs",
    "error",
    "staging",
    "production",
    "dashboard",
    "team",
    "update",
    "merge",
    "change",
    "week",
    "morning",
    "afternoon",
    "lunch",
    "coffee",
    "weekend",
    "later",
    "tonight",
    "soon",
    "again",
    "first",
    "last",
    "great",
    "nice",
    "cool",
    "interesting",
    "weird",
    "broken",
    "slow",
    "fast",
    "everyone",
    "someone",
    "anyone",
    "question",
    "answer",
    "idea",
    "plan",
    "call",
    "link",
    "doc",
    "notes",
    "slides",
    "ticket",
    "estimate",
    "number",
    "small",
    "big",
    "whole",
    "part",
    "thing",
    "things",
    "point",
    "problem",
    "reason",
    "way",
    "place",
    "day",
    "actually",
    "probably",
    "definitely",
    "exactly",
    "already",
    "almost",
    "never",
    "always",
    "usually",
    "though",
    "because",
    "while",
    "before",
    "after",
    "until",
    "since",
    "without",
    "between",
    "through",
    "during",
    "against",
    "lol",
    "haha",
    "hmm",
    "btw",
    "imo",
    "afaik",
    "thx",
    "np",
    "brb",
    "+1",
];

const USERS: &[&str] = &[
    "alice42",
    "bob",
    "carol_dev",
    "dave.k",
    "eve",
    "frank99",
    "grace_h",
    "heidi",
    "ivan_t",
    "judy",
    "mallory",
    "niaj",
    "olivia.r",
    "peggy",
    "rupert7",
    "sybil",
    "trent",
    "victor_m",
    "walter",
    "xena",
    "yusuf",
    "zoe_b",
    "amir",
    "bea",
    "chen.li",
    "dmitri",
    "emeka",
    "fatima",
    "gustavo",
    "hana",
    "ines",
    "jorge_p",
    "kenji",
    "lena",
];

const ROOMS: &[&str] = &[
    "lobby",
    "general",
    "random",
    "dev",
    "ops-alerts",
    "design",
    "support",
    "release-2024-11",
];

const EMOJI: &[&str] = &["👍", "🎉", "😂", "❤️", "👀", "🚀", "✅", "🙏"];

/// Occasional pieces that are not plain words.
const EXTRAS: &[&str] = &[
    "https://example.com/docs/getting-started",
    "https://ci.example.org/builds/48213",
    "v2.3.1",
    "`cargo test`",
    "\"quoted\"",
    "café",
    "naïve",
    "42%",
    "10:30",
    "3x",
    "🙂",
    "(see above)",
    "PR #1187",
    "p99",
];

/// Append `s` to `out` as the inside of a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// English-like text of about `len` bytes: sentences of skewed-frequency
/// words, capitalised and punctuated, with an occasional mention, link or
/// emoji.
fn text(rng: &mut Rng, len: usize) -> String {
    let mut s = String::new();
    let mut start = true;
    while s.len() < len {
        if !s.is_empty() {
            s.push(' ');
        }
        let r = rng.below(100);
        let word = if r < 2 {
            format!("@{}", rng.pick(USERS))
        } else if r < 5 {
            rng.pick(EXTRAS).to_owned()
        } else {
            WORDS[rng.skewed(WORDS.len())].to_owned()
        };
        if start {
            let mut cs = word.chars();
            if let Some(f) = cs.next() {
                s.extend(f.to_uppercase());
                s.push_str(cs.as_str());
            }
            start = false;
        } else {
            s.push_str(&word);
        }
        let end = rng.below(100);
        if end < 8 {
            s.push_str([".", ".", ".", "?", "!", "..."][rng.below(6)]);
            start = true;
        } else if end < 12 {
            s.push(',');
        }
    }
    if !start {
        s.push_str(if rng.below(4) == 0 { "?" } else { "." });
    }
    s
}

/// `count` messages, each one JSON object on its own (no newlines inside).
pub(crate) fn chat_corpus(seed: u64, count: usize) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut ts: u64 = 1_732_441_234_567;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        ts += rng.below(4000) as u64 + 1;
        let room = ROOMS[rng.skewed(ROOMS.len())];
        let user = USERS[rng.below(USERS.len())];
        let id = format!("{:016x}", rng.next());
        let kind = rng.below(100);
        let mut m = String::with_capacity(640);
        if kind < 7 {
            m.push_str(&format!(
                "{{\"type\":\"typing\",\"room\":\"{room}\",\"user\":\"{user}\",\"ts\":{ts}}}"
            ));
        } else if kind < 11 {
            let emoji = rng.pick(EMOJI);
            let target = format!("{:016x}", rng.next());
            m.push_str(&format!(
                "{{\"type\":\"reaction\",\"room\":\"{room}\",\"user\":\"{user}\",\"ts\":{ts},\"id\":\"{id}\",\"target\":\"{target}\",\"emoji\":\"{emoji}\"}}"
            ));
        } else {
            // Text lengths skewed towards short, from about 10 to 480 bytes.
            let u = rng.unit();
            let len = 10 + (u * u * 470.0) as usize;
            m.push_str(&format!(
                "{{\"type\":\"message\",\"room\":\"{room}\",\"user\":\"{user}\",\"ts\":{ts},\"id\":\"{id}\",\"text\":\""
            ));
            push_json_str(&mut m, &text(&mut rng, len));
            m.push_str("\"}");
        }
        out.push(m);
    }
    out
}
