use super::*;

#[test]
fn clap_definition_is_consistent() {
    command().debug_assert();
}

/// `--help` groups options under headings: none of scan's or serve's options is left in
/// the catch-all list but `--help` itself and, on scan, the flags of its first screen.
// Names `serve` and `prevalence`, which only the gateway feature builds.
#[cfg(feature = "gateway")]
#[test]
fn every_option_has_a_heading() {
    let c = command();
    let first = [
        "output",
        "format",
        "only",
        "archives",
        "budget",
        "known_good",
    ];
    for sub in ["scan", "serve", "lookup", "hash", "diff"] {
        let s = c.find_subcommand(sub).expect(sub);
        for a in s.get_arguments() {
            if a.is_positional()
                || a.get_id() == "help"
                || (sub == "scan" && first.contains(&a.get_id().as_str()))
            {
                continue;
            }
            assert!(
                a.get_help_heading().is_some(),
                "{sub} --{} has no heading",
                a.get_long().unwrap_or_default()
            );
        }
    }
    let scan = c.find_subcommand("scan").unwrap();
    let heading = |long: &str| {
        scan.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_help_heading())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(heading("exclude"), "Walk");
    assert_eq!(heading("known-bad"), "Hash lists");
    assert_eq!(heading("api-url"), "Service");
    assert_eq!(heading("wide"), "Report");
    assert_eq!(heading("only"), "", "a first-screen flag");
    let quiet = c.get_arguments().find(|a| a.get_long() == Some("quiet"));
    assert_eq!(quiet.and_then(|a| a.get_help_heading()), Some("Messages"));
    let serve = c.find_subcommand("serve").unwrap();
    let h = |long: &str| {
        serve
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_help_heading())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(h("shutdown-grace"), "Connections");
    assert_eq!(h("admin-listen"), "Listeners");
    assert_eq!(h("batch-size"), "Upstream");
    assert_eq!(h("unknown-ttl"), "Verdict store");
}

#[test]
fn only_wide_and_the_message_flags_parse() {
    let cli = try_parse_from([
        "hashsweep",
        "scan",
        "-q",
        "--only",
        "problems",
        "--wide",
        ".",
    ])
    .unwrap();
    assert!(cli.common().unwrap().ui.quiet);
    let Command::Scan(a) = cli.command else {
        panic!("not scan")
    };
    assert_eq!(a.view.only, Some(Only::Problems));
    assert!(a.view.wide);
    let cli = try_parse_from(["hashsweep", "lookup", "-vv", "--no-progress", "x"]).unwrap();
    let ui = cli.common().unwrap().ui;
    assert_eq!(ui.verbose, 2);
    assert!(ui.no_progress);
    assert!(try_parse_from(["hashsweep", "scan", "-q", "-v", "."]).is_err());
    assert!(try_parse_from(["hashsweep", "scan", "--only", "clean", "."]).is_err());
}

/// The message flags and `--config` are taken before the subcommand and after it (they
/// were global flags), by every subcommand, also those whose help does not show them.
#[test]
fn the_common_flags_go_before_or_after_the_subcommand() {
    let common = |args: &[&str]| try_parse_from(args.iter().copied()).map(|c| c.common());
    let c = common(&["hashsweep", "-q", "--config", "a", "scan", "."])
        .unwrap()
        .unwrap();
    assert!(c.ui.quiet);
    assert_eq!(c.config, Some(PathBuf::from("a")));
    let c = common(&["hashsweep", "--config", "a", "hash", "--config", "b", "."])
        .unwrap()
        .unwrap();
    assert_eq!(c.config, Some(PathBuf::from("b")), "the later one wins");
    let c = common(&["hashsweep", "-v", "lookup", "-v", "x"])
        .unwrap()
        .unwrap();
    assert_eq!(c.ui.verbose, 2);
    for sub in [
        &["man"][..],
        &["completions", "bash"],
        &["config"],
        &["diff", "a", "b"],
    ] {
        let mut args = vec!["hashsweep"];
        args.extend_from_slice(sub);
        args.extend(["-q", "--no-progress"]);
        let c = common(&args).unwrap().unwrap();
        assert!(c.ui.quiet && c.ui.no_progress, "{args:?}");
    }
    let mixed = common(&["hashsweep", "-q", "scan", "-v", "."]).unwrap();
    assert!(mixed.is_err(), "-q and -v conflict wherever they are given");
}

/// `check` sends one request: it has no batch flags (`scan`, `lookup` and `serve` do).
#[test]
fn check_has_no_batch_flags() {
    for flag in [
        "--batch-size=10",
        "--concurrency=2",
        "--batch-wait=1s",
        "--rate=5",
    ] {
        assert!(
            try_parse_from(["hashsweep", "check", flag]).is_err(),
            "{flag}"
        );
        assert!(
            try_parse_from(["hashsweep", "lookup", flag, "x"]).is_ok(),
            "{flag}"
        );
    }
    assert!(try_parse_from(["hashsweep", "check", "--retries", "0"]).is_ok());
    assert!(try_parse_from(["hashsweep", "scan", "--only", "clean", "."]).is_err());
}

#[test]
fn packages_takes_an_optional_mode_and_no_packages_excludes_it() {
    let scan = |args: &[&str]| {
        let mut v = vec!["hashsweep", "scan"];
        v.extend_from_slice(args);
        v.push("/");
        match try_parse_from(v).map(|c| c.command) {
            Ok(Command::Scan(a)) => Ok((a.packages, a.no_packages, a.packages_root)),
            Ok(_) => panic!("not scan"),
            Err(e) => Err(e),
        }
    };
    assert_eq!(scan(&[]).unwrap(), (None, false, None));
    assert_eq!(
        scan(&["--packages"]).unwrap().0,
        Some(PackagesArg::KnownGood)
    );
    assert_eq!(
        scan(&["--packages=verify-only"]).unwrap().0,
        Some(PackagesArg::VerifyOnly)
    );
    assert_eq!(
        scan(&["--packages-root", "/mnt/img"]).unwrap().2,
        Some(PathBuf::from("/mnt/img"))
    );
    assert!(scan(&["--no-packages"]).unwrap().1);
    assert!(scan(&["--no-packages", "--packages"]).is_err());
    assert!(scan(&["--no-packages", "--packages-root", "/x"]).is_err());
    assert!(scan(&["--packages=maybe"]).is_err());
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("10M").unwrap(), 10 << 20);
    assert_eq!(parse_size("2G").unwrap(), 2 << 30);
    assert_eq!(parse_size("123").unwrap(), 123);
    assert!(parse_size("ten").is_err());
    assert_eq!(parse_rate("50M").unwrap(), 50 << 20);
    assert_eq!(parse_rate("20M/s").unwrap(), 20 << 20);
    assert!(parse_rate("0").is_err());
    assert!(parse_rate("fast").is_err());
    assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
}

#[test]
fn batch_size_is_capped_at_1000() {
    assert!(try_parse_from(["hashsweep", "scan", "--batch-size", "1001", "."]).is_err());
    assert!(try_parse_from(["hashsweep", "scan", "--batch-size", "1000", "."]).is_ok());
}
