//! Ctrl-C and SIGTERM. The first signal sets the run's stop flag: the walk stops, reads are
//! abandoned between blocks, no new request is sent, and the report is written for what is
//! known. A second signal exits at once.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

/// The stop flag, and which signal set it.
pub struct Interrupt {
    pub flag: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Install the handlers.
    pub fn install() -> io::Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as it was before this signal: a second
            // signal finds it set and exits with 128 + signal number.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&flag))?;
            signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)?;
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
        }
        Ok(Interrupt { flag, signal })
    }

    /// `130` after SIGINT, `143` after SIGTERM, `None` if no signal came.
    pub fn exit_code(&self) -> Option<u8> {
        if !self.flag.load(Ordering::SeqCst) {
            return None;
        }
        match self.signal.load(Ordering::SeqCst) as i32 {
            SIGTERM => Some(143),
            _ => Some(130),
        }
    }

    pub fn signal_name(&self) -> &'static str {
        if self.signal.load(Ordering::SeqCst) as i32 == SIGTERM {
            "SIGTERM"
        } else {
            "SIGINT"
        }
    }
}
