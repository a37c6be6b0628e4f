//! Command-line flags (clap derive). Parsing only: no I/O and no pipeline logic here; the
//! runners in `commands` turn these into the library's plain configuration types.

use std::path::PathBuf;
use std::time::Duration;

pub mod config;
pub mod help;
pub mod settings;
pub mod yara;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use hashsweep::cache::Ttls;
use hashsweep::digest::Algo;
#[cfg(feature = "gateway")]
use hashsweep::gateway::{DEFAULT_LISTEN, DEFAULT_MAX_PENDING, UPSTREAM};
use hashsweep::lookup::batch::MAX_BATCH;
use hashsweep::lookup::http::{DEFAULT_API_URL, DEFAULT_CONNECT_TIMEOUT};
use hashsweep::lookup::{DEFAULT_CONCURRENCY, Patience};
use hashsweep::report::{Format, Only};
use hashsweep::scan::archive::{self, Formats};

/// `--version`: the package version, the commit and the enabled features (see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("HASHSWEEP_BUILD"),
    ")"
);

const EXIT_HELP: &str = "\
Exit status:
  0  every file was hashed and looked up, and nothing was detected
  1  at least one detection (verdict infected or suspicious, or a --yara rule match)
  2  no detection, but something is incomplete: unreadable files, failed lookups,
     files that changed while read, archives not read to the end (--archives),
     or bad arguments
  3  no detection and nothing failed, but the lookup budget deferred some digests
     to a later run (--budget, or the key's daily budget is spent)
  4  no detection, but a file differs from what its package installed
     (package_check: modified, --packages); before 2 and 3
  130, 143  interrupted by SIGINT or SIGTERM (the report covers what was done)
The API key is read from the environment variable METADEFENDER_APIKEY or from
--apikey-file; it is never taken as an argument and never printed.";

#[cfg(feature = "gateway")]
const SERVE_HELP: &str = "\
Endpoints send POST /v4/hash to the public listener (--listen) like to the service itself,
with their own token as the key (the last example); it also answers a bare GET /healthz.
GET /metrics (Prometheus text), a detailed GET /healthz and, with --prevalence,
/v1/prevalence are on the admin listener (--admin-listen) only, and need no token: keep
it on a private address. The upstream API key is read from METADEFENDER_APIKEY or
--apikey-file and never leaves the gateway. Endpoint tokens: --tokens FILE, lines
`NAME TOKEN` or `NAME sha256:HEX`.";

#[derive(Debug, Parser)]
#[command(name = "hashsweep", version = VERSION, about = "Hash a tree and look every distinct digest up in MetaDefender Cloud", after_help = EXIT_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Before the subcommand (`hashsweep -q scan`): the same flags as after it.
    #[command(flatten)]
    pub common: Common,
}

impl Cli {
    /// The message flags and `--config`, given before the subcommand or after it (a flag
    /// given in either place counts; `--config` after the subcommand wins).
    pub fn common(&self) -> Result<Common, clap::Error> {
        let (top, sub) = (&self.common, self.command.common());
        let merged = Common {
            ui: UiArgs {
                quiet: top.ui.quiet || sub.ui.quiet,
                verbose: top.ui.verbose.saturating_add(sub.ui.verbose),
                no_progress: top.ui.no_progress || sub.ui.no_progress,
            },
            config: sub.config.clone().or_else(|| top.config.clone()),
        };
        if merged.ui.quiet && merged.ui.verbose > 0 {
            return Err(command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "the argument '--quiet' cannot be used with '--verbose'",
            ));
        }
        Ok(merged)
    }
}

/// Flags every subcommand accepts, before or after its name (they were global flags once;
/// they are no longer global so that each subcommand's `--help` shows only those that apply to
/// it: see [`help::shape`]).
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    #[command(flatten)]
    pub ui: UiArgs,
    /// Read settings from this TOML file instead of /etc/hashsweep/config.toml and the user's
    /// config directory (keys: the long flags' names; flags win); default: HASHSWEEP_CONFIG
    #[arg(long, value_name = "PATH", help_heading = "Config file")]
    pub config: Option<PathBuf>,
}

