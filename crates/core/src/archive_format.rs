//! The archive formats `--archives` opens, by name and by their first bytes, and the ones it
//! does not (RAR, CAB): vocabulary shared by the archive reader and the report's notes.

/// The archive formats read, by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Zip,
    Tar,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
    SevenZ,
    /// `ar` archives: Debian packages (`.deb`, whose members are tars), static libraries.
    Ar,
    /// cpio (the "new" and "crc" ASCII formats, and the portable "odc" one).
    Cpio,
    /// An RPM package: its headers are skipped and its payload (a compressed cpio) is read.
    Rpm,
}

impl Format {
    pub const ALL: [Format; 10] = [
        Format::Zip,
        Format::Tar,
        Format::Gzip,
        Format::Xz,
        Format::Zstd,
        Format::Bzip2,
        Format::SevenZ,
        Format::Ar,
        Format::Cpio,
        Format::Rpm,
    ];

    /// The name `--archives=` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Zip => "zip",
            Format::Tar => "tar",
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Zstd => "zstd",
            Format::Bzip2 => "bzip2",
            Format::SevenZ => "7z",
            Format::Ar => "ar",
            Format::Cpio => "cpio",
            Format::Rpm => "rpm",
        }
    }

    /// The format the first bytes (up to 512) say, if it is one of ours.
    pub fn sniff(head: &[u8]) -> Option<Format> {
        let starts = |m: &[u8]| head.starts_with(m);
        if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
            Some(Format::Zip)
        } else if starts(&[0x1f, 0x8b]) {
            Some(Format::Gzip)
        } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Some(Format::Xz)
        } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Format::Zstd)
        } else if starts(b"BZh") && head.get(3).is_some_and(|c| (b'1'..=b'9').contains(c)) {
            Some(Format::Bzip2)
        } else if starts(&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c]) {
            Some(Format::SevenZ)
        } else if head.get(257..262) == Some(b"ustar") {
            Some(Format::Tar)
        } else if starts(&[0xed, 0xab, 0xee, 0xdb]) {
            Some(Format::Rpm)
        } else if starts(b"!<arch>\n") {
            Some(Format::Ar)
        } else if starts(b"070701") || starts(b"070702") || starts(b"070707") {
            Some(Format::Cpio)
        } else {
            None
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Archives `--archives` does not open, by their first bytes: hashed as files, with a note
/// saying their contents were not examined.
pub fn closed_format(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"Rar!\x1a\x07") {
        Some("RAR")
    } else if head.starts_with(b"MSCF\0\0\0\0") {
        Some("CAB")
    } else {
        None
    }
}

/// The formats `--archives` opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Formats(u16);

impl Formats {
    pub const ALL: Formats = Formats(0x3ff);

    /// `zip,tar,...` or `all`.
    pub fn parse(s: &str) -> Result<Formats, String> {
        let mut f = Formats(0);
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                f = Formats::ALL;
                continue;
            }
            let format = Format::ALL
                .iter()
                .find(|x| x.name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = Format::ALL.iter().map(|x| x.name()).collect();
                    format!(
                        "unknown archive format {name:?} (known: {}, all)",
                        names.join(", ")
                    )
                })?;
            f.0 |= format.bit();
        }
        if f.0 == 0 {
            return Err("no archive format named".into());
        }
        Ok(f)
    }

    pub fn contains(self, f: Format) -> bool {
        self.0 & f.bit() != 0
    }

    /// The names of the formats, in [`Format::ALL`] order.
    pub fn names(self) -> Vec<&'static str> {
        Format::ALL
            .iter()
            .filter(|f| self.contains(**f))
            .map(|f| f.name())
            .collect()
    }
}
