//! Cancellation: a token the caller sets (from a signal handler, another
//! thread) and long-running work reads at safe points. Fine-tuning stops after
//! the step in progress (`train::Trainer::with_cancel`); an atomic save
//! (`onnx::SaveOptions::cancel`) discards its temporary files instead of
//! renaming them into place. The library installs no signal handler and keeps
//! no global flag: the command line owns the token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set it and the work that holds a clone stops at its next safe point.
pub type Cancel = Arc<AtomicBool>;

/// Whether `cancel` is given and set.
pub fn is_set(cancel: Option<&Cancel>) -> bool {
    cancel.is_some_and(|c| c.load(Ordering::SeqCst))
}

/// The environment variable of [`interrupt_point`].
pub const INTERRUPT_AT_VAR: &str = "FUSEC_INTERRUPT_AT";

/// A test hook that makes Ctrl-C land at a known point instead of at a time:
/// with `FUSEC_INTERRUPT_AT=<point>` set, the process sends itself SIGINT when it
/// reaches `point` and waits (bounded) until the handler has set `cancel`.
/// Points: `save` (a model's temporary files written, not yet renamed into
/// place) and `step:N` (fine-tuning step N done). Does nothing when the
/// variable is unset.
pub fn interrupt_point(point: &str, cancel: Option<&Cancel>) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT.get_or_init(|| std::env::var(INTERRUPT_AT_VAR).ok()).as_deref() != Some(point) {
        return;
    }
    #[cfg(unix)]
    {
        // SAFETY: raise has no memory-safety preconditions
        unsafe { libc::raise(libc::SIGINT) };
        // the handler runs on its own thread: wait for it (bounded, in case none is installed)
        for _ in 0..10_000 {
            if is_set(cancel) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    #[cfg(not(unix))]
    if let Some(c) = cancel {
        c.store(true, Ordering::SeqCst);
    }
}