/// What is said on stderr while a command runs.
#[derive(Debug, Clone, Copy, Default, Args)]
#[command(next_help_heading = "Messages")]
pub struct UiArgs {
    /// No summary and no progress: errors only (the exit status says the rest)
    #[arg(short = 'q', long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also say each retry of a request and why
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No live progress line (the summary is still printed)
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Walk, hash, look up and report a verdict for every path
    #[command(after_help = EXIT_HELP)]
    Scan(Box<ScanArgs>),
    /// Print sha256sum-compatible lines (md5sum/sha1sum with --md5/--sha1)
    Hash(HashArgs),
    /// Look up hashes given as arguments or on stdin (bare, or sha256sum/md5sum lines)
    #[command(after_help = EXIT_HELP)]
    Lookup(LookupArgs),
    /// Compare two reports: what is new, modified, unchanged or removed (exit 1 if anything changed)
    Diff(DiffArgs),
    /// Run a lookup gateway for a fleet: holds the API key, shares verdicts, speaks /v4/hash
    #[cfg(feature = "gateway")]
    #[command(after_help = SERVE_HELP)]
    Serve(Box<ServeArgs>),
    /// On how many hosts of the fleet each hash is, and which: asked of a gateway's admin
    /// listener (`serve --prevalence --admin-listen`)
    #[cfg(feature = "gateway")]
    Prevalence(PrevalenceArgs),
    /// Check that --api-url and the API key work, and show the key's budget (one small
    /// request; exit 0 when lookups can be made, 2 otherwise)
    Check(CheckArgs),
    /// Print the settings in force for a subcommand (from config files, the environment and
    /// defaults) and where each comes from; never the API key
    Config(ConfigArgs),
    /// Print a shell completion script (generated from these flags, so it matches --help)
    Completions(CompletionsArgs),
    /// Print the man page (roff): hashsweep(1), or hashsweep-SUBCOMMAND(1) for one subcommand
    Man(ManArgs),
    /// Compile YARA rules (files, or folders of *.yar/*.yara) and report the rules, files and
    /// warnings: exit 0 when they compile, 2 with file:line:column otherwise
    YaraCheck(yara::YaraCheckArgs),
}

impl Command {
    /// The flags given after the subcommand's name.
    pub fn common(&self) -> &Common {
        match self {
            Command::Scan(a) => &a.common,
            Command::Hash(a) => &a.common,
            Command::Lookup(a) => &a.common,
            Command::Diff(a) => &a.common,
            #[cfg(feature = "gateway")]
            Command::Serve(a) => &a.common,
            #[cfg(feature = "gateway")]
            Command::Prevalence(a) => &a.common,
            Command::Check(a) => &a.common,
            Command::Config(a) => &a.common,
            Command::Completions(a) => &a.common,
            Command::Man(a) => &a.common,
            Command::YaraCheck(a) => &a.common,
        }
    }
}

/// `prevalence`: hashes asked of a gateway's admin listener.
#[cfg(feature = "gateway")]
#[derive(Debug, Args)]
pub struct PrevalenceArgs {
    /// The gateway's admin listener (its --admin-listen), e.g. http://127.0.0.1:8738
    #[arg(long, value_name = "ADMIN_URL")]
    pub api_url: String,
    /// table (one line a hash) or json (the gateway's objects, as an array)
    #[arg(long, value_enum, default_value_t = PrevalenceFormat::Table)]
    pub format: PrevalenceFormat,
    /// SHA-256, SHA-1 or MD5 hashes (hex)
    #[arg(value_name = "HASH", required = true)]
    pub hashes: Vec<String>,
    #[command(flatten)]
    pub common: Common,
}

#[cfg(feature = "gateway")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrevalenceFormat {
    Table,
    Json,
}

/// `config`: which subcommand's settings to show.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The subcommand whose settings are shown
    #[arg(value_name = "COMMAND", default_value = "scan")]
    pub command: String,
    #[command(flatten)]
    pub common: Common,
}

/// `check`: how the service is reached, and where the budget it states is remembered.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Cache in which the key's budget is remembered for the next scan (default: as scan's)
    #[arg(
        long,
        value_name = "PATH",
        env = "HASHSWEEP_CACHE",
        help_heading = "Cache"
    )]
    pub cache: Option<PathBuf>,
    /// Do not remember the key's budget
    #[arg(long, env = "HASHSWEEP_NO_CACHE", value_parser = clap::builder::FalseyValueParser::new(), help_heading = "Cache")]
    pub no_cache: bool,
    #[command(flatten)]
    pub common: Common,
}

