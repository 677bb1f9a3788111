//! Validated input: newtypes parsed at the edge, and a collector that gathers every bad field
//! of a request into one `INVALID_ARGUMENT`.

use std::collections::BTreeMap;

use crate::error::{BadField, Error, Result, echo};

/// Collects the bad fields of one request, so that the caller learns of all of them at once:
/// one violation per bad field, whatever is wrong with it.
#[derive(Debug, Default)]
pub struct Violations(Vec<BadField>, std::collections::HashMap<String, usize>);

impl Violations {
    /// Records `field`'s error, if any, and returns the parsed value otherwise.
    pub(crate) fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(description) => {
                self.add(field, description);
                None
            }
        }
    }

    /// Records a bad field; a field already recorded gets this description added to its own
    /// (up to about 1 KiB: the answer has room for no more).
    pub(crate) fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        const ROOM: usize = 1024;
        let (field, description) = (field.into(), description.into());
        match self.1.get(&field) {
            Some(&i) => {
                let known = &mut self.0[i].description;
                if known.len() < ROOM {
                    known.push_str("; ");
                    known.push_str(&description);
                } else if !known.ends_with("; …") {
                    known.push_str("; …");
                }
            }
            None => {
                self.1.insert(field.clone(), self.0.len());
                self.0.push(BadField { field, description });
            }
        }
    }

    /// `Ok` when no field was bad, else one `INVALID_ARGUMENT` listing all of them.
    pub(crate) fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(self.0))
        }
    }

    /// What `build` makes of the parsed fields, or one `INVALID_ARGUMENT` listing every bad
    /// field. `build` can only miss a field that was bad, so its `None` never reaches a
    /// caller; it is answered as INTERNAL rather than a panic on a request path.
    pub(crate) fn done<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T> {
        self.finish()?;
        build().ok_or_else(|| Error::Internal("a validated field is missing".into()))
    }
}

/// A workspace name: an RFC 1035 label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkspaceName(String);

impl WorkspaceName {
    /// Parses an RFC 1035 label: 1-63 of `a-z0-9-`, a letter first, no `-` last.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("is required".into());
        }
        if s.len() > 63 {
            return Err("must be at most 63 characters".into());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("may contain only lowercase letters a-z, digits and '-'".into());
        }
        if !s.as_bytes()[0].is_ascii_lowercase() {
            return Err("must start with a lowercase letter".into());
        }
        if s.ends_with('-') {
            return Err("must not end with '-'".into());
        }
        Ok(WorkspaceName(s.to_owned()))
    }

    /// The name.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A parsed name reads as the `&str` it holds; only `parse` makes one.
impl std::ops::Deref for WorkspaceName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for WorkspaceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a free-text field's length in characters (not bytes) and that it holds no NUL,
/// which no database text column takes.
pub(crate) fn text(s: &str, max_chars: usize) -> Result<String, String> {
    if s.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if s.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    Ok(s.to_owned())
}

/// The most labels a workspace may carry.
pub const MAX_LABELS: usize = 64;

/// Checks labels: at most 64 pairs, each as `label_part` says. Reports each bad key on its
/// own path.
pub(crate) fn labels(
    field: &str,
    labels: &std::collections::HashMap<String, String>,
    v: &mut Violations,
) -> Option<BTreeMap<String, String>> {
    let before = v.0.len();
    if labels.len() > MAX_LABELS {
        v.add(field, format!("at most {MAX_LABELS} labels are allowed"));
    }
    let mut sorted: Vec<_> = labels.iter().collect();
    sorted.sort();
    for (key, value) in sorted {
        if let Err(e) = label_part(key, true) {
            v.add(format!("{field}[{:?}]", echo(key)), format!("key {e}"));
        }
        if let Err(e) = label_part(value, false) {
            v.add(format!("{field}[{:?}]", echo(key)), format!("value {e}"));
        }
    }
    (v.0.len() == before).then(|| labels.clone().into_iter().collect())
}

