//! Histogram samples must not pile up in a service nobody scrapes: `shared::metrics::keep_up`
//! folds them into their buckets. Measured with an allocator that counts the bytes in use,
//! in a test binary of its own so that nothing else allocates meanwhile.

use metrics_exporter_prometheus::PrometheusBuilder;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::{
    alloc::System,
    time::{Duration, Instant},
};

/// The system allocator, counting what is allocated and freed (stats_alloc, because this
/// workspace forbids the unsafe code a counting allocator of our own would need).
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn in_use() -> isize {
    let stats = ALLOCATOR.stats();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

#[test]
fn histogram_samples_are_folded_away_without_a_scrape() {
    const SAMPLES: usize = 200_000;
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01, 0.1])
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        metrics::histogram!("upkeep_test_seconds").record(0.002);
    });
    let before = in_use();
    metrics::with_local_recorder(&recorder, || {
        for _ in 0..SAMPLES {
            metrics::histogram!("upkeep_test_seconds").record(0.002);
        }
    });
    let held = in_use() - before;
    // Each sample is held as an f64 until the upkeep: at least a megabyte here.
    assert!(
        held >= (SAMPLES * 8) as isize / 2,
        "only {held} bytes held after {SAMPLES} samples: the test no longer measures the samples"
    );

    shared::metrics::keep_up(handle.clone(), Duration::from_millis(20)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let still_held = in_use() - before;
        if still_held < held / 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{still_held} of the {held} bytes the samples took are still held after 10 s of upkeep"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Folded, not lost: every sample is counted in the rendered histogram.
    let rendered = handle.render();
    assert!(
        rendered.contains(&format!("upkeep_test_seconds_count {}", SAMPLES + 1)),
        "{rendered}"
    );
}
