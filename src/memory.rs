//! The process's resident memory as the kernel reports it (`/proc/self/status`), for the
//! memory benchmark (`E2E_MEM=1 cargo bench --bench e2e`) and the no-growth test
//! (`tests/memory.rs`). Linux only: elsewhere [`status`] returns an `Unsupported` error.

use std::io;

/// Resident set sizes of this process, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// `VmRSS`: resident now.
    pub rss: u64,
    /// `VmHWM`: the highest `rss` since the process started (the peak).
    pub peak: u64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/self/status`.
pub fn status() -> io::Result<Status> {
    let text = std::fs::read_to_string("/proc/self/status")?;
    parse_status(&text)
}

/// Parses the text of a `/proc/<pid>/status` file (sizes are given there in kB).
pub fn parse_status(text: &str) -> io::Result<Status> {
    let field = |name: &str| -> io::Result<u64> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("no {name} line in the process status (not Linux?)"),
                )
            })?;
        let kb = line
            .trim()
            .strip_suffix("kB")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{name} is {line:?}, expected a number of kB"),
                )
            })?;
        Ok(kb * 1024)
    };
    Ok(Status {
        rss: field("VmRSS")?,
        peak: field("VmHWM")?,
    })
}

/// Bytes as mebibytes, for reports.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_two_fields_in_kb() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t2\n";
        assert_eq!(
            parse_status(text).unwrap(),
            Status {
                rss: 1024 * 1024,
                peak: 2048 * 1024
            }
        );
    }

    #[test]
    fn a_missing_or_malformed_field_is_an_error() {
        let missing = parse_status("VmRSS:\t1 kB\n").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::Unsupported);
        assert!(missing.to_string().contains("VmHWM"));
        let bad = parse_status("VmRSS:\tlots\nVmHWM:\t1 kB\n").unwrap_err();
        assert_eq!(bad.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn this_process_reports_a_peak_at_least_its_rss() {
        if cfg!(target_os = "linux") {
            let s = status().unwrap();
            assert!(s.rss > 0 && s.peak >= s.rss, "{s:?}");
        }
    }
}