/// A label key (1-63 characters of `a-z0-9-_.`, starting and ending with a letter or
/// digit) or value (0-63 characters of the same set, as the contract says, with no rule on
/// its ends).
fn label_part(s: &str, key: bool) -> Result<(), String> {
    if s.is_empty() {
        return if key {
            Err("must not be empty".into())
        } else {
            Ok(())
        };
    }
    if s.len() > 63 {
        return Err("must be at most 63 characters".into());
    }
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !s
        .bytes()
        .all(|b| ok(b) || b == b'-' || b == b'_' || b == b'.')
    {
        return Err("may contain only a-z, 0-9, '-', '_' and '.'".into());
    }
    let bytes = s.as_bytes();
    if key && (!ok(bytes[0]) || !ok(bytes[bytes.len() - 1])) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// Parses a resource kind: `^[a-z][a-z0-9-]{0,62}$`.
pub(crate) fn resource_kind(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("is required".into());
    }
    let b = s.as_bytes();
    if s.len() > 63
        || !b[0].is_ascii_lowercase()
        || !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    {
        return Err("must match ^[a-z][a-z0-9-]{0,62}$".into());
    }
    Ok(s.to_owned())
}

/// Parses a resource id: 1-255 printable characters (no control characters). The rule for
/// every id named, to find what was stored under it, and for the claims of tokens.
pub(crate) fn resource_id(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("is required".into());
    }
    if s.chars().count() > 255 {
        return Err("must be at most 255 characters".into());
    }
    if s.chars().any(char::is_control) {
        return Err("must contain only printable characters".into());
    }
    Ok(s.to_owned())
}

/// An id given to something new (a resource, a member, a GPU pod request, a request id, a
/// GPU shape): as `resource_id`, and it must show as what it is. An id holding a
/// right-to-left override or a zero-width space reads in a log or a listing as another.
/// The stricter rule is kept to what is created, so that everything stored before it can
/// still be named.
pub(crate) fn new_id(s: &str) -> Result<String, String> {
    let s = resource_id(s)?;
    visible(&s)?;
    Ok(s)
}

/// The part of `new_id` beyond `resource_id`: every character shows as itself.
pub(crate) fn visible(s: &str) -> Result<(), String> {
    if s.chars().all(shows_as_itself) {
        Ok(())
    } else {
        Err("must not contain invisible or reordering characters (such as U+200B or U+202E)".into())
    }
}

