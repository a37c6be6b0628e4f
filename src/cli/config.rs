//! From flags to the library's configuration: pure functions, no I/O (the key, the CA file and
//! the cache are read by the runners and passed in), so each rule is tested here.

#[cfg(feature = "gateway")]
use std::time::Duration;

use hashsweep::cache::Ttls;
#[cfg(feature = "gateway")]
use hashsweep::gateway::UpstreamConfig;
use hashsweep::lookup::{ApiKey, ClientConfig, LookupOptions};
use hashsweep::scan::archive::ArchiveOptions;
use hashsweep::scan::hash::HashOptions;
use hashsweep::scan::io::IoOptions;
use hashsweep::scan::walk::WalkOptions;

#[cfg(feature = "gateway")]
use super::ServeArgs;
use super::{ApiArgs, ArchiveArgs, ConnectionArgs, TtlArgs, WalkArgs};

/// Hash worker threads when `-j` is not given: one per CPU.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// How the tree is walked.
pub fn walk_options(w: &WalkArgs) -> WalkOptions {
    WalkOptions {
        follow_symlinks: w.follow_symlinks,
        one_file_system: w.one_file_system,
        threads: w.threads.unwrap_or_else(default_threads),
        excludes: w.exclude.clone(),
        skip: Vec::new(),
        pseudo_fs: w.pseudo_fs,
    }
}

/// What each file's read computes and leaves alone (`md5`/`sha1`: whatever the caller needs).
pub fn hash_options(w: &WalkArgs, md5: bool, sha1: bool) -> HashOptions {
    HashOptions {
        md5,
        sha1,
        max_size: w.max_size,
        follow_symlinks: w.follow_symlinks,
        archives: archive_options(&w.archive),
        streams: w.streams,
    }
}

/// How reads are issued: `--io-depth` (none: adaptive) and `--max-io-rate`.
pub fn io_options(w: &WalkArgs) -> IoOptions {
    IoOptions {
        depth: w.io_depth.map(usize::from),
        max_rate: w.max_io_rate,
    }
}

/// `--archives` and its limits (`None`: archives are hashed as files only).
pub fn archive_options(a: &ArchiveArgs) -> Option<ArchiveOptions> {
    Some(ArchiveOptions {
        formats: a.archives?,
        depth: a.archive_depth,
        max_bytes: a.archive_max_bytes,
        max_member: a.archive_max_member,
        max_members: a.archive_max_members,
        timeout: a.archive_timeout,
        max_ratio: a.archive_max_ratio,
    })
}

/// The HTTP client's configuration.
/// `rate`: `--rate`, for the subcommands that batch (`check` sends one request).
pub fn client_config(
    c: &ConnectionArgs,
    rate: Option<u32>,
    key: ApiKey,
    ca_cert: Option<Vec<u8>>,
) -> ClientConfig {
    let mut cfg = ClientConfig::new(c.api_url.clone(), key);
    cfg.retries = c.retries;
    cfg.max_wait = c.max_wait;
    cfg.timeout = c.timeout;
    cfg.connect_timeout = c.connect_timeout;
    cfg.insecure_http = c.insecure_http;
    cfg.rate = rate;
    cfg.ca_cert = ca_cert;
    cfg
}

/// `scan`'s and `lookup`'s client: the connection, plus `--details`.
pub fn api_client_config(a: &ApiArgs, key: ApiKey, ca_cert: Option<Vec<u8>>) -> ClientConfig {
    let mut cfg = client_config(&a.conn, a.batch.rate, key, ca_cert);
    cfg.details = a.details;
    cfg
}

/// How batches are formed and sent.
pub fn lookup_options(a: &ApiArgs) -> LookupOptions {
    LookupOptions {
        algo: a.lookup_hash,
        batch_size: usize::from(a.batch.batch_size),
        concurrency: usize::from(a.batch.concurrency),
        batch_wait: a.batch.batch_wait,
        circl: None,
    }
}

/// How long answers are reused; `other:*` verdicts as long as clean ones.
pub fn ttls(t: &TtlArgs) -> Ttls {
    Ttls {
        clean: t.verdict_ttl,
        other: t.verdict_ttl,
        detection: t.detection_ttl,
        unknown: t.unknown_ttl,
    }
}

/// The gateway's upstream.
#[cfg(feature = "gateway")]
pub fn upstream_config(a: &ServeArgs, client: ClientConfig) -> UpstreamConfig {
    let b = &a.batch;
    UpstreamConfig {
        client,
        batch_size: usize::from(b.batch_size),
        batch_wait: b.batch_wait,
        concurrency: usize::from(b.concurrency),
        max_pending: a.max_pending,
        claim_ttl: claim_ttl(&a.upstream),
    }
}

/// Long enough for one whole lookup: every attempt, the backoffs and a 429 wait, so a claim
/// does not lapse (and another instance ask too) while its lookup still runs.
#[cfg(feature = "gateway")]
fn claim_ttl(c: &ConnectionArgs) -> Duration {
    c.timeout.saturating_mul(c.retries.saturating_add(1)) + c.max_wait + Duration::from_secs(30)
}

