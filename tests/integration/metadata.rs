//! Header and metadata forwarding.
