//! Line-based three-way merge on `similar::TextMerge` (Myers, like git's default).
//!
//! Semantics (pinned against `git merge-file` by tests/unit/native/test_merge.py):
//! * changes of one side only are taken; identical changes on both sides are taken once;
//! * changes that overlap or merely touch (no unchanged base line between them) form one
//!   conflict region, as in git's xdiff;
//! * inside a conflict, lines that ours and theirs share at the start or end are moved out of
//!   the conflict (a light form of git's "zealous" refinement); git additionally splits a
//!   conflict on common lines in its middle and joins conflicts separated only by lines without
//!   letters or digits — we do neither, so we may report fewer, larger regions than git;
//! * conflict markers are written as git writes them (`<<<<<<< ours`, `=======`,
//!   `>>>>>>> theirs`); a side not ending in a newline gets one before the next marker.

use imara_diff::{Algorithm, Diff, InternedInput};
use similar::{MergeResolution, TextMerge};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Half-open 0-based line ranges in base, ours and theirs.
    pub base: (usize, usize),
    pub ours: (usize, usize),
    pub theirs: (usize, usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The merged text, with conflict markers if there are conflicts.
    pub text: String,
    pub conflicts: Vec<Conflict>,
}

fn push_lines(out: &mut String, lines: &[&str]) {
    for l in lines {
        out.push_str(l);
    }
}

fn push_marker(out: &mut String, marker: &str, label: &str) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(marker);
    if !label.is_empty() {
        out.push(' ');
        out.push_str(label);
    }
    out.push('\n');
}

enum Item {
    /// Lines equal in ours and theirs (unchanged, or common lines inside a conflict).
    Common { o: (usize, usize), t: (usize, usize) },
    /// A change taken from one side (or made identically by both).
    Taken { theirs: bool, range: (usize, usize) },
    Conflict(Conflict),
}

fn has_alnum(lines: &[&str]) -> bool {
    lines.iter().any(|l| l.bytes().any(|b| b.is_ascii_alphanumeric()))
}

/// Split a conflict on the lines that ours and theirs have in common (git's `xdl_refine_conflicts`).
fn refine(c: Conflict, o: &[&str], t: &[&str], items: &mut Vec<Item>) {
    let (o0, o1, t0, t1) = (c.ours.0, c.ours.1, c.theirs.0, c.theirs.1);
    if o0 == o1 || t0 == t1 {
        items.push(Item::Conflict(c));
        return;
    }
    let (os, ts) = (o[o0..o1].concat(), t[t0..t1].concat());
    let input = InternedInput::new(os.as_str(), ts.as_str());
    let diff = Diff::compute(Algorithm::Myers, &input);
    let (mut po, mut pt) = (o0, t0);
    for h in diff.hunks() {
        let (ho0, ho1) = (o0 + h.before.start as usize, o0 + h.before.end as usize);
        let (ht0, ht1) = (t0 + h.after.start as usize, t0 + h.after.end as usize);
        if ho0 > po {
            items.push(Item::Common { o: (po, ho0), t: (pt, ht0) });
        }
        items.push(Item::Conflict(Conflict { base: c.base, ours: (ho0, ho1), theirs: (ht0, ht1) }));
        po = ho1;
        pt = ht1;
    }
    if o1 > po {
        items.push(Item::Common { o: (po, o1), t: (pt, t1) });
    }
}

