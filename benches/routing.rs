//! Routing a model name in a table of 1,000 providers and 1,000 routes, and a config reload
//! (parse, validate and build the table) of that config.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prism_gateway::config;
use prism_gateway::router::resolve;
use prism_gateway::table::Table;

const N: usize = 1000;

fn no_env(_: &str) -> Option<String> {
    None
}

fn reload(text: &str) -> Result<Table, String> {
    let c = config::load(text, &no_env).map_err(|e| format!("{e:?}"))?;
    Table::build(&c, Vec::new()).map_err(|e| format!("{e:?}"))
}

fn routing(c: &mut Criterion) {
    let text = common::large_config(N);
    let table = match reload(&text) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("skipping routing: the generated config does not load: {e}");
            return;
        }
    };
    let mut group = c.benchmark_group("route");
    for (label, model) in [
        ("route_ordered", "route-567"),
        ("route_weighted", "route-560"),
        ("provider_prefix", "p0567/some-model"),
        ("provider_prefix_with_fallback", "p0568/some-model"),
        ("bare_default", "gpt-4o-mini"),
        ("unknown", "nope/x"),
    ] {
        group.bench_function(label, |b| b.iter(|| resolve(&table, black_box(model), 0.42)));
    }
    group.finish();

    let mut group = c.benchmark_group("config_reload");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("1000_providers_1000_routes", |b| b.iter(|| reload(black_box(&text))));
    // The two halves of a reload: parse and validate, then build the table.
    group.bench_function("load_only", |b| b.iter(|| config::load(black_box(&text), &no_env)));
    if let Ok(parsed) = config::load(&text, &no_env) {
        group.bench_function("build_only", |b| {
            b.iter(|| Table::build(black_box(&parsed), Vec::new()))
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
