//! `hashsweep serve --store redis-cluster://…`: a real three-master Redis Cluster of our own
//! (`redis-server --cluster-enabled yes` on free loopback ports, `redis-cli --cluster create`),
//! no persistence, killed on drop. Skipped (loudly) without redis-server, unless
//! `HASHSWEEP_REQUIRE_REDIS` is set.

use super::*;

/// One cluster node: its port, its bus port, its directory (nodes.conf lives there).
struct Node {
    port: u16,
    bus: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let bus = self.bus.to_string();
        let extra = [
            "--cluster-port",
            &bus,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            // The other masters keep serving their slots while one is down.
            "--cluster-require-full-coverage",
            "no",
        ];
        self.child = Some(spawn_redis(self.port, &self.dir, &extra));
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One inline command; the raw reply.
    fn command(&self, line: &str) -> Option<String> {
        redis_command(self.port, line)
    }

    fn dbsize(&self) -> u64 {
        let r = self.command("DBSIZE").expect("DBSIZE");
        r.trim().trim_start_matches(':').parse().expect("DBSIZE")
    }

    fn id(&self) -> String {
        let r = self.command("CLUSTER MYID").expect("CLUSTER MYID");
        r.lines().nth(1).expect("an id").trim().to_string()
    }

    /// Does this node hold `key` itself (not a MOVED)?
    fn holds(&self, key: &str) -> bool {
        self.command(&format!("EXISTS {key}"))
            .is_some_and(|r| r.starts_with(":1"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Cluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// A free loopback port whose neighbourhood is not needed: bus ports are taken the same way.
fn two_free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = (0..3)
            .map(|i| {
                let d = dir.path().join(format!("n{i}"));
                std::fs::create_dir_all(&d).unwrap();
                let (port, bus) = two_free_ports();
                Node {
                    port,
                    bus,
                    dir: d,
                    child: None,
                }
            })
            .collect();
        for n in &mut nodes {
            n.start();
        }
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli on PATH");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = Cluster { nodes, _dir: dir };
        c.wait_ok(Duration::from_secs(20));
        c
    }

    fn wait_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.nodes.iter().all(|n| {
                n.child.is_none()
                    || n.command("CLUSTER INFO")
                        .is_some_and(|r| r.contains("cluster_state:ok"))
            }) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the cluster did not become ok");
    }

    fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-cluster://{}", seeds.join(","))
    }
}

/// The longest a scan may take with the cluster steady.
const NORMAL: Duration = Duration::from_secs(60);

/// The longest a scan may take while slots move (a few seconds when healthy). Longer means a
/// gateway stalled: its cluster connection wedged and was never rebuilt (every call timed out
/// for minutes), or it could not store answers it had asked for, so the other gateway waited
/// for those claims to lapse (about 110 s here).
const RESHARDING: Duration = Duration::from_secs(45);

/// A digest's hash tag on a cluster: its bucket, the top six bits of its first byte, in hex.
fn bucket_tag(hex: &str) -> String {
    let first = u8::from_str_radix(&hex[..2], 16).expect("hex");
    format!("{:02x}", first >> 2)
}

fn cluster_key(hex: &str) -> String {
    format!("hashsweep:v1:sha256:{{{}}}{hex}", bucket_tag(hex))
}

/// Eight endpoints, each 300 shared files, 40 of their own and EICAR; what each should get.
fn fleet(mock: &MockServer, seed: u64) -> (Vec<Tree>, HashMap<String, &'static str>) {
    let mut expected = HashMap::new();
    let trees = (0..8u64)
        .map(|t| {
            let tree = Tree::new();
            for i in 0..300u64 {
                tree.file(
                    format!("usr/lib/f{i}"),
                    &random_bytes(seed + i, 64 + i as usize),
                );
            }
            for i in 0..40u64 {
                tree.file(
                    format!("home/own{i}"),
                    &random_bytes(seed + 5000 + t * 100 + i, 100),
                );
            }
            tree.file("home/eicar.com", EICAR);
            tree
        })
        .collect();
    for i in 0..300u64 {
        let h = sha256_hex(&random_bytes(seed + i, 64 + i as usize));
        if i % 3 == 0 {
            mock.set(&h, 0, 0);
            expected.insert(h, "clean");
        } else {
            expected.insert(h, "unknown");
        }
    }
    expected.insert(EICAR_SHA256.to_string(), "infected");
    (trees, expected)
}