/// Most cases compare the gateway's defaults with an endpoint's: they need the gateway feature.
#[cfg(all(test, feature = "gateway"))]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, try_parse_from};
    use hashsweep::gateway::UPSTREAM;
    use hashsweep::lookup::Patience;

    fn parse(args: &[&str]) -> Command {
        let cli: Cli = try_parse_from(args.iter().copied()).expect("parses");
        cli.command
    }

    fn key() -> ApiKey {
        ApiKey::new("k").expect("key")
    }

    /// Each subcommand gets the defaults the library defines for it: the same flags, a more
    /// impatient upstream for the gateway.
    #[test]
    fn defaults_come_from_the_library_per_subcommand() {
        let Command::Scan(scan) = parse(&["hashsweep", "scan", "."]) else {
            panic!("not scan")
        };
        let cfg = api_client_config(&scan.api, key(), None);
        let endpoint = Patience::ENDPOINT;
        assert_eq!(
            (cfg.retries, cfg.max_wait, cfg.timeout),
            (endpoint.retries, endpoint.max_wait, endpoint.timeout)
        );
        assert_eq!(lookup_options(&scan.api).batch_wait, endpoint.batch_wait);
        assert_eq!(ttls(&scan.cache.ttl), Ttls::DEFAULT);
        let d = LookupOptions::default();
        let o = lookup_options(&scan.api);
        assert_eq!((o.batch_size, o.concurrency), (d.batch_size, d.concurrency));

        let Command::Lookup(lookup) = parse(&["hashsweep", "lookup", "00"]) else {
            panic!("not lookup")
        };
        assert_eq!(lookup.api.conn.max_wait, endpoint.max_wait);

        let Command::Serve(serve) = parse(&["hashsweep", "serve", "--tokens", "t"]) else {
            panic!("not serve")
        };
        let up = upstream_config(
            &serve,
            client_config(&serve.upstream, serve.batch.rate, key(), None),
        );
        assert_eq!(
            (up.client.retries, up.client.max_wait, up.client.timeout),
            (UPSTREAM.retries, UPSTREAM.max_wait, UPSTREAM.timeout)
        );
        assert_eq!(up.batch_wait, UPSTREAM.batch_wait);
        assert_ne!(UPSTREAM, endpoint, "the gateway's defaults differ");
        assert_eq!(ttls(&serve.ttl), Ttls::DEFAULT);
        // 4 attempts of 30 s, a 30 s wait and 30 s of slack.
        assert_eq!(up.claim_ttl, Duration::from_secs(4 * 30 + 30 + 30));
    }

    #[test]
    fn flags_override_the_defaults_in_every_group() {
        let Command::Serve(serve) = parse(&[
            "hashsweep",
            "serve",
            "--tokens",
            "t",
            "--retries",
            "0",
            "--max-wait",
            "2s",
            "--timeout",
            "1s",
            "--batch-wait",
            "5ms",
            "--batch-size",
            "10",
            "--unknown-ttl",
            "5m",
        ]) else {
            panic!("not serve")
        };
        let up = upstream_config(
            &serve,
            client_config(&serve.upstream, serve.batch.rate, key(), None),
        );
        assert_eq!(up.client.retries, 0);
        assert_eq!(up.client.max_wait, Duration::from_secs(2));
        assert_eq!(up.batch_wait, Duration::from_millis(5));
        assert_eq!(up.batch_size, 10);
        assert_eq!(up.claim_ttl, Duration::from_secs(1 + 2 + 30));
        assert_eq!(ttls(&serve.ttl).unknown, Duration::from_secs(300));

        let Command::Scan(scan) = parse(&[
            "hashsweep",
            "scan",
            "--verdict-ttl",
            "2h",
            "--details",
            "-j",
            "3",
            "--max-size",
            "1K",
            ".",
        ]) else {
            panic!("not scan")
        };
        let t = ttls(&scan.cache.ttl);
        assert_eq!(
            (t.clean, t.other),
            (Duration::from_secs(7200), Duration::from_secs(7200))
        );
        assert!(api_client_config(&scan.api, key(), None).details);
        assert_eq!(walk_options(&scan.walk).threads, 3);
        assert_eq!(
            io_options(&scan.walk),
            IoOptions::default(),
            "adaptive by default"
        );
        assert_eq!(hash_options(&scan.walk, false, true).max_size, Some(1024));
    }

    /// `--io-depth` fixes the reads in flight and `--max-io-rate` caps bytes per second, for
    /// `scan` and `hash` alike; a depth of 0 and a rate of 0 are usage errors; `--help` states
    /// what the reads cost in memory.
    #[test]
    fn io_flags_reach_the_io_options() {
        for sub in ["scan", "hash"] {
            let args = [
                "hashsweep",
                sub,
                "--io-depth",
                "16",
                "--max-io-rate",
                "50M",
                ".",
            ];
            let walk = match parse(&args) {
                Command::Scan(a) => a.walk,
                Command::Hash(a) => a.walk,
                _ => panic!("{sub}"),
            };
            assert_eq!(
                io_options(&walk),
                IoOptions {
                    depth: Some(16),
                    max_rate: Some(50 << 20)
                }
            );
        }
        let bad = |args: &[&str]| try_parse_from(args.iter().copied()).is_err();
        assert!(bad(&["hashsweep", "scan", "--io-depth", "0", "."]));
        assert!(bad(&["hashsweep", "scan", "--max-io-rate", "0", "."]));
        let mut c = crate::cli::command();
        let help = c
            .find_subcommand_mut("scan")
            .expect("scan")
            .render_long_help()
            .to_string();
        assert!(help.contains("at most N MiB of memory"), "{help}");
    }

    /// `--help` shows the default in force for that subcommand.
    #[test]
    fn help_shows_each_subcommands_own_defaults() {
        let help = |sub: &str| {
            let mut c = crate::cli::command();
            c.find_subcommand_mut(sub)
                .expect("subcommand")
                .render_long_help()
                .to_string()
        };
        assert!(help("scan").contains("[default: 10m]"), "{}", help("scan"));
        assert!(
            help("serve").contains("[default: 50ms]"),
            "{}",
            help("serve")
        );
        assert!(
            help("serve").contains("[default: 7days]"),
            "{}",
            help("serve")
        );
    }
}
