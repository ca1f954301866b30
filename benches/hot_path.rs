//! Criterion benches of the per-message hot path: what every message costs in the library, without sockets.
//!
//! Each bench runs the real library code on a batch of messages per iteration and reports throughput in
//! elements (messages), so criterion prints messages per second and the time per batch; divide by the batch
//! size for the time per message. State that a real session builds once (trackers, histograms, accounts) is
//! built outside the timed part (`iter_batched_ref`); growth during the batch (bitset words, record runs) is
//! inside it, as it is in a session. Inputs are deterministic (seeded), so runs compare.
//!
//! Run: `cargo bench --bench hot_path` (about 40 s); one group: `cargo bench --bench hot_path -- seq_tracker`.
//! Speed targets are ratios between benches of one run, never absolute times: machines are shared and noisy.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::{Rng, SeedableRng};

use sockbench::accounting::Account;
use sockbench::stats::{DelayStats, SeqTracker};
use sockbench::wire::{self, Framer, Header};

/// Messages per timed iteration for the per-arrival benches.
const BATCH: u64 = 1 << 16;
const SESSION: u64 = 0x5EED_0000_0000_0001;
/// Wall-clock-like base time (ns since the epoch) so timestamps look like real ones.
const T0: i64 = 1_795_000_000_000_000_000;
const RATE_GAP_NS: i64 = 1_000;

/// `n` stamped messages of `size` bytes, seqs 0..n, and their parsed headers.
fn messages(size: usize, n: u64) -> (Vec<Vec<u8>>, Vec<Header>) {
    let tpl = wire::template(SESSION, size, false);
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|seq| {
            let mut m = tpl.clone();
            let t = T0 + seq as i64 * RATE_GAP_NS;
            wire::stamp(&mut m, seq, t, t + 200);
            m
        })
        .collect();
    let hdrs = msgs.iter().map(|m| Header::parse(m).unwrap()).collect();
    (msgs, hdrs)
}

/// Arrival order with each sequence number lost with probability `loss`, and a fraction `reorder` of the
/// survivors held back by 1..=16 positions (the rest keep their order). Seeded, so every run sees the same.
fn arrivals(n: u64, loss: f64, reorder: f64, seed: u64) -> Vec<u64> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    // (position key, seq): a held-back message gets a key a few places later, then sort by key.
    let mut keyed: Vec<(u64, u64)> = Vec::with_capacity(n as usize);
    for seq in 0..n {
        if rng.random_bool(loss) {
            continue;
        }
        let key = if rng.random_bool(reorder) {
            seq * 32 + rng.random_range(1..=16) * 32 + 16
        } else {
            seq * 32
        };
        keyed.push((key, seq));
    }
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, s)| s).collect()
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .without_plots()
}

fn bench_stamp(c: &mut Criterion) {
    let mut g = c.benchmark_group("stamp");
    g.throughput(Throughput::Elements(1));
    for size in [64usize, 1400, 131_072] {
        let mut msg = wire::template(SESSION, size, false);
        let stamper = wire::Stamper::new(&msg);
        let mut seq = 0u64;
        g.bench_function(format!("{size}B"), |b| {
            b.iter(|| {
                seq += 1;
                let t = T0 + seq as i64;
                wire::stamp(black_box(&mut msg), seq, t, t + 100);
            })
        });
        g.bench_function(format!("{size}B_stamper"), |b| {
            b.iter(|| {
                seq += 1;
                let t = T0 + seq as i64;
                stamper.stamp(black_box(&mut msg), seq, t, t + 100);
            })
        });
    }
    g.finish();
}

fn bench_parse_verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_verify");
    g.throughput(Throughput::Elements(1));
    for size in [64usize, 1400] {
        let (msgs, _) = messages(size, 64);
        let mut i = 0usize;
        g.bench_function(format!("{size}B"), |b| {
            b.iter(|| {
                i = (i + 1) & 63;
                let m = black_box(&msgs[i][..]);
                let h = Header::parse(m).unwrap();
                black_box(wire::verify(m, &h))
            })
        });
    }
    g.finish();
}