/// How the tree is walked (shared by `scan` and `hash`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Walk")]
pub struct WalkArgs {
    /// Follow symbolic links (loops are detected and reported)
    #[arg(short = 'L', long)]
    pub follow_symlinks: bool,
    /// Do not cross into other file systems
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Enter kernel pseudo file systems (proc, sysfs, cgroup, ...) too, each file read with a
    /// deadline and a cap at the size stat gave (by default their mount points are skipped;
    /// Linux only: elsewhere no file system is told apart)
    #[arg(long)]
    pub pseudo_fs: bool,
    /// Read each alternate data stream (a named stream of an NTFS file) as a record of its
    /// own, `PATH:NAME`, hashed and looked up like a file (by default each is a skipped
    /// record; files come from the digest cache only without this). Windows only: elsewhere
    /// files have no such streams
    #[arg(long)]
    pub streams: bool,
    /// Threads hashing at once (default: number of CPUs); reads in flight: --io-depth
    #[arg(short = 'j', long, value_name = "N")]
    pub threads: Option<usize>,
    /// Skip paths matching this gitignore-style glob, relative to the root (repeatable)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Skip (and report as skipped) files larger than SIZE, e.g. 10M, 2G
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Reads in flight at once [default: adapts to the latency reads meet, from -j (a warm
    /// page cache) up to 32 on a cold local disk and 64 on a share]. At most -j threads hash
    /// whatever this is; each read holds a 1 MiB buffer, so reads take at most N MiB of memory
    /// (64 MiB by default)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub io_depth: Option<u16>,
    /// Read at most RATE bytes per second across all threads, e.g. 50M (MiB/s), 500K
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_io_rate: Option<u64>,
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

/// Inside archives (shared by `scan` and `hash`, through [`WalkArgs`]). Defaults from
/// ClamAV's limits, defined in `hashsweep::scan::archive`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Archives")]
pub struct ArchiveArgs {
    /// Also hash the members of archives found by their content, as `outer.zip!dir/inner`
    /// (each member costs a lookup). Formats: zip, tar, gzip, xz, zstd, bzip2, 7z, ar (.deb),
    /// cpio, rpm (default: all); e.g. --archives=zip,tar
    #[arg(long, value_name = "FORMATS", num_args = 0..=1, require_equals = true, default_missing_value = "all", value_parser = Formats::parse)]
    pub archives: Option<Formats>,
    /// Archive levels opened: the file on disk is 1, an archive inside it 2, ...
    #[arg(long, value_name = "N", default_value_t = archive::DEFAULT_DEPTH)]
    pub archive_depth: u32,
    /// Bytes decompressed from one archive, all levels counted; the rest is reported skipped
    #[arg(long, value_name = "SIZE", default_value = help::size_text(archive::DEFAULT_MAX_BYTES), value_parser = parse_size)]
    pub archive_max_bytes: u64,
    /// Bytes of one member; a bigger member is reported skipped
    #[arg(long, value_name = "SIZE", default_value = help::size_text(archive::DEFAULT_MAX_MEMBER), value_parser = parse_size)]
    pub archive_max_member: u64,
    /// Members of one archive, all levels counted; the rest is reported skipped
    #[arg(long, value_name = "N", default_value_t = archive::DEFAULT_MAX_MEMBERS)]
    pub archive_max_members: u64,
    /// Time for one archive; the rest is reported skipped
    #[arg(long, value_name = "DURATION", default_value = duration_text(archive::DEFAULT_TIMEOUT), value_parser = parse_duration)]
    pub archive_timeout: Duration,
    /// Decompressed bytes per compressed byte (after the first MiB) before a stream is taken
    /// for a decompression bomb and reported skipped
    #[arg(long, value_name = "N", default_value_t = archive::DEFAULT_MAX_RATIO)]
    pub archive_max_ratio: u64,
}

/// How the service is reached: shared by `scan`, `lookup`, `check` and `serve` (its upstream).
/// The timing flags have no default here: [`command`] sets them per subcommand from
/// [`Patience`], since the gateway's clients are waiting on its upstream.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Service")]
pub struct ConnectionArgs {
    /// Base URL of the service (the public service, an on-premises MetaDefender or a
    /// hashsweep gateway)
    #[arg(long, env = "HASHSWEEP_API_URL", value_name = "URL", default_value = DEFAULT_API_URL)]
    pub api_url: String,
    /// Read the API key from this file (default: the METADEFENDER_APIKEY variable)
    #[arg(long, value_name = "PATH")]
    pub apikey_file: Option<PathBuf>,
    /// Retries of a request after a server error, timeout or malformed answer
    #[arg(long, value_name = "N")]
    pub retries: u32,
    /// Longest wait a rate limit (429) may impose before the batch is given up
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_wait: Duration,
    /// Timeout for one whole request
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Timeout for connecting
    #[arg(long, value_name = "DURATION", default_value = duration_text(DEFAULT_CONNECT_TIMEOUT), value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Allow plain http to a host that is not loopback (the key crosses the network in clear;
    /// for serve, also plain http to its clients)
    #[arg(long)]
    pub insecure_http: bool,
    /// Also trust the CA certificates in this PEM file (an on-premises service or a gateway
    /// with a private CA); the system's public roots stay trusted
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
}

/// How digests are batched and sent: shared by `scan`, `lookup` and `serve` (not `check`,
/// which sends one request). `--batch-wait` has its default set per subcommand by [`command`].
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Service")]
pub struct BatchArgs {
    /// Hashes per request (at most 1000)
    #[arg(long, value_name = "N", default_value_t = MAX_BATCH as u16, value_parser = clap::value_parser!(u16).range(1..=MAX_BATCH as i64))]
    pub batch_size: u16,
    /// Requests in flight at once
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY as u16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// How long a partial batch waits for more digests before it is sent
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub batch_wait: Duration,
    /// At most N requests per minute (on top of the service's own rate-limit headers)
    #[arg(long, value_name = "N")]
    pub rate: Option<u32>,
}

/// How lookups are made (shared by `scan` and `lookup`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Service")]
pub struct ApiArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Ask for per-engine results and keep them in JSON reports
    #[arg(long)]
    pub details: bool,
    /// Which digest is sent to the service
    #[arg(long, value_name = "ALGO", default_value = "sha256", value_parser = parse_algo)]
    pub lookup_hash: Algo,
}

/// How long an answer is reused: by `scan` from its cache, by `serve` for the whole fleet.
/// Defaults from [`Ttls::DEFAULT`], set by [`command`].
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cache")]
pub struct TtlArgs {
    /// How long a clean (or other) verdict is reused without asking again
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub verdict_ttl: Duration,
    /// How long an infected or suspicious verdict is reused
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub detection_ttl: Duration,
    /// How long an unknown verdict is reused (unknown files become known)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub unknown_ttl: Duration,
}

/// The digest and verdict cache.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cache")]
pub struct CacheArgs {
    /// Cache file (default: hashsweep/cache.sqlite in the user's cache directory)
    #[arg(long, value_name = "PATH", env = "HASHSWEEP_CACHE")]
    pub cache: Option<PathBuf>,
    /// Neither read nor write the cache: hash every file, look up every digest
    #[arg(long, env = "HASHSWEEP_NO_CACHE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_cache: bool,
    #[command(flatten)]
    pub ttl: TtlArgs,
    /// A path keeps its last answer, stale or not, until it is this old; older and not asked
    /// again, it is `deferred`
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_age: Duration,
    /// Whose answers the cache serves (default: the --api-url endpoint). Give runs against a
    /// gateway and runs against the service it fronts the same NAME to share their answers
    #[arg(long, value_name = "NAME")]
    pub cache_service: Option<String>,
}

/// `serve`: the fleet gateway. Its flags are grouped by what they are about; each field names
/// its heading (a flattened group's heading would carry on to the fields after it), and the
/// shared groups get serve's headings in [`help::shape`].
#[cfg(feature = "gateway")]
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on for endpoints (POST /v4/hash, a bare /healthz); plain http only on
    /// loopback unless --insecure-http or TLS
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN, help_heading = "Listeners")]
    pub listen: std::net::SocketAddr,
    /// Serve /metrics and a detailed /healthz on ADDR (not served at all without it); the
    /// public listener keeps POST /v4/hash and a bare /healthz
    #[arg(long, value_name = "ADDR", help_heading = "Listeners")]
    pub admin_listen: Option<std::net::SocketAddr>,
    /// PEM certificate chain: serve https (with --tls-key)
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_key",
        help_heading = "Listeners"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_cert",
        help_heading = "Listeners"
    )]
    pub tls_key: Option<PathBuf>,
    /// At most N client connections at once; beyond, new ones wait to be accepted (default:
    /// the open-file limit less an eighth of it, at most 16384; never more than that limit
    /// allows)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Listeners")]
    pub max_connections: Option<u32>,
    /// Endpoint tokens: lines `NAME TOKEN` or `NAME sha256:HEX`
    #[arg(long, value_name = "FILE", help_heading = "Endpoints")]
    pub tokens: PathBuf,
    /// At most N requests per minute per endpoint token (429 code 429001 beyond)
    #[arg(long, value_name = "N", help_heading = "Endpoints")]
    pub client_rate: Option<std::num::NonZeroU32>,
    /// At most N hashes a day (UTC) asked upstream for one endpoint token, shared by the
    /// instances on one Redis; beyond, that token's misses get 429 (code 429000)
    #[arg(long, value_name = "N", help_heading = "Endpoints")]
    pub client_budget: Option<std::num::NonZeroU64>,
    /// Close a connection that sends no complete first request headers in this long [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Connections")]
    pub first_request_timeout: Option<Duration>,
    /// Close a connection whose request headers take longer than this from their first byte
    /// [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Connections")]
    pub header_timeout: Option<Duration>,
    /// Close a kept-alive connection idle between requests for this long [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Connections")]
    pub idle_timeout: Option<Duration>,
    /// Answer 408 (code 408000) to a request whose body takes longer than this [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Connections")]
    pub body_timeout: Option<Duration>,
    /// How long SIGTERM waits for requests in flight
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = "Connections")]
    pub shutdown_grace: Duration,
    /// Verdict store: sqlite:PATH (default: the scan cache) or redis://HOST:PORT/DB, rediss://…,
    /// or a Redis Cluster: redis-cluster://HOST:PORT[,HOST:PORT...], rediss-cluster://…
    #[arg(
        long,
        value_name = "STORE",
        env = "HASHSWEEP_STORE",
        help_heading = "Verdict store"
    )]
    pub store: Option<String>,
    /// Sign every verdict stored in Redis with HMAC-SHA-256 and this key (at least 32 bytes,
    /// the same file on every instance); a value whose signature does not match is a miss
    #[arg(long, value_name = "PATH", help_heading = "Verdict store")]
    pub store_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub ttl: TtlArgs,
    /// Record which endpoint tokens (hosts) ask for each digest: their names while at most 16,
    /// then a count; served on --admin-listen (GET /v1/prevalence/HASH) and as
    /// `hashsweep_hosts` in /v4/hash answers. Needs a Redis store
    #[arg(long, help_heading = "Verdict store")]
    pub prevalence: bool,
    /// Keep a digest's hosts this long after it was last asked [default: 30d]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "prevalence", help_heading = "Verdict store")]
    pub prevalence_ttl: Option<Duration>,
    /// The upstream service (the public service, an on-premises MetaDefender, or another
    /// gateway) and how it is asked
    #[command(flatten)]
    pub upstream: ConnectionArgs,
    /// How the upstream is asked: batches and requests in flight
    #[command(flatten)]
    pub batch: BatchArgs,
    /// At most N digests waiting for the upstream; requests with new misses beyond get 503
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PENDING, help_heading = "Upstream")]
    pub max_pending: usize,
    /// Upload the endpoints' unknown files (scan --upload-unknown through this gateway) to
    /// the vendor's multiscanning with this gateway's key, once per digest for the whole
    /// fleet: the one endpoint asked sends the file here, the gateway sends it on. The whole
    /// file leaves for the vendor, who keeps it and, unless the key enforces private scanning,
    /// shares it with its partners: nothing is uploaded without --upload-accept-sharing
    /// (command line only) or a key that enforces private scanning
    #[arg(long, help_heading = "Upload (sends files to the vendor)")]
    pub upload_unknown: bool,
    /// Accept that files uploaded for the endpoints are shared with the vendor and its
    /// partners (command line only: never a config file setting)
    #[arg(
        long,
        requires = "upload_unknown",
        help_heading = "Upload (sends files to the vendor)"
    )]
    pub upload_accept_sharing: bool,
    /// Accept no file larger than SIZE from endpoints (default: the key's
    /// max_upload_file_size); a larger one is refused (413) before its bytes are read
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "upload_unknown", help_heading = "Upload (sends files to the vendor)")]
    pub upload_max_size: Option<u64>,
    /// At most N files a day (UTC) sent for one endpoint token, shared by the instances on
    /// one Redis; beyond, its announcements get 429 (code 429000)
    #[arg(
        long,
        value_name = "N",
        default_value = "10",
        requires = "upload_unknown",
        help_heading = "Upload (sends files to the vendor)"
    )]
    pub client_upload_budget: std::num::NonZeroU64,
    /// Log level (error, warn, info, debug: one line per request with the token's name)
    #[arg(
        long,
        value_name = "LEVEL",
        env = "HASHSWEEP_LOG",
        default_value = "info",
        help_heading = "Logs"
    )]
    pub log: String,
    #[command(flatten)]
    pub common: Common,
}

