//! Line diffs (imara-diff, Histogram + git's indent heuristic), unified text, and applying a diff
//! or a unified patch back to the old text.
//!
//! Lines keep their terminator (`\n`, `\r\n`, or none for a last line without one), so
//! `apply(diff(a, b), a) == b` byte for byte; a missing final newline is written as git and GNU
//! diff do, with `\ No newline at end of file`.

use imara_diff::{Algorithm, Diff, InternedInput};

/// One changed region, as half-open 0-based line ranges of the old and the new text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hunk {
    pub old_start: usize,
    pub old_end: usize,
    pub new_start: usize,
    pub new_end: usize,
}

/// Lines of `s`, each with its terminator.
pub fn split_lines(s: &str) -> Vec<&str> {
    s.split_inclusive('\n').collect()
}

/// Line table of a text: `ends[i]` is the byte offset just past line `i` (its terminator
/// included). Built once with memchr and shared by the diff, the unified text and the hunks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineTable {
    ends: Vec<u32>,
}

impl LineTable {
    pub fn new(text: &str) -> Self {
        assert!(text.len() <= u32::MAX as usize, "texts over 4 GiB are not supported");
        let mut ends: Vec<u32> = Vec::with_capacity(text.len() / 32 + 1);
        ends.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i as u32 + 1));
        if ends.last().copied().unwrap_or(0) as usize != text.len() {
            ends.push(text.len() as u32);
        }
        Self { ends }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Line `i` of `text` (the text this table was built from), with its terminator.
    pub fn line<'a>(&self, text: &'a str, i: usize) -> &'a str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &text[start..self.ends[i] as usize]
    }

    /// Lines `from..to` of `text` as one slice.
    pub fn span<'a>(&self, text: &'a str, from: usize, to: usize) -> &'a str {
        if from >= to {
            return "";
        }
        let start = if from == 0 { 0 } else { self.ends[from - 1] as usize };
        &text[start..self.ends[to - 1] as usize]
    }
}

/// imara-diff token source over a prebuilt line table.
#[derive(Clone, Copy)]
struct TableLines<'a> {
    text: &'a str,
    table: &'a LineTable,
}

struct TableLinesIter<'a> {
    lines: TableLines<'a>,
    i: usize,
}

impl<'a> Iterator for TableLinesIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.i >= self.lines.table.len() {
            return None;
        }
        self.i += 1;
        Some(self.lines.table.line(self.lines.text, self.i - 1))
    }
}

impl<'a> imara_diff::TokenSource for TableLines<'a> {
    type Token = &'a str;
    type Tokenizer = TableLinesIter<'a>;

    fn tokenize(&self) -> Self::Tokenizer {
        TableLinesIter { lines: *self, i: 0 }
    }

    fn estimate_tokens(&self) -> u32 {
        self.table.len() as u32
    }
}

/// Changed regions between `a` and `b`, in order.
pub fn diff_hunks(a: &str, b: &str) -> Vec<Hunk> {
    diff_with_tables(a, b).2
}

/// Changed regions between `a` and `b`, with the line tables of both. The texts are split once,
/// by imara-diff's interner; the tables are prefix sums of the interned lines' lengths (equal
/// tokens have equal text, so equal lengths).
pub fn diff_with_tables(a: &str, b: &str) -> (LineTable, LineTable, Vec<Hunk>) {
    assert!(a.len() <= u32::MAX as usize && b.len() <= u32::MAX as usize, "texts over 4 GiB are not supported");
    let input = InternedInput::new(a, b);
    let hunks = hunks_of(&input);
    let table = |tokens: &[imara_diff::Token]| {
        let mut end = 0u32;
        let ends = tokens
            .iter()
            .map(|&t| {
                end += input.interner[t].len() as u32;
                end
            })
            .collect();
        LineTable { ends }
    };
    (table(&input.before), table(&input.after), hunks)
}

fn hunks_of(input: &InternedInput<&str>) -> Vec<Hunk> {
    let mut diff = Diff::compute(Algorithm::Histogram, input);
    diff.postprocess_lines(input);
    diff.hunks()
        .map(|h| Hunk {
            old_start: h.before.start as usize,
            old_end: h.before.end as usize,
            new_start: h.after.start as usize,
            new_end: h.after.end as usize,
        })
        .collect()
}

/// Changed regions between `a` and `b` given their line tables.
pub fn diff_tables(a: &str, at: &LineTable, b: &str, bt: &LineTable) -> Vec<Hunk> {
    hunks_of(&InternedInput::new(TableLines { text: a, table: at }, TableLines { text: b, table: bt }))
}

fn push_line(out: &mut String, tag: char, line: &str) {
    out.push(tag);
    out.push_str(line);
    if !line.ends_with('\n') {
        out.push_str("\n\\ No newline at end of file\n");
    }
}

