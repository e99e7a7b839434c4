//! The standard `process_*` metrics (CPU, memory, file descriptors, threads, start time), read
//! at each scrape.
//!
//! prometheus-client has no process collector of its own. The reading is `metrics-process`'s
//! (a maintained port of client_golang's process collector, for Linux, macOS, Windows and the
//! BSDs; used here without its `metrics`-crate recorder), and this collector only hands its
//! snapshot to prometheus-client's encoder. The alternatives were worse fits: the `prometheus`
//! crate's process collector would bring a second metrics library and its registry, and the
//! `metrics` + exporter stack keeps its counts in a process-wide recorder, while each
//! Application (several per test process) has a registry of its own.
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = metrics_process::collector::collect();
        if let Some(seconds) = now.cpu_seconds_total {
            // The encoder adds `_total` to counters.
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                counter.metric_type(),
            )?)?;
        }
        // An unlimited address space reads as 0 here; "no limit" is better left out.
        let max_vm = now.virtual_memory_max_bytes.filter(|v| *v > 0);
        let gauges = [
            (
                "process_open_fds",
                "Number of open file descriptors.",
                now.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                now.max_fds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                now.virtual_memory_bytes,
            ),
            (
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
                max_vm,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                now.resident_memory_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                now.start_time_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                now.threads,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        Ok(())
    }
}
