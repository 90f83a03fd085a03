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

    fn inline(s: &str) -> Option<Label> {
        let len = u8::try_from(s.len())
            .ok()
            .filter(|_| s.len() <= Self::INLINE)?;
        let mut bytes = [0; Self::INLINE];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Label(Repr::Inline { len, bytes }))
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
    fn from(s: &str) -> Label {
        Label::inline(s).unwrap_or_else(|| Label(Repr::Heap(Box::new(s.to_owned()))))
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
    fn a_long_label_keeps_its_string() {
        let s = "a label longer than fourteen bytes".to_owned();
        let ptr = s.as_ptr();
        let l = Label::from(s);
        assert_eq!(l.as_str().as_ptr(), ptr, "copied instead of kept");
    }
}
