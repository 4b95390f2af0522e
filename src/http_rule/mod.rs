//! `google.api.http` rules: templates, the rule itself (annotated or from
//! config), API groups, and the route table built from them.

pub mod api;
pub mod field_path;
pub mod route_table;
pub mod rule;
pub mod template;

pub use field_path::FieldPath;
pub use route_table::{
    BodyRule, LookupError, MethodMatch, ProblemKind, Route, RouteBackend, RouteError, RouteMatch,
    RoutePayload, RouteProblem, RouteTable,
};
pub use template::PathTemplate;
