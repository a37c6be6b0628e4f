//! The same shape as `yara_scan` without yara-x (reads files, prints JSON), so the difference in
//! release binary size between the two is what yara-x adds.

use std::io::Read as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut buf = vec![0u8; 1 << 20];
    for path in std::env::args().skip(1) {
        let mut f = std::fs::File::open(&path)?;
        let mut total = 0usize;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        println!("{}", serde_json::json!({"path": path, "bytes": total}));
    }
    Ok(())
}
