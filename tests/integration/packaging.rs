//! The systemd units the .deb installs (`packaging/systemd/`) are the ones the README shows,
//! with the binary at /usr/bin instead of /usr/local/bin.

use std::path::Path;

fn readme_unit(readme: &str, name: &str) -> String {
    let marker = format!("# /etc/systemd/system/{name}\n");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README lacks {name}"))
        + marker.len();
    let rest = &readme[start..];
    // A unit ends where its code block ends or the next unit's header starts.
    let end = [rest.find("```"), rest.find("\n# /etc/systemd/system/")]
        .into_iter()
        .flatten()
        .min()
        .expect("unterminated block");
    let unit = rest[..end].trim_end().to_owned() + "\n";
    unit.replace("/usr/local/bin/hashsweep", "/usr/bin/hashsweep")
}

#[test]
fn packaged_units_are_the_readme_units() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for name in [
        "hashsweep-gateway.service",
        "hashsweep-sweep.service",
        "hashsweep-sweep.timer",
    ] {
        let packaged = std::fs::read_to_string(root.join("packaging/systemd").join(name))
            .unwrap_or_else(|e| panic!("packaging/systemd/{name}: {e}"));
        // The packaged file opens with its own comment lines (how to enable it).
        let body: String = packaged
            .lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            body,
            readme_unit(&readme, name),
            "{name} differs from the README's"
        );
    }
}
