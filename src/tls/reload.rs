//! Reloading the TLS files on SIGHUP and when they change.
//!
//! Changes are found by polling each file's (mtime, size, inode) every few seconds: cheap,
//! and it sees every way certificates get replaced — rewritten in place, renamed over
//! (certbot, `mv`), or a Kubernetes secret's symlink swap — where inotify watches on the
//! file would lose track after a rename. A reload that fails keeps the config in use, so a
//! half-written or mismatched pair never takes the listener down; it is retried as soon as
//! any file changes again (the second half of a cert+key update, typically).
use super::{load, TlsFiles, TlsState};
use std::{path::Path, time::Duration, time::SystemTime};
use tokio::{sync::watch, task::JoinHandle};

/// What identifies one version of a file; `None` when it cannot be read.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

fn stamps(files: &TlsFiles) -> Vec<Stamp> {
    files.paths().into_iter().map(stamp).collect()
}

/// Watches the files until `stopping` turns true. `poll` zero: on SIGHUP only.
pub fn spawn(
    files: TlsFiles,
    state: TlsState,
    poll: Duration,
    mut stopping: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    // Registered now, so that a SIGHUP from the moment the service listens is not fatal.
    let mut hangup = signal(SignalKind::hangup())?;
    // Taken after the start-up load read the files: a change in between is seen below.
    let mut seen = stamps(&files);
    Ok(tokio::spawn(async move {
        let mut ticks = (!poll.is_zero()).then(|| tokio::time::interval(poll));
        loop {
            let why = tokio::select! {
                _ = stopping.changed() => return,
                _ = hangup.recv() => "SIGHUP",
                _ = async { match &mut ticks { Some(t) => t.tick().await, None => std::future::pending().await } } => {
                    let now = stamps(&files);
                    if now == seen {
                        continue;
                    }
                    "file change"
                }
            };
            // The stamps before reading: a write that lands during the load shows up as a
            // change on the next tick.
            seen = stamps(&files);
            reload(&files, &state, why);
        }
    }))
}

fn reload(files: &TlsFiles, state: &TlsState, trigger: &str) {
    match load(files) {
        Ok(loaded) => {
            state.replace(loaded.config);
            tracing::info!(
                trigger,
                cert = %files.cert.display(),
                not_after = loaded.not_after.as_deref().unwrap_or("unknown"),
                "TLS certificate reloaded; new connections use it"
            );
        }
        Err(e) => tracing::error!(
            trigger,
            file = %e.file.display(),
            reason = %e.reason,
            "TLS reload failed; still serving the previous certificate"
        ),
    }
}
