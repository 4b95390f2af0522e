//! Proto comments by descriptor, from the files' `source_code_info`.
//!
//! Indexed once when the document is built; descriptors without source info
//! (e.g. from a descriptor set built without it) simply have no comments.

use std::collections::HashMap;

use prost_reflect::DescriptorPool;

/// Leading comments keyed by file name and descriptor path.
#[derive(Debug, Default)]
pub struct Comments {
    leading: HashMap<(String, Vec<i32>), String>,
}

impl Comments {
    /// Indexes every file in the pool.
    pub fn index(pool: &DescriptorPool) -> Self {
        let mut leading = HashMap::new();
        for file in pool.files() {
            let Some(info) = &file.file_descriptor_proto().source_code_info else {
                continue;
            };
            for location in &info.location {
                if let Some(text) = location.leading_comments.as_deref().map(clean)
                    && !text.is_empty()
                {
                    leading.insert((file.name().to_owned(), location.path.clone()), text);
                }
            }
        }
        Self { leading }
    }

    /// The leading comment of the descriptor at `path` in `file`.
    pub fn get(&self, file: &str, path: &[i32]) -> Option<&str> {
        self.leading
            .get(&(file.to_owned(), path.to_vec()))
            .map(String::as_str)
    }
}

/// Strips the one space after `//` on every line and surrounding blank lines.
fn clean(raw: &str) -> String {
    raw.lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// Splits a comment into a summary (its first paragraph, on one line) and the rest.
pub fn summary_and_description(comment: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(comment) = comment else {
        return (None, None);
    };
    let (first, rest) = comment.split_once("\n\n").unwrap_or((comment, ""));
    let summary = first.split_whitespace().collect::<Vec<_>>().join(" ");
    let rest = rest.trim();
    (Some(summary), (!rest.is_empty()).then(|| rest.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_and_splits_comments() {
        assert_eq!(
            clean(" Gets a user.\n Second line.\n"),
            "Gets a user.\nSecond line."
        );
        for (comment, summary, description) in [
            (Some("Gets a user."), Some("Gets a user."), None),
            (
                Some("Gets a user\nby id.\n\nErrors: NOT_FOUND."),
                Some("Gets a user by id."),
                Some("Errors: NOT_FOUND."),
            ),
            (None, None, None),
        ] {
            let (s, d) = summary_and_description(comment);
            assert_eq!(
                (s.as_deref(), d.as_deref()),
                (summary, description),
                "{comment:?}"
            );
        }
    }
}
