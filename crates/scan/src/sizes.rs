//! A size limit as the flags take it (`400M`, `1K`, `1000`): how help defaults and messages
//! name a limit such as `--archive-max-bytes`, so the number reads as the user would type it.

/// `bytes` in the largest binary unit that divides it exactly (`2G`, `400M`, `64K`, `1000`),
/// the form the size flags parse back to the same number.
pub fn flag_size(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_units_only() {
        assert_eq!(flag_size(400 << 20), "400M");
        assert_eq!(flag_size(1 << 40), "1T");
        assert_eq!(flag_size(1536), "1536");
        assert_eq!(flag_size(3 << 10), "3K");
        assert_eq!(flag_size(0), "0");
    }
}
