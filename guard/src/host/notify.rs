//! systemd's notification protocol (`Type=notify`): ready once attached,
//! reloading while a SIGHUP is applied, stopping on the way out, and a
//! one-line status for `systemctl status`. Without `NOTIFY_SOCKET` (not
//! under systemd) every call does nothing.

/// Started: attached, pinned, controller running.
pub fn ready(status: &str) {
    send(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// A reload begins; [`ready`] ends it.
pub fn reloading() {
    send(&[sd_notify::NotifyState::Reloading]);
}

/// Shutting down: restoring and detaching.
pub fn stopping() {
    send(&[sd_notify::NotifyState::Stopping]);
}

fn send(states: &[sd_notify::NotifyState<'_>]) {
    // A lost notification costs systemd's view, not protection: said at
    // debug level only.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify: {e}");
    }
}
