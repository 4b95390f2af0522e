//! An error with the chain of its sources, as one line for logs and
//! startup errors: tonic's and hyper's messages alone name none of their
//! causes ("transport error"), and some repeat their cause in their own
//! message, which is then said once.

/// `error` and its sources, joined by ": "; a source whose message the
/// text already ends with is left out.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::fmt;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn error(messages: &[&'static str]) -> E {
        let mut chain = None;
        for m in messages.iter().rev() {
            chain = Some(E(m, chain.map(Box::new)));
        }
        chain.unwrap()
    }

    #[test]
    fn sources_are_joined_and_repeats_said_once() {
        for (messages, want) in [
            (&["transport error"][..], "transport error"),
            (
                &["transport error", "connect", "Connection refused"][..],
                "transport error: connect: Connection refused",
            ),
            (
                &[
                    "tcp connect error: Connection refused",
                    "Connection refused",
                ][..],
                "tcp connect error: Connection refused",
            ),
            (&["a", "a", "b"][..], "a: b"),
        ] {
            assert_eq!(super::chain(&error(messages)), want, "{messages:?}");
        }
    }
}
