//! Keeping the keyboard out of a streaming answer: while the model writes, the terminal's echo
//! is off, so Ctrl-C's "^C" and keys typed ahead do not land in the middle of the answer (what
//! is typed ahead still reaches the next prompt).

/// Echo off on a terminal stdin until dropped; does nothing when stdin is not a terminal.
pub struct QuietInput {
    #[cfg(unix)]
    saved: Option<libc::termios>,
}

#[cfg(unix)]
impl QuietInput {
    pub fn new() -> Self {
        let fd = libc::STDIN_FILENO;
        // SAFETY: termios is plain data that tcgetattr fills completely on success; on failure
        // (not a terminal) it is discarded.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid, writable termios for the duration of the call.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return QuietInput { saved: None };
        }
        let saved = t;
        t.c_lflag &= !(libc::ECHO | libc::ECHOCTL);
        // SAFETY: `t` is the terminal's own settings with two flags cleared.
        let ok = unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } == 0;
        QuietInput {
            saved: ok.then_some(saved),
        }
    }
}

#[cfg(unix)]
impl Drop for QuietInput {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: restores settings tcgetattr returned for this same descriptor.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
        }
    }
}

#[cfg(not(unix))]
impl QuietInput {
    pub fn new() -> Self {
        QuietInput {}
    }
}