/// Where and how the report is written.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Report")]
pub struct OutputArgs {
    /// Report format (default: from -o's extension (.json, .csv, .ndjson/.jsonl, .html),
    /// else table on a terminal and ndjson otherwise)
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write the report to FILE (atomically) instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Which records the report keeps and how the table shows them (`scan` and `lookup`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Report")]
pub struct ViewArgs {
    /// Keep only detections (infected, suspicious) or problems (detections, errors,
    /// deferred) in the report; the summary still counts every path
    #[arg(long, value_enum, value_name = "WHICH")]
    pub only: Option<Only>,
    /// Whole digests in the table even when the terminal is narrow
    #[arg(long)]
    pub wide: bool,
}

/// `--packages[=MODE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PackagesArg {
    /// A file whose digest is its package's is known_good and not asked
    KnownGood,
    /// Report mismatches; files that match are still looked up
    VerifyOnly,
}

/// What `--processes` hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProcessesArg {
    /// Executables and the libraries they map
    All,
    /// Executables only
    Exe,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files and directories to scan
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub walk: WalkArgs,
    /// Also hash every running program's executable through /proc/PID/exe (deleted ones
    /// too) and, unless =exe, the libraries they map (Linux)
    #[arg(
        long,
        value_enum,
        value_name = "WHAT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "all",
        help_heading = "Walk"
    )]
    pub processes: Option<ProcessesArg>,
    /// Also compute MD5 (same read)
    #[arg(long, help_heading = "Hashing")]
    pub md5: bool,
    /// Also compute SHA-1 (same read)
    #[arg(long, help_heading = "Hashing")]
    pub sha1: bool,
    /// Hash and report without any lookup (verdict not_looked_up)
    #[arg(long, help_heading = "Service")]
    pub offline: bool,
    /// Ask CIRCL hashlookup (free, no key) about files before the MetaDefender budget: a file
    /// it knows and no source flags is known_good (source circl); one its sources flag
    /// (KnownMalicious) is asked of MetaDefender first. PRIVACY: this sends the SHA-1 of every
    /// file that would be looked up to a third party (CIRCL, Luxembourg); with a --known-good
    /// Bloom filter, only the filter's hits. Off unless given
    #[arg(long, help_heading = "Service")]
    pub circl: bool,
    /// CIRCL hashlookup's base URL (a mirror; /bulk/sha1 is joined to it)
    #[arg(
        long,
        value_name = "URL",
        env = "HASHSWEEP_CIRCL_URL",
        default_value = hashsweep::lookup::circl::DEFAULT_URL,
        help_heading = "Service"
    )]
    pub circl_url: String,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Hash list of known-good files (plain, sha256sum/md5sum, hashdeep, NSRL RDS CSV, or an
    /// NSRL RDSv3 SQLite database); their verdict is known_good and they are not sent. A DCSO
    /// Bloom filter (CIRCL hashlookup's hashlookup-full.bloom, by its header) is "probably
    /// known", not good: those files are asked last and say source circl-bloom (repeatable)
    #[arg(long, value_name = "FILE", help_heading = "Hash lists")]
    pub known_good: Vec<PathBuf>,
    /// An NSRL RDS application type whose packages are not known good (looked up as usual),
    /// added to the default list (repeatable)
    #[arg(long, value_name = "TYPE", long_help = nsrl_exclude_help(), help_heading = "Hash lists")]
    pub nsrl_exclude_type: Vec<String>,
    /// Hash list of known-bad files: verdict infected, source local, not sent. Also, by
    /// content: a MISP feed directory, event or restSearch answer, a STIX 2.1 bundle, a
    /// MalwareBazaar export (txt or csv), ClamAV .hdb/.hsb signatures; a match names the list
    /// and entry (list, list_entry) (repeatable)
    #[arg(long, value_name = "FILE", help_heading = "Hash lists")]
    pub known_bad: Vec<PathBuf>,
    /// Load ClamAV signatures named PUA.* (potentially unwanted applications) from --known-bad
    /// ClamAV lists; left out otherwise
    #[arg(long, help_heading = "Hash lists")]
    pub clamav_pua: bool,
    /// Look up known-bad files as well (their verdict stays infected)
    #[arg(long, help_heading = "Hash lists")]
    pub also_lookup: bool,
    /// Check every file a package owns against the digest its package database recorded
    /// (dpkg, rpm, apk, pacman): a match is known_good and not asked (=verify-only: still
    /// asked), a difference is `package_check: modified`, asked first, and exit status 4.
    /// On by default when a root is / (the running system)
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "known-good",
        help_heading = "Packages"
    )]
    pub packages: Option<PackagesArg>,
    /// Do not read the package databases, not even for a sweep of /
    #[arg(long, conflicts_with_all = ["packages", "packages_root"], help_heading = "Packages")]
    pub no_packages: bool,
    /// Read the package databases of the system rooted at DIR (a mounted image, a container's
    /// root) instead of this one's; implies --packages
    #[arg(long, value_name = "DIR", help_heading = "Packages")]
    pub packages_root: Option<PathBuf>,
    /// Ask the service about at most N hashes in this run (0: caches and local sets only);
    /// the rest are `deferred`, most important first, and asked first by the next runs
    #[arg(long, value_name = "N", help_heading = "Budget")]
    pub budget: Option<u64>,
    /// Treat paths matching this glob (on the whole path, e.g. '/srv/upload/**') like
    /// temporary and download folders when the budget decides what is asked first (repeatable)
    #[arg(long, value_name = "GLOB", help_heading = "Budget")]
    pub priority_path: Vec<String>,
    /// A previous ndjson or json report: add `change` (new/modified/unchanged) to every record
    /// and list the paths that were removed
    #[arg(long, value_name = "OLD_REPORT", help_heading = "Report")]
    pub baseline: Option<PathBuf>,
    /// `host.name` in `--format ecs` documents (default: this machine's host name)
    #[arg(long, value_name = "NAME", help_heading = "Report")]
    pub host_name: Option<String>,
    #[command(flatten)]
    pub yara: yara::YaraArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub upload: UploadArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub view: ViewArgs,
    #[command(flatten)]
    pub common: Common,
}

