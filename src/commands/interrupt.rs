//! Ctrl-C and SIGTERM. The first signal says that the report is being finished and sets the
//! run's stop flag: the walk stops, reads are abandoned between blocks, no new request is
//! sent, and the report is written for what is known. A second signal says it is stopping now
//! and exits at once. On Windows, Ctrl-C and Ctrl-Break count as SIGINT and closing the
//! console as SIGTERM, through `SetConsoleCtrlHandler` (the C runtime's `signal()` is not used
//! there).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

/// What a second signal says as it ends the process (written from the signal handler, so a
/// static text).
fn stopping_now(sig: i32) -> &'static [u8] {
    if sig == SIGTERM {
        b"\nhashsweep: second SIGTERM: stopping now, without finishing the report\n"
    } else {
        b"\nhashsweep: second SIGINT (Ctrl-C): stopping now, without finishing the report\n"
    }
}

/// What a first signal says as the run winds down (written from the signal handler, so a
/// static text): the user knows the wait is the report being finished, and how not to wait.
fn finishing(sig: i32) -> &'static [u8] {
    if sig == SIGTERM {
        b"\nhashsweep: interrupted (SIGTERM): finishing the report with what is known \
          (SIGTERM again to stop at once)\n"
    } else {
        b"\nhashsweep: interrupted (SIGINT): finishing the report with what is known \
          (Ctrl-C again to stop at once)\n"
    }
}

/// The stop flag, and which signal set it.
pub struct Interrupt {
    pub flag: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Install the handlers.
    #[cfg(windows)]
    pub fn install() -> io::Result<Interrupt> {
        use windows_sys::Win32::System::Console::{
            CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT, SetConsoleCtrlHandler,
        };
        static STATE: std::sync::OnceLock<(Arc<AtomicBool>, Arc<AtomicUsize>)> =
            std::sync::OnceLock::new();
        unsafe extern "system" fn on_ctrl(event: u32) -> i32 {
            let Some((flag, signal)) = STATE.get() else {
                return 0;
            };
            let sig = match event {
                CTRL_CLOSE_EVENT | CTRL_LOGOFF_EVENT | CTRL_SHUTDOWN_EVENT => SIGTERM,
                _ => SIGINT,
            };
            use std::io::Write as _;
            if flag.load(Ordering::SeqCst) {
                let _ = io::stderr().write_all(stopping_now(sig));
                std::process::exit(128 + sig);
            }
            let _ = io::stderr().write_all(finishing(sig));
            signal.store(sig as usize, Ordering::SeqCst);
            flag.store(true, Ordering::SeqCst);
            1
        }
        let (flag, signal) = STATE.get_or_init(|| {
            (
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicUsize::new(0)),
            )
        });
        // SAFETY: `on_ctrl` is a valid handler for the life of the process; it runs on a
        // thread of its own (Windows calls console handlers that way), where it may take locks.
        if unsafe { SetConsoleCtrlHandler(Some(on_ctrl), 1) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Interrupt {
            flag: Arc::clone(flag),
            signal: Arc::clone(signal),
        })
    }

    /// Install the handlers.
    #[cfg(unix)]
    pub fn install() -> io::Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            let first = Arc::clone(&flag);
            let (said_first, said) = (finishing(sig), stopping_now(sig));
            // Registered first, so it sees the flag as it was before this signal: the first
            // signal finds it clear and says the report is being finished; a second finds it
            // set, says so and exits with 128 + signal number.
            let second = move || {
                let stopping = first.load(Ordering::SeqCst);
                let text = if stopping { said } else { said_first };
                // SAFETY: write(2) on fd 2 from a static buffer is async-signal-safe; a
                // failed write is ignored.
                let _ = unsafe { libc::write(2, text.as_ptr().cast(), text.len() as _) };
                if stopping {
                    signal_hook::low_level::exit(128 + sig);
                }
            };
            // SAFETY: the action is async-signal-safe: it loads an atomic, calls write(2)
            // and _exit(2), and neither allocates nor takes a lock.
            unsafe { signal_hook::low_level::register(sig, second) }?;
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
