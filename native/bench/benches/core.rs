//! Criterion benches of the core hot paths (Rust only, no Python):
//! `cargo bench --manifest-path native/Cargo.toml -p agent-native-bench`.

use agent_native_bench::{edit_lines, mixed_text, python_file, tool_arguments};
use agent_native_core::{merge, partial_json, sse, textdiff, tokens};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench_tokens(c: &mut Criterion) {
    let text = mixed_text(1 << 20);
    let mut g = c.benchmark_group("tokens");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(20);
    for enc in [tokens::Encoding::O200kBase, tokens::Encoding::Cl100kBase] {
        g.bench_function(format!("count_1MiB_{}", enc.name()), |b| b.iter(|| tokens::count(enc, &text)));
    }
    let small = &text[..100_000];
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("incremental_100KB_in_100B_appends", |b| {
        b.iter(|| {
            let mut counter = tokens::IncrementalCounter::new(tokens::Encoding::O200kBase);
            let mut i = 0;
            while i < small.len() {
                let mut j = (i + 100).min(small.len());
                while !small.is_char_boundary(j) {
                    j += 1;
                }
                counter.append(&small[i..j]);
                i = j;
            }
            counter.total()
        })
    });
    g.finish();
}

fn bench_diff_merge(c: &mut Criterion) {
    let a = python_file(5000, 11);
    let b2 = edit_lines(&a, 0.02, 12);
    let base = python_file(5000, 21);
    let ours = edit_lines(&base, 0.02, 22);
    let theirs = edit_lines(&base, 0.02, 23);
    let mut g = c.benchmark_group("diff_merge");
    g.bench_function("diff_5000_lines_unified", |b| {
        b.iter(|| {
            let h = textdiff::diff_hunks(&a, &b2);
            textdiff::unified(&a, &b2, &h, 3, "a", "b")
        })
    });
    g.bench_function("merge3_5000_lines", |b| b.iter(|| merge::merge3(&base, &ours, &theirs, ("ours", "theirs"))));
    g.finish();
}

fn bench_streams(c: &mut Criterion) {
    let args = tool_arguments(100_000);
    let frags: Vec<&str> = {
        let mut v = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let mut j = (i + 14).min(args.len());
            while !args.is_char_boundary(j) {
                j += 1;
            }
            v.push(&args[i..j]);
            i = j;
        }
        v
    };
    let stream: Vec<u8> = frags
        .iter()
        .enumerate()
        .map(|(k, f)| format!("id: {k}\ndata: {{\"delta\": {:?}}}\n\n", f))
        .collect::<String>()
        .into_bytes();
    let mut g = c.benchmark_group("streams");
    g.throughput(Throughput::Bytes(args.len() as u64));
    g.bench_function("partial_json_100KB_in_14B_fragments", |b| {
        b.iter(|| {
            let mut p = partial_json::PartialJsonParser::new(1);
            let mut n = 0;
            for f in &frags {
                n += p.feed(f).unwrap().len();
            }
            n
        })
    });
    g.throughput(Throughput::Elements(frags.len() as u64));
    g.bench_function("sse_events_4KiB_chunks", |b| {
        b.iter(|| {
            let mut p = sse::SseParser::new(sse::DEFAULT_MAX_BUFFER);
            let mut n = 0;
            for chunk in stream.chunks(4096) {
                n += p.feed(chunk).unwrap().len();
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench_tokens, bench_diff_merge, bench_streams);
criterion_main!(benches);
