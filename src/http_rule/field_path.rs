//! Dotted field paths (`user.address.city`) resolved against a message type.
//!
//! Resolved once when routes are built, so requests only walk descriptors.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

/// A resolved path of fields, outermost first; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    fields: Vec<FieldDescriptor>,
    dotted: String,
}

/// Why a field path does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    /// No such field.
    #[error("field {field:?} does not exist in {message}")]
    NoSuchField {
        /// The field name that was not found.
        field: String,
        /// Full name of the message searched.
        message: String,
    },
    /// An intermediate field that is not a singular message.
    #[error("field {field:?} is not a singular message, so {path:?} cannot go through it")]
    NotTraversable {
        /// The field that is not a singular message.
        field: String,
        /// The whole field path as written.
        path: String,
    },
    /// An empty path.
    #[error("empty field path")]
    Empty,
}

impl FieldPath {
    /// Resolves `path` (proto field names) against `message`.
    ///
    /// # Errors
    /// A [`FieldPathError`] naming the first field that does not resolve.
    pub fn resolve(message: &MessageDescriptor, path: &str) -> Result<Self, FieldPathError> {
        if path.is_empty() {
            return Err(FieldPathError::Empty);
        }
        let mut fields = Vec::new();
        let mut current = message.clone();
        let parts: Vec<&str> = path.split('.').collect();
        for (i, name) in parts.iter().enumerate() {
            let field =
                current
                    .get_field_by_name(name)
                    .ok_or_else(|| FieldPathError::NoSuchField {
                        field: (*name).to_owned(),
                        message: current.full_name().to_owned(),
                    })?;
            if i + 1 < parts.len() {
                match field.kind() {
                    Kind::Message(m) if !field.is_list() && !field.is_map() => current = m,
                    _ => {
                        return Err(FieldPathError::NotTraversable {
                            field: field.name().to_owned(),
                            path: path.to_owned(),
                        });
                    }
                }
            }
            fields.push(field);
        }
        Ok(Self {
            fields,
            dotted: path.to_owned(),
        })
    }

    /// The fields, outermost first.
    pub fn fields(&self) -> &[FieldDescriptor] {
        &self.fields
    }

    /// The fields before the last one.
    pub fn parents(&self) -> &[FieldDescriptor] {
        &self.fields[..self.fields.len() - 1]
    }

    /// The field the path ends at.
    pub fn leaf(&self) -> &FieldDescriptor {
        // Invariant: `resolve` rejects empty paths.
        &self.fields[self.fields.len() - 1]
    }

    /// Whether `other` equals this path or lies inside it (this path is a prefix of it).
    pub fn contains(&self, other: &[FieldDescriptor]) -> bool {
        other.len() >= self.fields.len() && self.fields.iter().zip(other).all(|(a, b)| a == b)
    }

    /// Proto names joined with dots, as written in the rule.
    pub fn dotted(&self) -> &str {
        &self.dotted
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.dotted)
    }
}
