//! Deterministic inputs for the criterion benches (`cargo bench -p agent-native-bench`).

/// A tiny deterministic PRNG (xorshift64*), so inputs need no extra crates.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A plausible Python file of `lines` lines.
pub fn python_file(lines: usize, seed: u64) -> String {
    let mut r = Rng::new(seed);
    let mut out = String::new();
    for i in 0..lines {
        match r.below(10) {
            0 => out.push_str(&format!("def function_{i}(arg_{}, value={}):\n", i % 7, r.below(100))),
            1 => out.push('\n'),
            2 => out.push_str(&format!("    # comment {} about line {i}\n", r.below(1_000_000))),
            _ => out.push_str(&format!("    result_{} = compute(arg_{}, {}) + {i}\n", i % 13, i % 7, r.below(10_000))),
        }
    }
    out
}

/// Change, delete or insert about `fraction` of the lines.
pub fn edit_lines(text: &str, fraction: f64, seed: u64) -> String {
    let mut r = Rng::new(seed);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let x = r.below(1_000_000) as f64 / 1e6;
        if x < fraction / 3.0 {
            out.push_str(&line.replace("compute", "calculate"));
        } else if x < 2.0 * fraction / 3.0 {
        } else if x < fraction {
            out.push_str(line);
            out.push_str(&format!("    inserted_{} = True\n", r.below(1_000_000)));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Mixed prose and code of about `size` bytes.
pub fn mixed_text(size: usize) -> String {
    let prose = "The quick brown fox jumps over the lazy dog. It's well-known; we'll use it.\n\
                 日本語のテキスト。 Emoji 👍🏽 🎉 — “quotes”. Numbers 1234567 3.14159\n\n";
    let code = python_file(400, 1);
    let mut out = String::new();
    while out.len() < size {
        out.push_str(prose);
        out.push_str(&code);
    }
    let mut end = size;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

/// A JSON tool call of about `size` bytes, escaped content plus small objects.
pub fn tool_arguments(size: usize) -> String {
    let content = python_file(size / 60, 7);
    let escaped = content.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut edits = Vec::new();
    let mut r = Rng::new(3);
    while edits.iter().map(|e: &String| e.len()).sum::<usize>() < size * 4 / 10 {
        edits.push(format!(
            "{{\"line\": {}, \"old\": \"value_{}\", \"new\": \"renamed \\\"q\\\" é\", \"replace_all\": {}, \"weight\": {}.5}}",
            r.below(5000),
            r.below(1000),
            r.below(2) == 0,
            r.below(100)
        ));
    }
    format!("{{\"path\": \"src/module.py\", \"content\": \"{}\", \"edits\": [{}]}}", &escaped[..escaped.len().min(size * 6 / 10)].trim_end_matches('\\'), edits.join(", "))
}