/// Whether `c` shows as itself: not one of the format characters that reorder the text
/// around them (bidirectional controls) or show nothing (zero-width spaces, word joiners,
/// invisible operators, the byte order mark, soft hyphens, interlinear annotations, tag
/// characters, which can smuggle ASCII past a reader), nor a blank that looks like nothing
/// (Hangul fillers, the combining grapheme joiner), a line or paragraph separator or a
/// noncharacter. Joiners that scripts and emoji need (U+200C, U+200D) and variation
/// selectors are allowed.
pub(crate) fn shows_as_itself(c: char) -> bool {
    const HIDDEN: &[(u32, u32)] = &[
        (0xAD, 0xAD),
        (0x34F, 0x34F),
        (0x61C, 0x61C),
        (0x115F, 0x1160),
        (0x3164, 0x3164),
        (0xFFA0, 0xFFA0),
        (0xE0000, 0xE007F),
        (0x180E, 0x180E),
        (0x200B, 0x200B),
        (0x200E, 0x200F),
        (0x2028, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x2069),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
    ];
    let n = u32::from(c);
    let nonchar = (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE;
    !nonchar && !HIDDEN.iter().any(|&(lo, hi)| (lo..=hi).contains(&n))
}

/// A subject (a token's `sub`, a member's subject): 1-255 printable characters. The same
/// rule for tokens and member RPCs, so that whoever can sign in can also be named.
pub(crate) fn subject(s: &str) -> Result<String, String> {
    resource_id(s)
}

/// A group (in a token's groups claim, a group member): like a subject.
pub(crate) fn group(s: &str) -> Result<String, String> {
    subject(s)
}

/// An email (a token's `email`, a member looked up by email): like a subject.
pub(crate) fn email(s: &str) -> Result<String, String> {
    subject(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_names_follow_rfc_1035() {
        let long = "a".repeat(63);
        for ok in ["a", "ml-team", "a1", "a-1", long.as_str()] {
            assert!(WorkspaceName::parse(ok).is_ok(), "{ok}");
        }
        let too_long = "a".repeat(64);
        for bad in [
            "",
            "1a",
            "-a",
            "a-",
            "A",
            "ml_team",
            "ml.team",
            "é",
            too_long.as_str(),
        ] {
            assert!(WorkspaceName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_counts_characters_not_bytes() {
        assert!(text(&"é".repeat(100), 100).is_ok());
        assert!(text(&"é".repeat(101), 100).is_err());
    }

    #[test]
    fn labels_report_each_bad_pair() {
        let mut v = Violations::default();
        let good: std::collections::HashMap<_, _> = [
            ("team".to_string(), "ml".to_string()),
            ("a.b_c-d".into(), "".into()),
            ("ends".into(), "-x.".into()),
        ]
        .into();
        assert!(labels("labels", &good, &mut v).is_some());
        let bad: std::collections::HashMap<_, _> = [
            ("Team".to_string(), "ml".to_string()),
            ("ok".into(), "X".into()),
            ("".into(), "v".into()),
        ]
        .into();
        assert!(labels("labels", &bad, &mut v).is_none());
        assert_eq!(v.0.len(), 3);
        let many: std::collections::HashMap<_, _> =
            (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        let mut v = Violations::default();
        assert!(labels("labels", &many, &mut v).is_none());
    }

    #[test]
    fn resource_kinds_and_ids() {
        assert!(resource_kind("model").is_ok());
        assert!(resource_kind("a").is_ok());
        assert!(resource_kind("Model").is_err());
        assert!(resource_kind("1model").is_err());
        assert!(resource_kind(&"a".repeat(64)).is_err());
        assert!(resource_id("models/ResNet 50:v1").is_ok());
        assert!(resource_id("").is_err());
        assert!(resource_id("a\nb").is_err());
        assert!(resource_id(&"x".repeat(256)).is_err());
        // Named ids need only be free of control characters; new ones must show as
        // themselves.
        for hidden in [
            "a\u{202E}b",
            "a\u{200B}b",
            "a\u{2028}b",
            "\u{FEFF}a",
            "a\u{2066}",
            "a\u{E0041}",
            "\u{3164}",
            "a\u{FFFF}",
            "a\u{10FFFE}",
        ] {
            assert!(resource_id(hidden).is_ok(), "{hidden:?}");
            assert!(new_id(hidden).is_err(), "{hidden:?}");
        }
        for ok in [
            "A100 80GB",
            "nvidia.com/gpu",
            "pod-ü",
            "名前",
            "a\u{1F600}",
            "\u{1F469}\u{200D}\u{1F52C}",
            "\u{645}\u{200C}\u{6CC}",
            "\u{2764}\u{FE0F}",
            "\u{E000}",
        ] {
            assert_eq!(new_id(ok).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn a_field_is_reported_once_whatever_is_wrong_with_it() {
        let mut v = Violations::default();
        v.add("labels[\"-X\"]", "key is bad");
        v.add("name", "is required");
        v.add("labels[\"-X\"]", "value is bad");
        let Err(Error::InvalidArgument(fields)) = v.finish() else {
            panic!("no violations");
        };
        let found: Vec<(&str, &str)> = fields
            .iter()
            .map(|f| (f.field.as_str(), f.description.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("labels[\"-X\"]", "key is bad; value is bad"),
                ("name", "is required")
            ]
        );
    }
}