/// Scan the fleet through `gws` (alternating), each scan within `limit`; check every verdict
/// and exit status.
fn scan_fleet(gws: &[&Gateway], trees: &[Tree], expected: &HashMap<String, &str>, limit: Duration) {
    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let handles: Vec<_> = trees
            .iter()
            .enumerate()
            .map(|(i, tree)| {
                let url = gws[i % gws.len()].url.clone();
                s.spawn(move || {
                    run_with_timeout(
                        cmd()
                            .env("METADEFENDER_APIKEY", TOKENS[i].1)
                            .args(["scan", "--api-url", &url, "--batch-size", "100"])
                            .args(["--retries", "8"])
                            .arg(tree.path()),
                        limit,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(code(out), 1, "scan {i} (EICAR everywhere): {}", stderr(out));
        let recs = ndjson(out);
        assert_eq!(recs.len(), 341, "scan {i}");
        for r in &recs {
            let sha = r["sha256"].as_str().unwrap();
            let want = expected.get(sha).copied().unwrap_or("unknown");
            assert_eq!(r["verdict"], want, "scan {i}: {r}");
        }
    }
}

/// The sum of every series of `name` on a gateway's metrics page.
fn metric_sum(gw: &Gateway, name: &str) -> f64 {
    http(gw.admin(), "GET", "/metrics", &[], "")
        .body
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn assert_asked_once(mock: &MockServer, distinct_expected: usize) {
    let asked = upstream_hashes(mock);
    let distinct: HashSet<&String> = asked.iter().collect();
    assert_eq!(
        asked.len(),
        distinct.len(),
        "a digest was asked upstream twice ({} hashes, {} distinct)",
        asked.len(),
        distinct.len()
    );
    assert_eq!(distinct.len(), distinct_expected);
}

#[test]
fn on_a_cluster_eight_scans_through_two_gateways_ask_once_and_keys_land_on_every_master() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let a = Gateway::start(&mock, &cluster.url(), &tokens, &[]);
    let b = Gateway::start(&mock, &cluster.url(), &tokens, &[]);
    let (trees, expected) = fleet(&mock, 0);
    scan_fleet(&[&a, &b], &trees, &expected, NORMAL);
    // 300 shared + 8 × 40 own + EICAR.
    assert_asked_once(&mock, 300 + 320 + 1);
    let sizes: Vec<u64> = cluster.nodes.iter().map(Node::dbsize).collect();
    assert!(sizes.iter().all(|&n| n > 100), "keys per master: {sizes:?}");
    assert!(
        sizes.iter().sum::<u64>() >= 621,
        "keys per master: {sizes:?}"
    );
    // One pipeline per node, not per key: a 341-digest request is a handful of store calls.
    let m = http(a.admin(), "GET", "/metrics", &[], "").body;
    assert!(!m.contains("store_errors_total"), "{m}");
}

#[test]
fn slots_moved_by_a_reshard_while_scans_run_give_no_wrong_verdict_and_no_failed_scan() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let a = Gateway::start(&mock, &cluster.url(), &tokens, &[]);
    let b = Gateway::start(&mock, &cluster.url(), &tokens, &[]);
    let (from, to) = (cluster.nodes[0].id(), cluster.nodes[1].id());
    let seed = cluster.nodes[0].port;
    // The gateways read the slot map and the store holds the first round's answers.
    let (trees, expected) = fleet(&mock, 100_000);
    scan_fleet(&[&a, &b], &trees, &expected, NORMAL);
    let third = cluster.nodes[2].id();
    let started = Instant::now();
    std::thread::scope(|s| {
        let reshard = s.spawn(|| {
            // Slots from the first master to the second, then on to the third.
            for (from, to) in [(&from, &to), (&to, &third)] {
                let out = Command::new("redis-cli")
                    .args(["--cluster", "reshard"])
                    .arg(format!("127.0.0.1:{seed}"))
                    .args(["--cluster-from", from, "--cluster-to", to])
                    .args(["--cluster-slots", "3000", "--cluster-yes"])
                    .output()
                    .expect("redis-cli");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        });
        // Rounds of the fleet while the slots move: cached digests and new ones.
        let mut round = 0u64;
        while round < 2 || !reshard.is_finished() {
            let (trees, expected) = fleet(&mock, 100_000 * (round % 3 + 1));
            scan_fleet(&[&a, &b], &trees, &expected, RESHARDING);
            round += 1;
            assert!(
                started.elapsed() < Duration::from_secs(400),
                "{round} rounds"
            );
        }
        reshard.join().unwrap();
    });
    assert!(started.elapsed() < Duration::from_secs(600));
    // The slots did move: the first master serves fewer keys than the second.
    cluster.wait_ok(Duration::from_secs(10));
    let info = cluster.nodes[1].command("CLUSTER NODES").unwrap();
    assert!(info.contains("connected"), "{info}");
    // After the reshard, everything is still answered from the store.
    let before = upstream_hashes(&mock).len();
    let (trees, expected) = fleet(&mock, 100_000);
    scan_fleet(&[&a, &b], &trees, &expected, NORMAL);
    assert_eq!(
        upstream_hashes(&mock).len(),
        before,
        "asked again after the reshard"
    );
    // The gateways did meet moved slots: their pipelines were cut again by key. (A request
    // may still get a 503 while the crate's cluster connection recovers from a redirect
    // storm; the scans retried it, as the assertions above show: no failed scan.)
    let regrouped: f64 = [&a, &b]
        .iter()
        .map(|g| metric_sum(g, "hashsweep_gateway_store_regrouped_total"))
        .sum();
    assert!(regrouped > 0.0, "no pipeline met a moved slot");
}

#[test]
fn a_stopped_master_gives_503_for_its_slots_only_and_they_recover_when_it_is_back() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    let mut cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let gw = Gateway::start(&mock, &cluster.url(), &tokens, &[]);
    let hashes: Vec<String> = (0..60u64)
        .map(|i| sha256_hex(&random_bytes(7000 + i, 80)))
        .collect();
    for h in &hashes {
        mock.set(h, 0, 0);
    }
    let r = post_hashes(&gw, TOKENS[0].1, &hashes);
    assert_eq!(r.status, 200, "{}", r.body);
    let victim = 2;
    let (on_victim, elsewhere): (Vec<String>, Vec<String>) = hashes
        .iter()
        .cloned()
        .partition(|h| cluster.nodes[victim].holds(&cluster_key(h)));
    assert!(!on_victim.is_empty() && !elsewhere.is_empty());
    let asked = upstream_hashes(&mock).len();
    cluster.nodes[victim].stop();

    // The others' slots: answered from the store, as before.
    let r = post_hashes(&gw, TOKENS[1].1, &elsewhere);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json()["data"].as_array().is_some_and(
            |d| d.len() == elsewhere.len() && d.iter().all(|e| e["scan_result_i"] == 0)
        ),
        "{}",
        r.body
    );
    assert_eq!(upstream_hashes(&mock).len(), asked);
    // Its own: 503, never a verdict.
    let t = Instant::now();
    let r = post_hashes(&gw, TOKENS[1].1, &on_victim[..1]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], 503000);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());

    cluster.nodes[victim].start();
    cluster.wait_ok(Duration::from_secs(20));
    let (r, took) = post_until_ok(&gw, &on_victim, Duration::from_secs(30));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(took < Duration::from_secs(30));
}