fn range_header(start: usize, len: usize) -> String {
    // GNU/git convention: 1-based start; an empty range names the line before it.
    let first = if len == 0 { start } else { start + 1 };
    if len == 1 {
        format!("{first}")
    } else {
        format!("{first},{len}")
    }
}

/// Unified diff text (GNU/git format) of `old` → `new`. Empty when the texts are equal.
pub fn unified(old: &str, new: &str, hunks: &[Hunk], context: usize, from_file: &str, to_file: &str) -> String {
    unified_tables(old, &LineTable::new(old), new, &LineTable::new(new), hunks, context, from_file, to_file)
}

/// [`unified`] with prebuilt line tables.
#[allow(clippy::too_many_arguments)]
pub fn unified_tables(
    old: &str,
    ot: &LineTable,
    new: &str,
    nt: &LineTable,
    hunks: &[Hunk],
    context: usize,
    from_file: &str,
    to_file: &str,
) -> String {
    let mut out = String::new();
    if hunks.is_empty() {
        return out;
    }
    out.push_str(&format!("--- {from_file}\n+++ {to_file}\n"));
    let mut i = 0;
    while i < hunks.len() {
        // Group hunks whose gap is at most 2 * context lines.
        let mut j = i;
        while j + 1 < hunks.len() && hunks[j + 1].old_start - hunks[j].old_end <= 2 * context {
            j += 1;
        }
        let (first, last) = (&hunks[i], &hunks[j]);
        let lead = context.min(first.old_start);
        let trail = context.min(ot.len() - last.old_end);
        let old_start = first.old_start - lead;
        let new_start = first.new_start - lead;
        let old_len = last.old_end + trail - old_start;
        let new_len = last.new_end + trail - new_start;
        out.push_str(&format!("@@ -{} +{} @@\n", range_header(old_start, old_len), range_header(new_start, new_len)));
        let mut pos = old_start;
        for h in &hunks[i..=j] {
            for k in pos..h.old_start {
                push_line(&mut out, ' ', ot.line(old, k));
            }
            for k in h.old_start..h.old_end {
                push_line(&mut out, '-', ot.line(old, k));
            }
            for k in h.new_start..h.new_end {
                push_line(&mut out, '+', nt.line(new, k));
            }
            pos = h.old_end;
        }
        for k in pos..last.old_end + trail {
            push_line(&mut out, ' ', ot.line(old, k));
        }
        i = j + 1;
    }
    out
}

/// A hunk ready to apply: at 0-based old line `old_start`, lines `old` are replaced by `new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchHunk {
    pub old_start: usize,
    pub old: Vec<String>,
    pub new: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchError {
    pub message: String,
}

impl std::fmt::Display for PatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn perr(message: String) -> PatchError {
    PatchError { message }
}

/// Zero-context patch hunks of a computed diff.
pub fn patch_hunks(old: &[&str], new: &[&str], hunks: &[Hunk]) -> Vec<PatchHunk> {
    hunks
        .iter()
        .map(|h| PatchHunk {
            old_start: h.old_start,
            old: old[h.old_start..h.old_end].iter().map(|s| s.to_string()).collect(),
            new: new[h.new_start..h.new_end].iter().map(|s| s.to_string()).collect(),
        })
        .collect()
}

fn parse_range(s: &str) -> Option<(usize, usize)> {
    let (a, b) = match s.split_once(',') {
        Some((a, b)) => (a, b.parse().ok()?),
        None => (s, 1),
    };
    Some((a.parse().ok()?, b))
}

