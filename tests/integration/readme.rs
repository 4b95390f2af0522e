//! The README's curl examples.
