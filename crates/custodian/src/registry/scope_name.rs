//! A scope's name, stored without an allocation when it is short.

/// A scope's name, kept inline when it is short (most are literals: `"request"`,
/// `"job"`), so that a scope's enter + exit does not pay an allocation and a free for
/// it.
pub(crate) enum ScopeName {
    Inline {
        len: u8,
        bytes: [u8; ScopeName::INLINE],
    },
    Heap(Box<str>),
}

impl ScopeName {
    /// The longest name kept inline, in bytes.
    const INLINE: usize = 30;

    #[inline]
    pub(crate) fn new(name: &str) -> ScopeName {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= Self::INLINE => {
                let mut bytes = [0; Self::INLINE];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                ScopeName::Inline { len, bytes }
            }
            _ => ScopeName::Heap(name.into()),
        }
    }
}

impl std::ops::Deref for ScopeName {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // Copied whole from a `&str`: always UTF-8 (the empty fallback is never taken).
            ScopeName::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            ScopeName::Heap(name) => name,
        }
    }
}

impl std::fmt::Display for ScopeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for ScopeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_short_and_long_read_back_whole() {
        for name in [
            "",
            "root",
            "é",
            &"x".repeat(30),
            &"y".repeat(31),
            "ünïcödé ünïcödé ünïcödé",
        ] {
            let n = ScopeName::new(name);
            assert_eq!(&*n, name);
            assert_eq!(
                matches!(n, ScopeName::Inline { .. }),
                name.len() <= 30,
                "{name}"
            );
        }
    }
}