/// Parse unified diff text (as written by [`unified`], git or GNU diff) into hunks.
pub fn parse_unified(patch: &str) -> Result<Vec<PatchHunk>, PatchError> {
    let mut hunks: Vec<PatchHunk> = Vec::new();
    // Remaining old/new line counts of the current hunk.
    let mut remaining = (0usize, 0usize);
    // Which lists the previous line went to: (old, new).
    let mut last = (false, false);
    for (n, line) in patch.split_inclusive('\n').enumerate() {
        let lineno = n + 1;
        if remaining == (0, 0) {
            if let Some(rest) = line.strip_prefix("@@ -") {
                let end = rest.find(" @@").ok_or_else(|| perr(format!("line {lineno}: malformed hunk header")))?;
                let (o, nw) = rest[..end]
                    .split_once(" +")
                    .ok_or_else(|| perr(format!("line {lineno}: malformed hunk header")))?;
                let (os, ol) = parse_range(o).ok_or_else(|| perr(format!("line {lineno}: malformed hunk header")))?;
                let (_ns, nl) = parse_range(nw).ok_or_else(|| perr(format!("line {lineno}: malformed hunk header")))?;
                let old_start = if ol == 0 { os } else { os.saturating_sub(1) };
                hunks.push(PatchHunk { old_start, old: Vec::new(), new: Vec::new() });
                remaining = (ol, nl);
                last = (false, false);
                continue;
            }
            if let Some(rest) = line.strip_prefix('\\') {
                let _ = rest;
                strip_newline(&mut hunks, last);
                continue;
            }
            // File headers and anything between hunks (e.g. `diff --git`) are ignored.
            continue;
        }
        let h = hunks.last_mut().unwrap();
        let (tag, content) = match line.chars().next() {
            Some(c @ (' ' | '-' | '+' | '\\')) => (c, &line[1..]),
            // Some tools strip the space of an empty context line.
            Some('\n') => (' ', line),
            _ => return Err(perr(format!("line {lineno}: unexpected line inside a hunk: {line:?}"))),
        };
        match tag {
            ' ' if remaining.0 > 0 && remaining.1 > 0 => {
                h.old.push(content.to_string());
                h.new.push(content.to_string());
                remaining = (remaining.0 - 1, remaining.1 - 1);
                last = (true, true);
            }
            '-' if remaining.0 > 0 => {
                h.old.push(content.to_string());
                remaining.0 -= 1;
                last = (true, false);
            }
            '+' if remaining.1 > 0 => {
                h.new.push(content.to_string());
                remaining.1 -= 1;
                last = (false, true);
            }
            '\\' => strip_newline(&mut hunks, last),
            _ => return Err(perr(format!("line {lineno}: hunk has more lines than its header says"))),
        }
    }
    if remaining != (0, 0) {
        return Err(perr("patch ends inside a hunk".to_string()));
    }
    Ok(hunks)
}

fn strip_newline(hunks: &mut [PatchHunk], last: (bool, bool)) {
    if let Some(h) = hunks.last_mut() {
        for (used, list) in [(last.0, &mut h.old), (last.1, &mut h.new)] {
            if used {
                if let Some(l) = list.last_mut() {
                    if l.ends_with('\n') {
                        l.pop();
                    }
                }
            }
        }
    }
}

/// Apply hunks (in order, without fuzz) to `a`.
pub fn apply(hunks: &[PatchHunk], a: &str) -> Result<String, PatchError> {
    let lines = split_lines(a);
    let mut out = String::with_capacity(a.len());
    let mut pos = 0usize;
    for (k, h) in hunks.iter().enumerate() {
        if h.old_start < pos || h.old_start + h.old.len() > lines.len() {
            return Err(perr(format!(
                "hunk {} (old line {}) does not fit the text ({} lines)",
                k + 1,
                h.old_start + 1,
                lines.len()
            )));
        }
        for (i, expected) in h.old.iter().enumerate() {
            if lines[h.old_start + i] != expected {
                return Err(perr(format!(
                    "hunk {} does not apply: old line {} is {:?}, the patch expects {:?}",
                    k + 1,
                    h.old_start + i + 1,
                    lines[h.old_start + i],
                    expected
                )));
            }
        }
        for l in &lines[pos..h.old_start] {
            out.push_str(l);
        }
        for l in &h.new {
            out.push_str(l);
        }
        pos = h.old_start + h.old.len();
    }
    for l in &lines[pos..] {
        out.push_str(l);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(a: &str, b: &str) {
        let (ol, nl) = (split_lines(a), split_lines(b));
        let hunks = diff_hunks(a, b);
        let (at, bt, h2) = diff_with_tables(a, b);
        assert_eq!((at, bt, h2), (LineTable::new(a), LineTable::new(b), hunks.clone()));
        assert_eq!(apply(&patch_hunks(&ol, &nl, &hunks), a).unwrap(), b);
        for ctx in [0, 1, 3] {
            let text = unified(a, b, &hunks, ctx, "a", "b");
            let parsed = parse_unified(&text).unwrap();
            assert_eq!(apply(&parsed, a).unwrap(), b, "context {ctx}\n{text}");
        }
    }

    #[test]
    fn unified_format() {
        let a = "a\nb\nc\n";
        let b = "a\nB\nc";
        let h = diff_hunks(a, b);
        let text = unified(a, b, &h, 3, "x", "y");
        assert_eq!(text, "--- x\n+++ y\n@@ -1,3 +1,3 @@\n a\n-b\n-c\n+B\n+c\n\\ No newline at end of file\n");
        roundtrip(a, b);
        roundtrip("", "x\n");
        roundtrip("x\n", "");
        roundtrip("a\r\nb\r\n", "a\nb\r\n");
    }

    #[test]
    fn apply_rejects_mismatch() {
        let hunks = parse_unified("@@ -1 +1 @@\n-x\n+y\n").unwrap();
        assert!(apply(&hunks, "z\n").is_err());
        assert!(parse_unified("@@ -1,2 +1 @@\n-x\n").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn diff_roundtrips(a in "[abc\\n]{0,40}", b in "[abc\\n]{0,40}") {
            roundtrip(&a, &b);
        }
    }
}