/// `--upload-unknown` and its limits (see `hashsweep::scan::upload`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Upload (sends files to the vendor)")]
pub struct UploadArgs {
    /// Upload files the service does not know (unknown) to its multiscanning, and report
    /// its answer. The whole file leaves this host: the vendor keeps it and, unless the key
    /// enforces private scanning, shares it with its partners. Nothing is uploaded without
    /// --upload-accept-sharing on the command line, or a key that enforces private scanning
    #[arg(long)]
    pub upload_unknown: bool,
    /// Accept that uploaded files are shared with the vendor and its partners (command line
    /// only: never a config file setting)
    #[arg(long, requires = "upload_unknown")]
    pub upload_accept_sharing: bool,
    /// Kinds of file uploaded: program, script, document, archive, other, all (repeatable or
    /// comma-separated; default: program,script,document)
    #[arg(long, value_name = "KIND", value_delimiter = ',', value_parser = parse_upload_kind)]
    pub upload_kind: Vec<Vec<hashsweep::file::FileKind>>,
    /// Upload no file larger than SIZE (default: the key's max_upload_file_size)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub upload_max_size: Option<u64>,
    /// Upload at most N files in this run, most important first, within what the key's
    /// upload (prevention) budget has left
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub upload_budget: u64,
    /// Never upload a file whose path matches GLOB (repeatable; added to the default list:
    /// SSH and GnuPG keys, key stores, credentials, browser and mail profiles, password
    /// managers' databases)
    #[arg(long, value_name = "GLOB")]
    pub upload_exclude: Vec<String>,
    /// How long the run waits for the uploads' scans; one still scanning keeps its data_id
    /// and the next run fetches the result
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub upload_wait: Duration,
}

