//! Stopping a server on SIGTERM or Ctrl-C.
//!
//! The handlers are installed when [`stop`] is called, not when its future is
//! first polled. A server calls it before it prints its address, so a signal
//! sent right after the address appears starts a graceful drain. Installed
//! any later, such a signal would meet the default action and kill the
//! process with requests in flight.

use std::future::Future;

/// Installs SIGTERM and SIGINT handlers now and returns a future that
/// completes on the first of those signals. Call it inside a tokio runtime
/// with I/O enabled.
///
/// # Errors
///
/// When a handler cannot be installed.
pub fn stop() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// The signal is sent, and has been delivered, before the future is first
    /// polled: it must still be seen, and must not kill the test process.
    #[test]
    fn a_sigterm_before_the_first_poll_is_caught() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let stop = super::stop().unwrap();
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &std::process::id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
            tokio::time::timeout(Duration::from_secs(10), stop)
                .await
                .expect("SIGTERM seen");
        });
    }
}
