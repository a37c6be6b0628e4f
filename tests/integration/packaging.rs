//! The systemd units the .deb installs (`packaging/systemd/`) are the ones the user guide's
//! fleet chapter (`docs/src/fleet.md`) shows, with the binary at /usr/bin instead of
//! /usr/local/bin.

use std::path::Path;

fn guide_unit(guide: &str, name: &str) -> String {
    let marker = format!("# /etc/systemd/system/{name}\n");
    let start = guide
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/src/fleet.md lacks {name}"))
        + marker.len();
    let rest = &guide[start..];
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
fn packaged_units_are_the_guide_units() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/src/fleet.md")).expect("docs/src/fleet.md");
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
            guide_unit(&guide, name),
            "{name} differs from the one docs/src/fleet.md shows"
        );
    }
}