fn parse_upload_kind(s: &str) -> Result<Vec<hashsweep::file::FileKind>, String> {
    hashsweep::scan::upload::parse_kind(s)
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// Files and directories to hash
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub walk: WalkArgs,
    /// Print MD5 instead of SHA-256 (md5sum format)
    #[arg(long, conflicts_with = "sha1", help_heading = "Hashing")]
    pub md5: bool,
    /// Print SHA-1 instead of SHA-256 (sha1sum format)
    #[arg(long, help_heading = "Hashing")]
    pub sha1: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// Hashes (MD5, SHA-1 or SHA-256 hex); read from stdin when none are given
    #[arg(value_name = "HASH")]
    pub hashes: Vec<String>,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub view: ViewArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier report (ndjson or json)
    pub old: PathBuf,
    /// The later report (ndjson or json)
    pub new: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Print this subcommand's page instead of the main one
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// The command line with each subcommand's defaults filled in from the library's constants
/// (one definition each; `--help` shows the ones in force for that subcommand).
pub fn command() -> clap::Command {
    // An argument without a derive default is required until one is given here.
    fn default(c: clap::Command, arg: &'static str, value: &'static str) -> clap::Command {
        c.mut_arg(arg, |a| a.default_value(value).required(false))
    }
    let ttls = |c| {
        let c = default(c, "verdict_ttl", duration_text(Ttls::DEFAULT.clean));
        let c = default(c, "detection_ttl", duration_text(Ttls::DEFAULT.detection));
        default(c, "unknown_ttl", duration_text(Ttls::DEFAULT.unknown))
    };
    let patience = |c, p: Patience| {
        let c = default(c, "batch_wait", duration_text(p.batch_wait));
        let c = default(c, "retries", leak(p.retries.to_string()));
        let c = default(c, "max_wait", duration_text(p.max_wait));
        default(c, "timeout", duration_text(p.timeout))
    };
    let max_age = |c| {
        default(
            c,
            "max_age",
            duration_text(hashsweep::scan::plan::DEFAULT_MAX_AGE),
        )
    };
    let check = |c| {
        let p = Patience::CHECK;
        let c = default(c, "retries", leak(p.retries.to_string()));
        let c = default(c, "max_wait", duration_text(p.max_wait));
        default(c, "timeout", duration_text(p.timeout))
    };
    // HASHSWEEP_CONFIG stands for the top-level --config only: were it read after the
    // subcommand too, it would beat a --config given before it.
    let cmd = Cli::command()
        .mut_arg("config", |a| a.env("HASHSWEEP_CONFIG"))
        .mut_subcommand("scan", |c| max_age(ttls(patience(c, Patience::ENDPOINT))))
        .mut_subcommand("lookup", |c| patience(c, Patience::ENDPOINT))
        .mut_subcommand("check", check);
    #[cfg(feature = "gateway")]
    let cmd = cmd.mut_subcommand("serve", |c| ttls(patience(c, UPSTREAM)));
    help::shape(cmd)
}

/// Parse the process's arguments (exits with clap's message and status 2 on a mistake).
/// Settings from config files become the flags they name (see [`settings`]); a bad config
/// file is a usage error (status 2).
pub fn parse() -> (Cli, Common) {
    let cmd = command();
    let args =
        settings::with_config_files(&cmd, std::env::args_os().collect()).unwrap_or_else(|e| {
            eprintln!("hashsweep: error: {e}");
            std::process::exit(2)
        });
    let cli = Cli::from_arg_matches(&cmd.get_matches_from(args)).unwrap_or_else(|e| e.exit());
    let common = cli.common().unwrap_or_else(|e| e.exit());
    (cli, common)
}

/// Parse `args` (for tests).
#[cfg(test)]
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::from_arg_matches(&command().try_get_matches_from(args)?)
}

