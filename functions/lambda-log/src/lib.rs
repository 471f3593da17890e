//! The logs of every Aula Lambda function: one JSON object a line, filtered by `RUST_LOG`
//! (`info` when unset or unreadable), without the current span and without a time stamp,
//! since CloudWatch stamps each line.

/// Installs the JSON subscriber for the whole process; call once, first thing in `run`.
pub fn init() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time() // CloudWatch stamps each line
        .init();
}