#[test]
fn on_a_cluster_budgets_are_shared_by_the_instances_and_a_forged_value_is_asked_again() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let key_file = dir.path().join("store.key");
    std::fs::write(&key_file, "k".repeat(40)).unwrap();
    let key_file = key_file.to_str().unwrap();
    let extra = [
        "--client-budget",
        "3",
        "--client-rate",
        "100",
        "--store-key-file",
        key_file,
    ];
    let gw1 = Gateway::start(&mock, &cluster.url(), &tokens, &extra);
    let gw2 = Gateway::start(&mock, &cluster.url(), &tokens, &extra);
    let h = |c: &str| c.repeat(64);
    let r = post_hashes(&gw1, TOKENS[1].1, &[h("a"), h("b")]);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2, "{}", r.raw);
    // One left of three, counted across both instances.
    let r = post_hashes(&gw2, TOKENS[1].1, &[h("c"), h("d")]);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 1, "{}", r.raw);
    let r = post_hashes(&gw1, TOKENS[1].1, &[h("e")]);
    assert_eq!(r.status, 429, "{}", r.raw);
    // A value written by someone without the store key is a miss, asked again.
    let out = Command::new("redis-cli")
        .args(["-c", "-p", &cluster.nodes[0].port.to_string()])
        .args(["SET", &cluster_key(&h("a")), "{\"c\":0,\"t\":0}"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let r = post_hashes(&gw2, TOKENS[2].1, &[h("a"), h("b")]);
    assert_eq!(r.status, 200, "{}", r.raw);
    let mut asked = upstream_hashes(&mock);
    asked.sort();
    assert_eq!(asked, vec![h("A"), h("A"), h("B"), h("C")]);
    assert!(metric_sum(&gw2, "hashsweep_gateway_store_forged_total") >= 1.0);
}

#[test]
fn on_a_cluster_prevalence_keys_live_in_their_digests_slot_and_survive_a_script_flush() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let gw = Gateway::start(&mock, &cluster.url(), &tokens, &["--prevalence"]);
    let hashes: Vec<String> = (0..60u32).map(|i| sha256_hex(&i.to_le_bytes())).collect();
    for (i, (_, tok)) in TOKENS.iter().take(3).enumerate() {
        let r = post_hashes(&gw, tok, &hashes);
        assert_eq!(r.status, 200, "{}", r.raw);
        let entries = r.json()["data"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 60);
        assert!(
            entries.iter().all(|e| e["hashsweep_hosts"] == i + 1),
            "{entries:?}"
        );
    }
    let mut masters = HashSet::new();
    for h in &hashes {
        let names = format!("hashsweep:v1:hosts:sha256:{{{}}}{h}", bucket_tag(h));
        let at: Vec<usize> = (0..3).filter(|&n| cluster.nodes[n].holds(&names)).collect();
        assert_eq!(at.len(), 1, "{names} on nodes {at:?}");
        assert!(
            cluster.nodes[at[0]].holds(&cluster_key(h)),
            "{h}: not with its verdict"
        );
        masters.insert(at[0]);
    }
    assert_eq!(masters.len(), 3, "prevalence keys on masters {masters:?}");
    // A Redis that forgot the script (restart, failover, SCRIPT FLUSH) gets it again.
    for n in &cluster.nodes {
        assert!(
            n.command("SCRIPT FLUSH")
                .is_some_and(|r| r.starts_with("+OK"))
        );
    }
    let r = post_hashes(&gw, TOKENS[3].1, &hashes[..1]);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.json()["data"][0]["hashsweep_hosts"], 4);
    let body = json!({ "hash": [&hashes[1]] }).to_string();
    let v = http(gw.admin(), "POST", "/v1/prevalence", &[], &body).json();
    assert_eq!(v[0]["hosts"], 3);
    assert_eq!(
        v[0]["names"],
        json!(["endpoint0", "endpoint1", "endpoint2"])
    );

    // Full masters that may evict nothing refuse the recording script (OOM); the verdicts it
    // shares each node's pipeline with are served all the same, without a host count.
    let verdicts = |r: &Reply| -> Vec<Value> {
        assert_eq!(r.status, 200, "{}", r.raw);
        let mut entries = r.json()["data"].as_array().unwrap().clone();
        for e in &mut entries {
            e.as_object_mut().unwrap().remove("hashsweep_hosts");
        }
        entries
    };
    let before = verdicts(&post_hashes(&gw, TOKENS[0].1, &hashes));
    for n in &cluster.nodes {
        for line in [
            "CONFIG SET maxmemory-policy noeviction",
            "CONFIG SET maxmemory 1",
        ] {
            assert!(
                n.command(line).is_some_and(|r| r.starts_with("+OK")),
                "{line}"
            );
        }
    }
    let asked = mock.requests().len();
    let full = post_hashes(&gw, TOKENS[5].1, &hashes);
    assert!(
        full.json()["data"]
            .as_array()
            .is_some_and(|a| a.iter().all(|e| e.get("hashsweep_hosts").is_none())),
        "{}",
        full.raw
    );
    assert_eq!(verdicts(&full), before);
    assert_eq!(mock.requests().len(), asked, "upstream was asked again");
}

#[test]
fn on_a_cluster_two_gateways_upload_a_file_held_by_four_endpoints_once() {
    if !redis_available() {
        return;
    }
    use super::upload::{check_all_answered, endpoints, infected_when_scanned, scan_all};
    let mock = MockServer::start(Some(KEY)).unwrap();
    infected_when_scanned(&mock);
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let flags = ["--upload-unknown", "--upload-accept-sharing"];
    let a = Gateway::start(&mock, &cluster.url(), &tokens, &flags);
    let b = Gateway::start(&mock, &cluster.url(), &tokens, &flags);
    let outs = scan_all(&[a.url.clone(), b.url.clone()], &endpoints(4));
    assert_eq!(mock.uploads().len(), 1, "{:?}", mock.uploads());
    check_all_answered(&outs);
}