/// A duration as `--help` shows it and [`parse_duration`] reads it back (`1s`, `10m`, `7days`).
fn duration_text(d: Duration) -> &'static str {
    leak(humantime::format_duration(d).to_string())
}

/// Defaults are built once per process, before parsing: leaking these few strings is what
/// lets clap hold them as `&'static str`.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{e} (try 10M, 2G, 512K)"))
}

/// A rate in bytes per second: a size (`50M`, `500K`), optionally followed by `/s`.
fn parse_rate(s: &str) -> Result<u64, String> {
    let size = s.strip_suffix("/s").unwrap_or(s);
    match parse_size(size)? {
        0 => Err("a rate of 0 would read nothing (try 50M)".into()),
        n => Ok(n),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (try 500ms, 30s, 10m)"))
}

fn parse_algo(s: &str) -> Result<Algo, String> {
    s.parse()
}

/// `--nsrl-exclude-type`'s long help: the default list comes from the library.
fn nsrl_exclude_help() -> String {
    format!(
        "An NSRL RDS application type whose packages are not known good: their files are looked \
         up as usual (repeatable; compared case-insensitively with PKG.application_type). Added \
         to the default list: {}",
        hashsweep::known::rds::DEFAULT_EXCLUDED_TYPES.join(", ")
    )
}

#[cfg(test)]
mod tests;
