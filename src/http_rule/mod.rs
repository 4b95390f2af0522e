//! `google.api.http` rules: templates, the rule itself, and the route table built from them.

pub mod field_path;
pub mod route_table;
pub mod rule;
pub mod template;

pub use field_path::FieldPath;
pub use route_table::{
    BodyRule, LookupError, MethodMatch, Route, RouteError, RouteMatch, RouteTable,
};
pub use template::PathTemplate;
