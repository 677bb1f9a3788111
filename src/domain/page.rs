//! AIP-158 pagination, shared by every List RPC: page sizes, and opaque page tokens that
//! carry the last key of the previous page and the filter they were made for.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use super::validate::Violations;

/// Page size used when the request gives 0.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page; larger requests are served this many.
pub const MAX_PAGE_SIZE: u64 = 100;

/// The page sizes of one listing: what 0 means, and the most served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSizes {
    /// Served when the request gives 0.
    pub default: u64,
    /// Served when the request asks for more.
    pub max: u64,
}

/// Most listings' sizes.
pub const STANDARD_PAGES: PageSizes = PageSizes {
    default: DEFAULT_PAGE_SIZE,
    max: MAX_PAGE_SIZE,
};

/// ListEvents' sizes: a follower catching up reads long pages.
pub const EVENT_PAGES: PageSizes = PageSizes {
    default: 100,
    max: 1000,
};

/// One validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items the page holds at most.
    pub size: u64,
    /// The sort key of the last item of the previous page; `None` for the first page.
    pub after: Option<Vec<String>>,
}

impl PageRequest {
    /// The first part of `after`, for lists sorted by a single key.
    pub(crate) fn after_key(&self) -> Option<&str> {
        self.after
            .as_ref()
            .and_then(|k| k.first())
            .map(String::as_str)
    }
}

/// What a page token holds. Keyset (not offset) so that pages stay stable and cheap while
/// rows are inserted.
#[derive(Serialize, Deserialize)]
struct Token {
    /// The sort key of the previous page's last item.
    k: Vec<String>,
    /// The list (RPC and filters) the token was made for.
    f: String,
}

/// Parses `page_size` and `page_token` for the list described by `filter` (the RPC's name
/// and its filter fields in a fixed form), recording bad fields in `v`.
pub(crate) fn parse(
    page_size: i32,
    page_token: &str,
    filter: &str,
    v: &mut Violations,
) -> Option<PageRequest> {
    parse_sized(STANDARD_PAGES, page_size, page_token, filter, v)
}

/// `parse` for a listing with its own page sizes.
pub(crate) fn parse_sized(
    sizes: PageSizes,
    page_size: i32,
    page_token: &str,
    filter: &str,
    v: &mut Violations,
) -> Option<PageRequest> {
    let size = match page_size {
        n if n < 0 => {
            v.add("page_size", "must not be negative");
            None
        }
        0 => Some(sizes.default),
        n => Some((n as u64).min(sizes.max)),
    };
    let after = if page_token.is_empty() {
        Some(None)
    } else {
        match decode(page_token) {
            Some(t) if t.f == filter => Some(Some(t.k)),
            Some(_) => {
                v.add(
                    "page_token",
                    "was made for other filter values; send the same filters as the first page",
                );
                None
            }
            None => {
                v.add("page_token", "is malformed");
                None
            }
        }
    };
    Some(PageRequest {
        size: size?,
        after: after?,
    })
}

fn decode(token: &str) -> Option<Token> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let t: Token = serde_json::from_slice(&bytes).ok()?;
    // Keys go into queries: a forged one must still be a plausible key.
    t.k.iter()
        .all(|k| k.len() <= 1024 && !k.contains('\0'))
        .then_some(t)
}

/// The token that continues the list after the item whose sort key is `last_key`.
pub fn next_token(last_key: Vec<String>, filter: &str) -> String {
    let token = Token {
        k: last_key,
        f: filter.to_owned(),
    };
    // Serializing strings to JSON cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Token for the next page; empty on the last.
    pub next_page_token: String,
    /// Matches over all pages.
    pub total_size: u64,
}

/// Makes the page out of a fetched batch of up to `size + 1` items (the extra one only tells
/// that another page follows) and the listing's `total_size`.
pub(crate) fn finish<T>(
    mut items: Vec<T>,
    size: u64,
    filter: &str,
    total_size: u64,
    key: impl Fn(&T) -> Vec<String>,
) -> Page<T> {
    let more = items.len() as u64 > size;
    items.truncate(size as usize);
    let next_page_token = match items.last() {
        Some(last) if more => next_token(key(last), filter),
        _ => String::new(),
    };
    Page {
        items,
        next_page_token,
        total_size,
    }
}

/// `finish` for items of very different sizes: the page also ends before the items' `weight`
/// passes `budget` (it always holds one), with a token for the rest.
pub(crate) fn finish_within<T>(
    mut items: Vec<T>,
    size: u64,
    budget: usize,
    weight: impl Fn(&T) -> usize,
    filter: &str,
    key: impl Fn(&T) -> Vec<String>,
) -> Page<T> {
    let mut total = 0;
    let fits = items
        .iter()
        .take(size as usize)
        .position(|item| {
            total += weight(item);
            total > budget
        })
        .map_or(size as usize, |i| i.max(1));
    if fits < items.len().min(size as usize) {
        // Cut short: keep one more, so that `finish` makes a token for what follows.
        items.truncate(fits + 1);
        return finish(items, fits as u64, filter, 0, key);
    }
    finish(items, size, filter, 0, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_clamp_and_reject_negatives() {
        let mut v = Violations::default();
        assert_eq!(parse(0, "", "f", &mut v).unwrap().size, 50);
        assert_eq!(parse(7, "", "f", &mut v).unwrap().size, 7);
        assert_eq!(parse(1000, "", "f", &mut v).unwrap().size, 100);
        assert!(v.finish().is_ok());
        let mut v = Violations::default();
        assert!(parse(-1, "", "f", &mut v).is_none());
        assert!(v.finish().is_err());
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_filter() {
        let token = next_token(vec!["b".into()], "f");
        let mut v = Violations::default();
        assert_eq!(
            parse(10, &token, "f", &mut v).unwrap().after,
            Some(vec!["b".to_string()])
        );
        assert!(parse(10, &token, "g", &mut v).is_none());
        assert!(parse(10, "not a token!", "f", &mut v).is_none());
        assert!(v.finish().is_err());
    }

    #[test]
    fn a_page_ends_before_its_byte_budget_but_holds_one_item() {
        let page = finish_within(vec![4, 4, 4, 4], 3, 9, |n| *n, "f", |i| vec![i.to_string()]);
        assert_eq!(page.items, vec![4, 4]);
        assert!(!page.next_page_token.is_empty());
        let page = finish_within(vec![20, 1], 5, 9, |n| *n, "f", |i| vec![i.to_string()]);
        assert_eq!(page.items, vec![20]);
        assert!(!page.next_page_token.is_empty());
        let page = finish_within(vec![1, 1], 5, 9, |n| *n, "f", |i| vec![i.to_string()]);
        assert_eq!(page.items, vec![1, 1]);
        assert!(page.next_page_token.is_empty());
    }

    #[test]
    fn finish_cuts_the_extra_item_into_a_token() {
        let page = finish(vec![1, 2, 3], 2, "f", 3, |i| vec![i.to_string()]);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(
            decode(&page.next_page_token).unwrap().k,
            vec!["2".to_string()]
        );
        let page = finish(vec![1, 2], 2, "f", 2, |i| vec![i.to_string()]);
        assert_eq!(page.items.len(), 2);
        assert!(page.next_page_token.is_empty());
    }
}
