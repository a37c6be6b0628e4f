//! Integration tests: the real binary against an in-process mock of `POST /v4/hash` on
//! 127.0.0.1. One test binary (`tests/integration/`), grouped by topic.

mod util;

mod architecture;

// Unix only: the archives are built with python3.
#[cfg(unix)]
mod archives;
mod baseline;
mod budget;
mod cache;
// Unix only: the filters are cross-checked with python3 (flor).
#[cfg(unix)]
mod circl;
// CIRCL's answers in the cache, night after night (Unix: file contents as in `circl`).
#[cfg(unix)]
mod circl_nights;
// Unix only: checked against coreutils (sha256sum, md5sum, sha1sum), gethostname(3) and inodes.
#[cfg(unix)]
mod ecs;
mod faults;
// Unix only: Unix file modes, openat and unreadable directories.
#[cfg(unix)]
mod filesystem;
mod firstday;
mod fuzz_regressions;
// Property tests of a whole run: one record per path, no clean without an answer, report
// round trips through `diff`.
mod invariants;
// Unix only: redis-server and signals to the gateway process.
#[cfg(unix)]
mod gateway;
// The README and the user guide (docs/): size, links, chapters, flags.
mod guide;
// Unix only: the lists are checked with coreutils' `sha256sum -c` (and md5sum, sha1sum).
#[cfg(unix)]
mod hash_cmd;
mod hashsets;
mod help;
// Unix only: the oracles (pymisp, stix2-matcher) run in python3.
#[cfg(unix)]
mod iocs;
// Unix only: SIGINT/SIGTERM sent with kill(2); Windows Ctrl-C is not sent by a test.
#[cfg(unix)]
mod interrupt;
// Unix only: /proc, mount(8) and running processes.
#[cfg(unix)]
mod livesys;
mod lookup_cmd;
mod lookups;
mod nights;
// Unix only: runs cargo metadata.
#[cfg(unix)]
mod msrv;
mod nsrl;
// Unix only: umask(2), file modes and SIGTERM to the gateway.
#[cfg(unix)]
mod outputs;
// Unix only: the archives are built with python3 and GNU tar.
#[cfg(unix)]
mod odd_archives;
// Unix only: symlinks, and the package managers' own tools to check against.
#[cfg(unix)]
mod packages;
mod packaging;
mod parsers;
// Unix only: the README's shell scripts (sh, jq).
#[cfg(unix)]
mod readme;
mod report;
mod review;
mod scan;
mod secrecy;
// Unix only: the completion scripts are checked with bash.
#[cfg(unix)]
mod shell;
mod throttling;
mod upload;
// Windows only: locked files, junctions, long paths, case-insensitive names.
#[cfg(windows)]
mod windows;
// `--yara` (the yara feature, on by default); Unix: tar(1) and coreutils build the trees.
#[cfg(all(unix, feature = "yara"))]
mod yara;
