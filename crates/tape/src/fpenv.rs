//! The floating-point environment compiled functions run in: on x86-64, subnormal results are
//! flushed to zero and subnormal inputs read as zero (MXCSR's FTZ and DAZ bits) for the duration
//! of a call, then the caller's setting is restored.
//!
//! Training drives some values into the subnormal range (softmax probabilities of confident
//! predictions, gradients through them); x86 arithmetic on subnormals is around a hundred times
//! slower, which made a long-trained digits network's step five times slower. Values that small
//! never change a result that matters, and the flags make the outcome deterministic per machine,
//! as before. Update rules that run outside compiled functions (`optim`) use the same guard.

/// Sets FTZ and DAZ while alive; restores the previous control word when dropped (also on panic).
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

impl FlushDenormals {
    /// Turns flushing on for the current thread.
    #[allow(clippy::new_without_default)] // a guard with a side effect, not a value
    pub fn new() -> FlushDenormals {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = read_mxcsr();
            if saved & FTZ_DAZ != FTZ_DAZ {
                write_mxcsr(saved | FTZ_DAZ);
            }
            FlushDenormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            FlushDenormals {}
        }
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if self.saved & FTZ_DAZ != FTZ_DAZ {
            write_mxcsr(self.saved);
        }
    }
}

/// The current thread's floating-point mode word (MXCSR on x86-64, 0 elsewhere), so helper
/// threads can compute in the same mode as the thread that handed them work.
pub(crate) fn current_mode() -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        read_mxcsr()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Sets a mode word from [`current_mode`] while alive, restoring the previous one after.
pub(crate) struct ModeGuard {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

impl ModeGuard {
    /// Switches the current thread to `mode`.
    pub(crate) fn set(mode: u32) -> ModeGuard {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = read_mxcsr();
            if saved != mode {
                write_mxcsr(mode);
            }
            ModeGuard { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = mode;
            ModeGuard {}
        }
    }
}

impl Drop for ModeGuard {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if read_mxcsr() != self.saved {
            write_mxcsr(self.saved);
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut word: u32 = 0;
    // SAFETY: `stmxcsr` stores the 32-bit control/status register to the given, valid address.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut word, options(nostack, preserves_flags))
    };
    word
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(word: u32) {
    // SAFETY: `ldmxcsr` loads a control word read from this register with only the FTZ/DAZ mode
    // bits changed, which are valid settings on every x86-64 processor with SSE2.
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &word, options(nostack, preserves_flags)) };
}

#[cfg(test)]
mod tests {
    use super::FlushDenormals;

    #[test]
    fn subnormals_flush_inside_and_the_setting_is_restored() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        let half = std::hint::black_box(0.5f32);
        assert!(tiny * half > 0.0, "IEEE gradual underflow outside");
        {
            let _guard = FlushDenormals::new();
            #[cfg(target_arch = "x86_64")]
            assert_eq!(std::hint::black_box(tiny) * std::hint::black_box(half), 0.0);
        }
        assert!(tiny * half > 0.0, "restored afterwards");
    }
}
