//! A temp file's name as the system calls take it, made once at creation.

use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;

/// A temp entry's name with its terminating NUL, inline when short (the default prefix
/// and suffix with the random part take 21 bytes): the removal at release hands it to
/// `statat` and `unlinkat` as it is, with no allocation, copy or NUL scan per call.
pub(super) enum CName {
    Inline { len: u8, bytes: [u8; CName::INLINE] },
    Heap(CString),
}

impl CName {
    /// The longest name kept inline, its NUL included.
    const INLINE: usize = 48;

    /// `None` if `name` holds a NUL byte (a created name never does: the affixes are
    /// checked, and the system call would have refused it).
    pub(super) fn new(name: &OsStr) -> Option<CName> {
        let b = name.as_bytes();
        if b.contains(&0) {
            return None;
        }
        Some(match u8::try_from(b.len() + 1) {
            Ok(len) if usize::from(len) <= Self::INLINE => {
                let mut bytes = [0; Self::INLINE];
                bytes[..b.len()].copy_from_slice(b);
                CName::Inline { len, bytes }
            }
            _ => CName::Heap(CString::new(b).ok()?),
        })
    }

    pub(super) fn as_c_str(&self) -> &CStr {
        match self {
            CName::Inline { len, bytes } => {
                let b = &bytes[..usize::from(*len)];
                debug_assert!(CStr::from_bytes_with_nul(b).is_ok());
                // SAFETY: `new` copied `len - 1` bytes holding no NUL, and the byte at
                // `len - 1` is the array's zero: exactly one NUL, at the end, as
                // `from_bytes_with_nul_unchecked` requires (checked again in debug
                // builds; the test below reads every length back). Unchecked: the
                // release would otherwise scan the name at every removal.
                #[allow(unsafe_code)]
                unsafe {
                    CStr::from_bytes_with_nul_unchecked(b)
                }
            }
            CName::Heap(c) => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_short_and_long_read_back_whole_and_nul_is_refused() {
        let long: Vec<String> = (0..60).map(|n| "z".repeat(n)).collect();
        let names = [
            "",
            "tmp-0123456789abcdef",
            "ünï",
            &"x".repeat(47),
            &"y".repeat(48),
        ];
        for name in names.into_iter().chain(long.iter().map(String::as_str)) {
            let n = CName::new(OsStr::new(name)).unwrap();
            assert_eq!(n.as_c_str().to_bytes(), name.as_bytes());
            assert_eq!(matches!(n, CName::Inline { .. }), name.len() < 48, "{name}");
        }
        assert!(CName::new(OsStr::new("a\0b")).is_none());
    }
}
