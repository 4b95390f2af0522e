//! Offset pagination shared by ListUsers and ListOrders. A page token is the
//! decimal offset of the page's first item, e.g. "10"; the services do not
//! try to keep pages stable across concurrent writes.

use crate::status;
use tonic::Status;

/// Page size used when the request leaves it at 0.
const DEFAULT_PAGE_SIZE: usize = 10;
/// Larger page sizes are lowered to this, as AIP-158 suggests.
const MAX_PAGE_SIZE: usize = 100;

/// A validated page request: which slice of the sorted results to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    offset: usize,
    size: usize,
}

impl Page {
    /// Reads a requested page size and token. `size_field` and `token_field`
    /// name the request fields in error details.
    ///
    /// Errors: INVALID_ARGUMENT for a negative size or a token that is not a
    /// decimal offset.
    pub(crate) fn parse(
        size: i32,
        token: &str,
        size_field: &str,
        token_field: &str,
    ) -> Result<Self, Status> {
        let size = match usize::try_from(size) {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(size) => size.min(MAX_PAGE_SIZE),
            Err(_) => return Err(status::invalid_field(size_field, "must not be negative")),
        };
        let bad_token = || {
            status::invalid_field(
                token_field,
                "must be a next_page_token returned by a previous call",
            )
        };
        let offset = match token {
            "" => 0,
            // Only plain digits, so that "+5" or " 5" are not silently accepted.
            digits if digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse().map_err(|_| bad_token())?
            }
            _ => return Err(bad_token()),
        };
        Ok(Page { offset, size })
    }

    /// Cuts this page out of all matching items (already sorted) and returns
    /// it with the token of the next page, empty if this page is the last.
    pub(crate) fn apply<T>(&self, items: Vec<T>) -> (Vec<T>, String) {
        let total = items.len();
        let page: Vec<T> = items
            .into_iter()
            .skip(self.offset)
            .take(self.size)
            .collect();
        let end = self.offset.saturating_add(self.size);
        let next_token = if end < total {
            end.to_string()
        } else {
            String::new()
        };
        (page, next_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_applies_defaults_and_limits() {
        for (size, token, want) in [
            (
                0,
                "",
                Page {
                    offset: 0,
                    size: 10,
                },
            ),
            (3, "", Page { offset: 0, size: 3 }),
            (
                1000,
                "20",
                Page {
                    offset: 20,
                    size: 100,
                },
            ),
        ] {
            let got = Page::parse(size, token, "page_size", "page_token").unwrap();
            assert_eq!(got, want, "size {size}, token {token:?}");
        }
    }

    #[test]
    fn parse_rejects_bad_input() {
        for (size, token, field) in [
            (-1, "", "page_size"),
            (10, "abc", "page_token"),
            (10, "-3", "page_token"),
            (10, "+3", "page_token"),
        ] {
            let err = Page::parse(size, token, "page_size", "page_token").unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{size} {token:?}");
            assert!(err.message().contains(field), "{size} {token:?}: {err:?}");
        }
    }

    #[test]
    fn apply_returns_next_token_until_last_page() {
        let page = Page { offset: 0, size: 2 };
        assert_eq!(page.apply(vec![1, 2, 3]), (vec![1, 2], "2".to_string()));
        let page = Page { offset: 2, size: 2 };
        assert_eq!(page.apply(vec![1, 2, 3]), (vec![3], String::new()));
        let page = Page { offset: 9, size: 2 };
        assert_eq!(page.apply(vec![1, 2, 3]), (vec![], String::new()));
    }
}