pub fn merge3(base: &str, ours: &str, theirs: &str, labels: (&str, &str)) -> MergeOutcome {
    let m = TextMerge::from_lines(base, ours, theirs);
    let o: Vec<&str> = ours.split_inclusive('\n').collect();
    let t: Vec<&str> = theirs.split_inclusive('\n').collect();
    let mut items: Vec<Item> = Vec::new();
    for r in m.regions() {
        let (or, tr, br) = (r.ours_range(), r.theirs_range(), r.base_range());
        match r.resolution() {
            MergeResolution::Unchanged => items.push(Item::Common { o: (or.start, or.end), t: (tr.start, tr.end) }),
            MergeResolution::Theirs => items.push(Item::Taken { theirs: true, range: (tr.start, tr.end) }),
            MergeResolution::Conflict => refine(
                Conflict { base: (br.start, br.end), ours: (or.start, or.end), theirs: (tr.start, tr.end) },
                &o,
                &t,
                &mut items,
            ),
            // Ours, Both (and any future resolution that keeps ours).
            _ => items.push(Item::Taken { theirs: false, range: (or.start, or.end) }),
        }
    }
    // Join conflicts separated only by common lines when the gap is at most 3 lines or has no
    // letter or digit (git's `xdl_simplify_non_conflicts` at level ZEALOUS_ALNUM).
    let mut merged: Vec<Item> = Vec::with_capacity(items.len());
    let mut k = 0;
    while k < items.len() {
        if let Item::Conflict(c) = &items[k] {
            let mut c = c.clone();
            loop {
                let mut j = k + 1;
                let (mut gap_o, mut gap_t) = (c.ours.1, c.theirs.1);
                while let Some(Item::Common { o: go, t: gt }) = items.get(j) {
                    gap_o = go.1;
                    gap_t = gt.1;
                    j += 1;
                }
                let _ = gap_t;
                match items.get(j) {
                    Some(Item::Conflict(next)) if j > k + 1 || next.ours.0 == c.ours.1 => {
                        let gap = &o[c.ours.1..next.ours.0];
                        debug_assert_eq!(gap_o, next.ours.0);
                        if gap.len() <= 3 || !has_alnum(gap) {
                            c.base = (c.base.0.min(next.base.0), c.base.1.max(next.base.1));
                            c.ours.1 = next.ours.1;
                            c.theirs.1 = next.theirs.1;
                            k = j;
                            continue;
                        }
                        break;
                    }
                    _ => break,
                }
            }
            merged.push(Item::Conflict(c));
        } else {
            merged.push(std::mem::replace(&mut items[k], Item::Common { o: (0, 0), t: (0, 0) }));
        }
        k += 1;
    }

    let mut text = String::with_capacity(ours.len().max(theirs.len()));
    let mut conflicts = Vec::new();
    for item in merged {
        match item {
            Item::Common { o: r, .. } => push_lines(&mut text, &o[r.0..r.1]),
            Item::Taken { theirs: false, range: r } => push_lines(&mut text, &o[r.0..r.1]),
            Item::Taken { theirs: true, range: r } => push_lines(&mut text, &t[r.0..r.1]),
            Item::Conflict(c) => {
                push_marker(&mut text, "<<<<<<<", labels.0);
                push_lines(&mut text, &o[c.ours.0..c.ours.1]);
                push_marker(&mut text, "=======", "");
                push_lines(&mut text, &t[c.theirs.0..c.theirs.1]);
                push_marker(&mut text, ">>>>>>>", labels.1);
                conflicts.push(c);
            }
        }
    }
    MergeOutcome { text, conflicts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_and_conflicting() {
        let r = merge3("a\nb\nc\n", "A\nb\nc\n", "a\nb\nC\n", ("ours", "theirs"));
        assert_eq!(r.text, "A\nb\nC\n");
        assert!(r.conflicts.is_empty());
        let r = merge3("a\nb\nc\n", "a\nX\nc\n", "a\nY\nc\n", ("ours", "theirs"));
        assert_eq!(r.text, "a\n<<<<<<< ours\nX\n=======\nY\n>>>>>>> theirs\nc\n");
        assert_eq!(r.conflicts, vec![Conflict { base: (1, 2), ours: (1, 2), theirs: (1, 2) }]);
        let r = merge3("a\n", "a\nsame\nx\n", "a\nsame\ny\n", ("ours", "theirs"));
        assert_eq!(r.text, "a\nsame\n<<<<<<< ours\nx\n=======\ny\n>>>>>>> theirs\n");
    }
}
