//! Quick in-process timing of the diff and merge hot paths (not a criterion bench):
//! `cargo run --release --example timing -- A B BASE OURS THEIRS`.
use agent_native_core::{merge, textdiff};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time<F: FnMut()>(mut f: F) -> f64 {
    median((0..31).map(|_| { let t = Instant::now(); f(); t.elapsed().as_secs_f64() * 1e3 }).collect())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = |i: usize| std::fs::read_to_string(&args[i]).unwrap();
    let (a, b, base, ours, theirs) = (r(0), r(1), r(2), r(3), r(4));
    if std::env::var("UNIFIED_LOOP").is_ok() {
        unified_loop(&a, &b);
        return;
    }
    println!("diff_hunks   {:.3} ms", time(|| { textdiff::diff_hunks(&a, &b); }));
    let h = textdiff::diff_hunks(&a, &b);
    println!("unified      {:.3} ms", time(|| {
        textdiff::unified(&a, &b, &h, 3, "a", "b");
    }));
    println!("merge3       {:.3} ms", time(|| { merge::merge3(&base, &ours, &theirs, ("ours", "theirs")); }));
    extra(&base);
    variants(&a, &b);
    table_vs_lines(&a, &b);
    letters();
    line_table_timing(&a);

}

#[allow(dead_code)]
fn extra(base: &str) {
    println!("split_lines  {:.3} ms", time(|| { std::hint::black_box(textdiff::split_lines(base)); }));
    println!("memchr lines {:.3} ms", time(|| {
        let v: Vec<usize> = memchr::memchr_iter(b'\n', base.as_bytes()).collect();
        std::hint::black_box(v);
    }));
}


#[allow(dead_code)]
fn variants(a: &str, b: &str) {
    use imara_diff::{Algorithm, Diff, InternedInput};
    println!("intern only  {:.3} ms", time(|| { std::hint::black_box(InternedInput::new(a, b)); }));
    for alg in [Algorithm::Histogram, Algorithm::Myers] {
        println!("{alg:?} raw  {:.3} ms", time(|| { let i = InternedInput::new(a, b); std::hint::black_box(Diff::compute(alg, &i)); }));
        println!("{alg:?} +pp  {:.3} ms", time(|| { let i = InternedInput::new(a, b); let mut d = Diff::compute(alg, &i); d.postprocess_lines(&i); std::hint::black_box(d); }));
    }
}

#[allow(dead_code)]
fn letters() {
    use agent_native_core::tokens::{self, Encoding};
    let mut x: u64 = 1;
    let text: String = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect();
    let enc = Encoding::O200kBase;
    let tok = enc.tokenizer();
    println!("letters ours count   {:.3} ms", time(|| { std::hint::black_box(tokens::count(enc, &text)); }));
    println!("letters bpe-openai   {:.3} ms", time(|| { std::hint::black_box(tok.count(text.as_str())); }));
    println!("letters our split    {:.3} ms", time(|| { let mut n = 0; tokens::for_each_piece(enc, &text, |_| n += 1); std::hint::black_box(n); }));
    println!("letters their split  {:.3} ms", time(|| { std::hint::black_box(tok.split(&text).count()); }));
    println!("letters bpe.count    {:.3} ms", time(|| { std::hint::black_box(tok.bpe.count(text.as_bytes())); }));
}

#[allow(dead_code)]
pub fn unified_loop(a: &str, b: &str) {
    let h = textdiff::diff_hunks(a, b);
    let mut n = 0;
    for _ in 0..20000 {
        n += textdiff::unified(a, b, &h, 3, "a", "b").len();
    }
    println!("{n}");
}

#[allow(dead_code)]
fn line_ends_bitmask(text: &str) -> Vec<u32> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 32 + 1);
    let mut chunks = bytes.chunks_exact(64);
    let mut base = 0u32;
    for chunk in &mut chunks {
        let mut mask = 0u64;
        for (j, &b) in chunk.iter().enumerate() {
            mask |= ((b == b'\n') as u64) << j;
        }
        while mask != 0 {
            out.push(base + mask.trailing_zeros());
            mask &= mask - 1;
        }
        base += 64;
    }
    for (j, &b) in chunks.remainder().iter().enumerate() {
        if b == b'\n' {
            out.push(base + j as u32);
        }
    }
    out
}

#[allow(dead_code)]
pub fn line_table_timing(a: &str) {
    println!("bitmask line_ends {:.3} ms ({} lines)", time(|| { std::hint::black_box(line_ends_bitmask(a)); }), line_ends_bitmask(a).len());
    println!("memchr_iter ends  {:.3} ms", time(|| { std::hint::black_box(memchr::memchr_iter(b'\n', a.as_bytes()).collect::<Vec<_>>()); }));
}

#[allow(dead_code)]
pub fn table_vs_lines(a: &str, b: &str) {
    use agent_native_core::textdiff::{diff_tables, LineTable};
    for _ in 0..2 {
        println!("imara lines diff   {:.3} ms", time(|| {
            let input = imara_diff::InternedInput::new(a, b);
            let mut d = imara_diff::Diff::compute(imara_diff::Algorithm::Histogram, &input);
            d.postprocess_lines(&input);
            std::hint::black_box(d);
        }));
        println!("tables + diff      {:.3} ms", time(|| {
            let (at, bt) = (LineTable::new(a), LineTable::new(b));
            std::hint::black_box(diff_tables(a, &at, b, &bt));
        }));
        println!("recording diff     {:.3} ms", time(|| {
            std::hint::black_box(agent_native_core::textdiff::diff_with_tables(a, b));
        }));
        let (at, bt) = (LineTable::new(a), LineTable::new(b));
        let h = diff_tables(a, &at, b, &bt);
        println!("unified_tables     {:.3} ms", time(|| {
            std::hint::black_box(agent_native_core::textdiff::unified_tables(a, &at, b, &bt, &h, 3, "a", "b"));
        }));
    }
}
