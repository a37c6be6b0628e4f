//! `hashsweep check`: one small request (one hash) that says whether `--api-url` and the key
//! work, and what the key's budget is, before the first long sweep. Exit 0 when lookups can
//! be made now, 2 otherwise.

use hashsweep::digest::Digest;
use hashsweep::lookup::LookupBatch;

use super::*;
use crate::cli::CheckArgs;

/// What is asked: the SHA-256 of the EICAR test file, which every service knows as a
/// detection, so the answer also shows the service's verdicts come through.
const PROBE: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

/// `hashsweep check`
pub fn run_check(a: CheckArgs) -> Result<u8, Error> {
    if let Some(n) = hashsweep::clock::offset_note() {
        note(n);
    }
    let key = load_key(a.conn.apikey_file.as_deref(), false)?;
    let ca_cert = read_ca_cert(a.conn.ca_cert.as_deref())?;
    let client = HttpClient::new(config::client_config(&a.conn, None, key, ca_cert))?;
    if let Some(notice) = client.notice() {
        eprintln!("hashsweep: warning: {notice}");
    }
    let probe = Digest::from_hex(PROBE)
        .ok_or_else(|| Error::Internal("the check's probe digest is not hex".into()))?;
    let started = std::time::Instant::now();
    let answer = client.lookup(&LookupBatch {
        id: 1,
        digests: vec![probe],
    });
    let took = started.elapsed().as_secs_f64();
    let mut out = io::stdout().lock();
    let endpoint = client.endpoint();
    let failed = answer
        .into_iter()
        .find_map(|(_, o)| o.err())
        .map(|e| client.halted().unwrap_or(e));
    if let Some(why) = failed {
        writeln!(out, "{endpoint}: not usable: {why}")?;
        return Ok(2);
    }
    writeln!(
        out,
        "{endpoint}: the URL and the API key work (answered in {took:.2} s)"
    )?;
    match client.budget() {
        Some(b) => {
            writeln!(out, "budget: {}", b.human(hashsweep::clock::now()))?;
            remember_budget(&a, &client, &b);
            if b.remaining == 0 {
                writeln!(
                    out,
                    "not usable now: the key's budget is spent; lookups can be made again once it resets"
                )?;
                return Ok(2);
            }
        }
        None => writeln!(out, "budget: the service did not state one")?,
    }
    Ok(0)
}

/// Keep the budget the service stated in the cache, so that the next scan with this key plans
/// with it from its first digest instead of spending a lookup to learn it. A cache that cannot
/// be opened costs that one lookup: a note, not a failure of the check.
fn remember_budget(a: &CheckArgs, client: &HttpClient, b: &hashsweep::lookup::Budget) {
    if a.no_cache {
        return;
    }
    let Some(path) = a.cache.clone().or_else(Cache::default_path) else {
        return;
    };
    let stored = Cache::open(&path)
        .map_err(|e| ErrorChain(&e).to_string())
        .and_then(|(cache, _)| {
            cache
                .put_budget(&client.budget_scope(), b)
                .map_err(|e| ErrorChain(&e).to_string())
        });
    if let Err(why) = stored {
        warn(format_args!(
            "the budget is not remembered for the next scan: {why}"
        ));
    }
}
