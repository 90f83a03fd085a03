//! A resource's label, kept inline when it is short.

use std::borrow::Cow;
use std::fmt;

/// A resource's label, as [`Scope::register`](crate::Scope::register) takes it.
///
/// Most labels are short literals (`"lock"`, `"temp file"`, `"decoder"`): up to 14 bytes
/// are kept inline in the registry's entry, so that a registration pays no allocation
/// (and its release no free) for its label. A longer label keeps the `String` it was
/// made from. Made with `into()` from a `&str`, a `String`, a `&String`, a `Box<str>`
/// or a `Cow<str>`, so that any of them can be passed as a label.
///
/// ```
/// use tokio_custodian::Label;
/// let short = Label::from("decoder");
/// let long = Label::from(format!("transcoder for {}", "clip-0001.wav"));
/// assert_eq!(&*short, "decoder");
/// assert_eq!(long.to_string(), "transcoder for clip-0001.wav");
/// ```
#[derive(Clone)]
pub struct Label(Repr);

/// 16 bytes: an inline label's length and bytes, or one pointer to a heap `String`
/// (so that a long label's `String` is kept as it is, never copied or shrunk). The
/// entry it sits in must stay within 104 bytes (see `registry::tests`).
#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; Label::INLINE],
    },
    // Boxed on purpose: a bare `String` (24 bytes) would make the label 32 and the
    // entry too large; a `Box<str>` would copy or shrink the caller's `String`.
    #[allow(clippy::box_collection)]
    Heap(Box<String>),
}

impl Label {
    /// The longest label kept inline, in bytes.
    const INLINE: usize = 14;

    #[inline]
    fn inline(s: &str) -> Option<Label> {
        let b = s.as_bytes();
        let n = b.len();
        if n > Self::INLINE {
            return None;
        }
        let mut bytes = [0; Self::INLINE];
        // Two overlapping copies of a fixed size instead of one of length `n`: those are
        // a few moves, where a variable length is a call to `memcpy` (about 40
        // instructions of a registration's 700 for a 5-byte label).
        if n >= 8 {
            bytes[..8].copy_from_slice(&b[..8]);
            bytes[n - 8..n].copy_from_slice(&b[n - 8..]);
        } else if n >= 4 {
            bytes[..4].copy_from_slice(&b[..4]);
            bytes[n - 4..n].copy_from_slice(&b[n - 4..]);
        } else if n > 0 {
            bytes[0] = b[0];
            bytes[n / 2] = b[n / 2];
            bytes[n - 1] = b[n - 1];
        }
        // At most 14: fits.
        let len = n as u8;
        Some(Label(Repr::Inline { len, bytes }))
    }

    #[cold]
    #[inline(never)]
    fn copied(s: &str) -> Label {
        Label(Repr::Heap(Box::new(s.to_owned())))
    }

    /// The label as a string slice.
    ///
    /// ```
    /// assert_eq!(tokio_custodian::Label::from("job").as_str(), "job");
    /// ```
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied whole from a `&str`: always UTF-8 (the empty fallback is never taken).
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Heap(s) => s,
        }
    }
}

impl std::ops::Deref for Label {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Label {
    // Inlined into the registering call, the long label's copy kept out of line: the
    // short label's path is then a few moves, without a call's frame.
    #[inline]
    fn from(s: &str) -> Label {
        Label::inline(s).unwrap_or_else(|| Label::copied(s))
    }
}

impl From<&mut str> for Label {
    fn from(s: &mut str) -> Label {
        Label::from(&*s)
    }
}

impl From<String> for Label {
    fn from(s: String) -> Label {
        Label::inline(&s).unwrap_or_else(|| Label(Repr::Heap(Box::new(s))))
    }
}

impl From<&String> for Label {
    fn from(s: &String) -> Label {
        Label::from(s.as_str())
    }
}

impl From<Box<str>> for Label {
    fn from(s: Box<str>) -> Label {
        Label::from(s.into_string())
    }
}

impl From<Cow<'_, str>> for Label {
    fn from(s: Cow<'_, str>) -> Label {
        match s {
            Cow::Borrowed(s) => Label::from(s),
            Cow::Owned(s) => Label::from(s),
        }
    }
}

impl From<char> for Label {
    fn from(c: char) -> Label {
        Label::from(c.encode_utf8(&mut [0; 4]) as &str)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> String {
        match l.0 {
            Repr::Heap(s) => *s,
            Repr::Inline { .. } => l.as_str().to_owned(),
        }
    }
}

impl PartialEq for Label {
    fn eq(&self, other: &Label) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Label {}

impl PartialEq<str> for Label {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Label {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Label::from)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_short_and_long_read_back_whole() {
        assert_eq!(std::mem::size_of::<Label>(), 16);
        for s in [
            "",
            "lock",
            "é",
            "temp file",
            &"x".repeat(14),
            &"y".repeat(15),
            "ünïcödé ünïcödé",
        ] {
            let inline = s.len() <= 14;
            for l in [
                Label::from(s),
                Label::from(s.to_owned()),
                Label::from(&s.to_owned()),
                Label::from(Box::<str>::from(s)),
                Label::from(Cow::Borrowed(s)),
            ] {
                assert_eq!(l.as_str(), s);
                assert_eq!(matches!(l.0, Repr::Inline { .. }), inline, "{s}");
                assert_eq!(String::from(l.clone()), s);
                assert_eq!(l, *s);
            }
        }
        assert_eq!(Label::from('é').as_str(), "é");
    }

    #[test]
    fn every_inline_length_reads_back() {
        // Distinct bytes at every position: the overlapping copies must leave none out.
        let all = "abcdefghijklmnop";
        for n in 0..=Label::INLINE {
            let l = Label::from(&all[..n]);
            assert!(matches!(l.0, Repr::Inline { .. }));
            assert_eq!(l.as_str(), &all[..n]);
        }
    }

    #[test]
    fn a_long_label_keeps_its_string() {
        let s = "a label longer than fourteen bytes".to_owned();
        let ptr = s.as_ptr();
        let l = Label::from(s);
        assert_eq!(l.as_str().as_ptr(), ptr, "copied instead of kept");
    }
}
