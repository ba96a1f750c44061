//! SIGINT, SIGTERM and SIGHUP, caught for the whole life of `run` and `resume`: the same
//! whether they come from a terminal's Ctrl-C, through a pipeline's process group
//! (`concurrent run dag.yaml | tee run.log`), from `kill`, or from a service manager.
//!
//! SIGINT cancels the run (exit 130); SIGTERM and SIGHUP stop the scheduler and leave the run
//! resumable (exit 143 / 129).

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::{EXIT_CANCELLED, EXIT_STOPPED};

/// Which stop signal arrived first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT: cancel the run.
    Interrupt,
    /// SIGTERM or SIGHUP: stop driving it, leave it resumable.
    Terminate { hangup: bool },
}

impl StopSignal {
    /// The exit code: 128 + the signal's number.
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => EXIT_CANCELLED,
            StopSignal::Terminate { hangup: true } => 128 + 1,
            StopSignal::Terminate { hangup: false } => EXIT_STOPPED,
        }
    }
}

/// The stop signals of this process, once installed.
#[derive(Clone)]
pub struct Signals {
    /// Cancelled on SIGINT.
    pub cancel: CancellationToken,
    /// Cancelled on SIGTERM or SIGHUP.
    pub stop: CancellationToken,
    first: std::sync::Arc<std::sync::OnceLock<StopSignal>>,
}

impl Signals {
    /// Installs the handlers; from then on these signals no longer end the process.
    pub fn install() -> std::io::Result<Signals> {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let signals = Signals {
            cancel: CancellationToken::new(),
            stop: CancellationToken::new(),
            first: std::sync::Arc::new(std::sync::OnceLock::new()),
        };
        let handler = signals.clone();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    _ = interrupt.recv() => StopSignal::Interrupt,
                    _ = terminate.recv() => StopSignal::Terminate { hangup: false },
                    _ = hangup.recv() => StopSignal::Terminate { hangup: true },
                };
                let first = *handler.first.get_or_init(|| received);
                tracing::info!(?received, "stop signal");
                match first {
                    StopSignal::Interrupt => handler.cancel.cancel(),
                    StopSignal::Terminate { .. } => handler.stop.cancel(),
                }
            }
        });
        Ok(signals)
    }

    /// The first stop signal received, if any.
    pub fn received(&self) -> Option<StopSignal> {
        self.first.get().copied()
    }
}
