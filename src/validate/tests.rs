//! Unit tests of the validation rules and their paths.
