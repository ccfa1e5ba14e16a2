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

/// Changed regions between `a` and `b`, in order.
pub fn diff_hunks(a: &str, b: &str) -> Vec<Hunk> {
    let input = InternedInput::new(a, b);
    let mut diff = Diff::compute(Algorithm::Histogram, &input);
    diff.postprocess_lines(&input);
    diff.hunks()
        .map(|h| Hunk {
            old_start: h.before.start as usize,
            old_end: h.before.end as usize,
            new_start: h.after.start as usize,
            new_end: h.after.end as usize,
        })
        .collect()
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

/// Forward-only line reader: skipping lines costs a memchr, not a line table.
#[derive(Clone)]
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0, line: 0 }
    }

    fn next_line(&mut self) -> Option<&'a str> {
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.pos;
        self.pos = match memchr::memchr(b'\n', &self.text.as_bytes()[start..]) {
            Some(i) => start + i + 1,
            None => self.text.len(),
        };
        self.line += 1;
        Some(&self.text[start..self.pos])
    }

    fn skip_to(&mut self, line: usize) {
        if line <= self.line {
            return;
        }
        let rest = &self.text.as_bytes()[self.pos..];
        match memchr::memchr_iter(b'\n', rest).nth(line - self.line - 1) {
            Some(i) => {
                self.pos += i + 1;
                self.line = line;
            }
            None => {
                // Fewer lines left: stop at the last (possibly unterminated) line's end.
                while self.next_line().is_some() {}
            }
        }
    }
}

/// Unified diff text (GNU/git format) of `old` → `new`. Empty when the texts are equal.
pub fn unified(old: &str, new: &str, hunks: &[Hunk], context: usize, from_file: &str, to_file: &str) -> String {
    let mut out = String::new();
    if hunks.is_empty() {
        return out;
    }
    out.push_str(&format!("--- {from_file}\n+++ {to_file}\n"));
    let (mut oc, mut nc) = (Cursor::new(old), Cursor::new(new));
    let mut i = 0;
    while i < hunks.len() {
        // Group hunks whose gap is at most 2 * context lines.
        let mut j = i;
        while j + 1 < hunks.len() && hunks[j + 1].old_start - hunks[j].old_end <= 2 * context {
            j += 1;
        }
        let (first, last) = (&hunks[i], &hunks[j]);
        let lead = context.min(first.old_start);
        let old_start = first.old_start - lead;
        let new_start = first.new_start - lead;
        let mut body = String::new();
        oc.skip_to(old_start);
        for h in &hunks[i..=j] {
            while oc.line < h.old_start {
                push_line(&mut body, ' ', oc.next_line().unwrap_or(""));
            }
            while oc.line < h.old_end {
                push_line(&mut body, '-', oc.next_line().unwrap_or(""));
            }
            nc.skip_to(h.new_start);
            while nc.line < h.new_end {
                push_line(&mut body, '+', nc.next_line().unwrap_or(""));
            }
        }
        let mut trail = 0;
        while trail < context {
            match oc.next_line() {
                Some(l) => push_line(&mut body, ' ', l),
                None => break,
            }
            trail += 1;
        }
        let old_len = last.old_end + trail - old_start;
        let new_len = last.new_end + trail - new_start;
        out.push_str(&format!("@@ -{} +{} @@\n", range_header(old_start, old_len), range_header(new_start, new_len)));
        out.push_str(&body);
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
