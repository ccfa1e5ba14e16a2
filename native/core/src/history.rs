//! History analysis for context compression: exact and near-duplicate tool outputs, superseded
//! file versions, and per-message token counts cached by content hash.
//!
//! * Exact duplicates: equal 128-bit XXH3 content hashes; each duplicate points at the first
//!   occurrence.
//! * Near duplicates: Jaccard similarity of the sets of distinct non-blank lines (64-bit XXH3 per
//!   line) ≥ `threshold` against an earlier output. Candidates come from an inverted index of
//!   line hashes (lines shared by more than [`COMMON_LINE_POSTINGS`] outputs are not used to find
//!   candidates, only to score them); the best three candidates are scored exactly.
//! * Superseded: an output tagged with a path (e.g. a file read) is superseded by the next output
//!   with the same path.

use crate::tokens::{self, Encoding};
use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

pub const COMMON_LINE_POSTINGS: usize = 64;
/// Outputs with fewer distinct non-blank lines are not checked for near duplicates.
pub const MIN_LINES: usize = 3;

pub fn content_hash(text: &str) -> u128 {
    xxh3_128(text.as_bytes())
}

/// Token counts keyed by (encoding, content hash): re-counting a known text is a hash lookup.
#[derive(Default)]
pub struct TokenCache {
    map: FxHashMap<(Encoding, u128), usize>,
    pub hits: u64,
    pub misses: u64,
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn count(&mut self, encoding: Encoding, text: &str) -> usize {
        let key = (encoding, content_hash(text));
        if let Some(&n) = self.map.get(&key) {
            self.hits += 1;
            return n;
        }
        self.misses += 1;
        let n = tokens::count(encoding, text);
        self.map.insert(key, n);
        n
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// (index, index of the first identical output)
    pub exact_duplicates: Vec<(usize, usize)>,
    /// (index, index of the most similar earlier output, Jaccard similarity)
    pub near_duplicates: Vec<(usize, usize, f64)>,
    /// (index, index of the later output with the same path)
    pub superseded: Vec<(usize, usize)>,
    /// Token count of every output (empty when not requested).
    pub token_counts: Vec<usize>,
}

fn line_set(text: &str) -> Vec<u64> {
    let mut v: Vec<u64> = text
        .split('\n')
        .filter(|l| !l.trim().is_empty())
        .map(|l| xxh3_64(l.trim_end_matches('\r').as_bytes()))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn intersection(a: &[u64], b: &[u64]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

pub fn analyze<S: AsRef<str>, P: AsRef<str>>(
    outputs: &[S],
    paths: Option<&[Option<P>]>,
    threshold: f64,
    counts: Option<(&mut TokenCache, Encoding)>,
) -> Report {
    let mut report = Report::default();
    let mut first_by_hash: FxHashMap<u128, usize> = FxHashMap::default();
    let mut sets: Vec<Vec<u64>> = Vec::with_capacity(outputs.len());
    let mut postings: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    let mut hits: FxHashMap<u32, u32> = FxHashMap::default();
    for (i, text) in outputs.iter().enumerate() {
        let text = text.as_ref();
        let h = content_hash(text);
        if let Some(&first) = first_by_hash.get(&h) {
            report.exact_duplicates.push((i, first));
            sets.push(Vec::new());
            continue;
        }
        first_by_hash.insert(h, i);
        let set = line_set(text);
        if set.len() >= MIN_LINES {
            hits.clear();
            let mut skipped = false;
            for l in &set {
                if let Some(p) = postings.get(l) {
                    if p.len() <= COMMON_LINE_POSTINGS {
                        for &j in p {
                            *hits.entry(j).or_default() += 1;
                        }
                    } else {
                        skipped = true;
                    }
                }
            }
            // Without skipped lines the hit count is the exact intersection size; otherwise it
            // is a lower bound and the best few candidates are scored exactly.
            let jaccard = |inter: usize, other: usize| inter as f64 / (set.len() + other - inter) as f64;
            let mut cands: Vec<(f64, u32)> =
                hits.iter().map(|(&j, &c)| (jaccard(c as usize, sets[j as usize].len()), j)).collect();
            if skipped {
                cands.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                cands.truncate(8);
                for c in cands.iter_mut() {
                    let other = &sets[c.1 as usize];
                    c.0 = jaccard(intersection(&set, other), other.len());
                }
            }
            let mut best: Option<(usize, f64)> = None;
            for &(sim, j) in &cands {
                let j = j as usize;
                if sim >= threshold && best.is_none_or(|(bj, s)| sim > s || (sim == s && j < bj)) {
                    best = Some((j, sim));
                }
            }
            if let Some((j, sim)) = best {
                report.near_duplicates.push((i, j, sim));
            }
            for &l in &set {
                postings.entry(l).or_default().push(i as u32);
            }
        }
        sets.push(set);
    }
    if let Some(paths) = paths {
        let mut last_by_path: FxHashMap<&str, usize> = FxHashMap::default();
        for (i, p) in paths.iter().enumerate() {
            if let Some(p) = p {
                if let Some(prev) = last_by_path.insert(p.as_ref(), i) {
                    report.superseded.push((prev, i));
                }
            }
        }
        report.superseded.sort_unstable();
    }
    if let Some((cache, enc)) = counts {
        report.token_counts = outputs.iter().map(|t| cache.count(enc, t.as_ref())).collect();
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_duplicates_and_supersessions() {
        let file_v1 = (0..20).map(|i| format!("line {i}\n")).collect::<String>();
        let file_v2 = file_v1.replace("line 7\n", "line seven\n");
        let outputs = vec![file_v1.clone(), "ok".to_string(), file_v1.clone(), file_v2.clone()];
        let paths = vec![Some("a.py"), None, Some("a.py"), Some("a.py")];
        let mut cache = TokenCache::new();
        let r = analyze(&outputs, Some(&paths), 0.8, Some((&mut cache, Encoding::O200kBase)));
        assert_eq!(r.exact_duplicates, vec![(2, 0)]);
        assert_eq!(r.near_duplicates.len(), 1);
        assert_eq!((r.near_duplicates[0].0, r.near_duplicates[0].1), (3, 0));
        assert_eq!(r.superseded, vec![(0, 2), (2, 3)]);
        assert_eq!(r.token_counts.len(), 4);
        let misses = cache.misses;
        analyze(&outputs, Some(&paths), 0.8, Some((&mut cache, Encoding::O200kBase)));
        assert_eq!(cache.misses, misses, "re-analysis must not re-tokenize");
    }
}