/// --key-file's cost per message: the sender's MAC after the stamp, the receiver's check before accounting.
fn bench_mac(c: &mut Criterion) {
    let secret = sockbench::auth::Secret::from_bytes(b"a benchmark key of enough bytes").unwrap();
    let keys = secret.session_keys(SESSION, &[1; 16], &[2; 16]);
    let up = sockbench::auth::Dir::SenderToReceiver;
    let mut g = c.benchmark_group("mac");
    g.throughput(Throughput::Elements(1));
    for size in [64usize, 1400] {
        let mut msg = wire::template(SESSION, size, true);
        let mut seq = 0u64;
        g.bench_function(format!("stamp_seal_{size}B"), |b| {
            b.iter(|| {
                seq += 1;
                let t = T0 + seq as i64;
                wire::stamp(black_box(&mut msg), seq, t, t + 100);
                keys.seal_message(up, &mut msg);
            })
        });
        g.bench_function(format!("verify_{size}B"), |b| {
            b.iter(|| black_box(keys.verify_message(up, black_box(&msg))))
        });
    }
    g.finish();
}

fn bench_seq_tracker(c: &mut Criterion) {
    let mut g = c.benchmark_group("seq_tracker");
    let cases = [
        ("in_order", arrivals(BATCH, 0.0, 0.0, 1)),
        ("loss_5pct", arrivals(BATCH, 0.05, 0.0, 2)),
        ("reorder_5pct", arrivals(BATCH, 0.0, 0.05, 3)),
        ("loss_5pct_reorder_5pct", arrivals(BATCH, 0.05, 0.05, 4)),
    ];
    for (name, seqs) in &cases {
        g.throughput(Throughput::Elements(seqs.len() as u64));
        g.bench_function(*name, |b| {
            b.iter_batched_ref(
                || SeqTracker::new(BATCH),
                |t| {
                    for &s in seqs {
                        black_box(t.record(s));
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn bench_delay_stats(c: &mut Criterion) {
    let mut g = c.benchmark_group("delay_stats");
    // Delays spread over 20 µs .. 2 ms so the histograms see many buckets, as on a real path.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    let times: Vec<(u64, i64, i64, i64)> = (0..BATCH)
        .map(|seq| {
            let sched = T0 + seq as i64 * RATE_GAP_NS;
            let send = sched + rng.random_range(0..500);
            let recv = send + rng.random_range(20_000..2_000_000);
            (seq, sched, send, recv)
        })
        .collect();
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("record", |b| {
        b.iter_batched_ref(
            DelayStats::new,
            |d| {
                for &(seq, sched, send, recv) in &times {
                    d.record(seq, sched, send, recv);
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_account(c: &mut Criterion) {
    let mut g = c.benchmark_group("account_on_message");
    const N: u64 = 1 << 14;
    for size in [64usize, 1400] {
        let (msgs, hdrs) = messages(size, N);
        g.throughput(Throughput::Elements(N));
        g.bench_function(format!("{size}B"), |b| {
            b.iter_batched_ref(
                || Account::new(SESSION, N, size, false),
                |a| {
                    for (i, (m, h)) in msgs.iter().zip(&hdrs).enumerate() {
                        let recv = T0 + i as i64 * RATE_GAP_NS + 30_000;
                        black_box(a.on_message(m, h, recv));
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn bench_framer(c: &mut Criterion) {
    let mut g = c.benchmark_group("framer");
    const SIZE: usize = 64;
    const STREAM: usize = 1 << 20;
    let n = (STREAM / SIZE) as u64;
    let (msgs, _) = messages(SIZE, n);
    let stream: Vec<u8> = msgs.concat();
    g.throughput(Throughput::Elements(n));
    // Reads of 65000 bytes (not a multiple of 64, so some messages are split between reads, as TCP does),
    // and of 1 MiB at once (all coalesced). The copy into the framer stands in for the kernel's read copy.
    for (name, read) in [
        ("1MiB_64B_reads_65000", 65_000usize),
        ("1MiB_64B_reads_256k", 1 << 18),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || Framer::new(SIZE),
                |f| {
                    let mut pos = 0;
                    let mut frames = 0u64;
                    while pos < stream.len() {
                        let spare = f.spare();
                        let k = spare.len().min(read).min(stream.len() - pos);
                        spare[..k].copy_from_slice(&stream[pos..pos + k]);
                        pos += k;
                        f.filled(k);
                        while let Some(fr) = f.next_frame() {
                            black_box(fr.unwrap().len());
                            frames += 1;
                        }
                        f.end_read();
                    }
                    assert_eq!(frames, n);
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = hot_path;
    config = config();
    targets = bench_stamp, bench_parse_verify, bench_mac, bench_seq_tracker, bench_delay_stats, bench_account, bench_framer
}
criterion_main!(hot_path);
