//! `shop.user.v1.UserService` (protos/shop/user/v1/user.proto): an
//! in-memory user table seeded with Ada (id 1, admin), Grace (id 2) and Alan
//! (id 3); new users get ids from 4 on.

use crate::pagination::Page;
use crate::pb::shop::user::v1::{
    Address, CreateUserRequest, DeleteUserRequest, GetUserRequest, ListUsersRequest,
    ListUsersResponse, Role, UpdateUserRequest, User, user::Contact,
    user_service_server::UserService,
};
use crate::{clock, status};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tonic::{Request, Response, Status};
use tonic_types::FieldViolation;

/// `update_mask` paths UpdateUser understands.
const UPDATABLE_PATHS: &[&str] = &[
    "email",
    "display_name",
    "role",
    "labels",
    "address",
    "phone",
    "slack_handle",
];

/// The UserService implementation; clones share one user table.
#[derive(Debug, Clone)]
pub struct Users {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// Keyed by id, so listing in id order needs no sort.
    users: BTreeMap<i64, User>,
    next_id: i64,
}

impl State {
    fn find(&self, id: i64) -> Result<&User, Status> {
        self.users.get(&id).ok_or_else(|| not_found(id))
    }

    /// Emails are compared case-insensitively; `except` is the user being
    /// updated, who may keep their own address.
    fn email_taken(&self, email: &str, except: Option<i64>) -> bool {
        self.users
            .values()
            .any(|u| Some(u.id) != except && u.email.eq_ignore_ascii_case(email))
    }
}

impl Users {
    /// A service holding fresh seed data.
    pub fn new() -> Self {
        let users: BTreeMap<i64, User> = seed_users().into_iter().map(|u| (u.id, u)).collect();
        let next_id = users.keys().max().map_or(1, |id| id + 1);
        Users {
            state: Arc::new(Mutex::new(State { users, next_id })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }
}

impl Default for Users {
    fn default() -> Self {
        Self::new()
    }
}

#[tonic::async_trait]
impl UserService for Users {
    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let id = request.into_inner().id;
        let user = self.state().find(id)?.clone();
        Ok(Response::new(user))
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let req = request.into_inner();
        let page = Page::parse(req.page_size, &req.page_token, "page_size", "page_token")?;
        let state = self.state();
        let matching: Vec<&User> = state
            .users
            .values()
            .filter(|u| req.role == Role::Unspecified as i32 || u.role == req.role)
            .collect();
        let total_size = i32::try_from(matching.len()).unwrap_or(i32::MAX);
        let (users, next_page_token) = page.apply(matching);
        Ok(Response::new(ListUsersResponse {
            users: users.into_iter().cloned().collect(),
            next_page_token,
            total_size,
        }))
    }

    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let Some(mut user) = request.into_inner().user else {
            return Err(status::invalid_field("user", "is required"));
        };
        validate(&user)?;

        let mut state = self.state();
        if state.email_taken(&user.email, None) {
            return Err(duplicate_email(&user.email));
        }
        let now = clock::now();
        user.id = state.next_id;
        user.create_time = Some(now);
        user.update_time = Some(now);
        state.next_id += 1;
        state.users.insert(user.id, user.clone());
        tracing::info!(id = user.id, "created user");
        Ok(Response::new(user))
    }

    async fn update_user(
        &self,
        request: Request<UpdateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let req = request.into_inner();
        let Some(patch) = req.user else {
            return Err(status::invalid_field("user", "is required"));
        };
        let paths = req.update_mask.map(|mask| mask.paths).unwrap_or_default();
        check_update_mask(&paths)?;

        let mut state = self.state();
        let mut user = state.find(patch.id)?.clone();
        for path in &paths {
            apply_path(&mut user, &patch, path);
        }
        validate(&user)?;
        if state.email_taken(&user.email, Some(user.id)) {
            return Err(duplicate_email(&user.email));
        }
        user.update_time = Some(clock::now());
        state.users.insert(user.id, user.clone());
        tracing::info!(id = user.id, ?paths, "updated user");
        Ok(Response::new(user))
    }

    async fn delete_user(
        &self,
        request: Request<DeleteUserRequest>,
    ) -> Result<Response<()>, Status> {
        let id = request.into_inner().id;
        match self.state().users.remove(&id) {
            Some(_) => {
                tracing::info!(id, "deleted user");
                Ok(Response::new(()))
            }
            None => Err(not_found(id)),
        }
    }
}

/// Checks the fields a client may set; violations name the field as it
/// appears in Create/UpdateUserRequest.
fn validate(user: &User) -> Result<(), Status> {
    let mut violations: Vec<FieldViolation> = email_violation(&user.email).into_iter().collect();
    if user.display_name.trim().is_empty() {
        violations.push(FieldViolation::new(
            "user.display_name",
            "must not be empty",
        ));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(status::invalid_argument("invalid user", violations))
    }
}

/// NOT_FOUND for a user id. Shared with v2 of the service, as are the other
/// `pub(crate)` checks here, so both versions answer alike.
pub(crate) fn not_found(id: i64) -> Status {
    Status::not_found(format!("user {id} not found"))
}

/// ALREADY_EXISTS for an email that another user has.
pub(crate) fn duplicate_email(email: &str) -> Status {
    Status::already_exists(format!("a user with email {email} already exists"))
}

/// The violation of `user.email`, if `email` is not an email address. The
/// check is deliberately loose: the shop would confirm addresses by mail.
pub(crate) fn email_violation(email: &str) -> Option<FieldViolation> {
    (!email.contains('@'))
        .then(|| FieldViolation::new("user.email", "must be an email address containing '@'"))
}

/// An empty mask is rejected rather than read as "every field": a PATCH that
/// silently clears unset fields is a classic way to lose data.
fn check_update_mask(paths: &[String]) -> Result<(), Status> {
    if paths.is_empty() {
        return Err(status::invalid_field(
            "update_mask",
            "must name at least one field to update",
        ));
    }
    let violations: Vec<FieldViolation> = paths
        .iter()
        .filter(|path| !UPDATABLE_PATHS.contains(&path.as_str()))
        .map(|path| {
            FieldViolation::new(
                "update_mask",
                format!(
                    "unsupported path {path:?}; supported: {}",
                    UPDATABLE_PATHS.join(", ")
                ),
            )
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(status::invalid_argument("invalid update_mask", violations))
    }
}

/// Copies one masked field from `patch` into `user`. `phone` and
/// `slack_handle` share the `contact` oneof: naming one that `patch` does
/// not set clears it, and setting one replaces the other.
fn apply_path(user: &mut User, patch: &User, path: &str) {
    match path {
        "email" => user.email.clone_from(&patch.email),
        "display_name" => user.display_name.clone_from(&patch.display_name),
        "role" => user.role = patch.role,
        "labels" => user.labels.clone_from(&patch.labels),
        "address" => user.address.clone_from(&patch.address),
        "phone" => match &patch.contact {
            Some(Contact::Phone(phone)) => user.contact = Some(Contact::Phone(phone.clone())),
            _ if matches!(user.contact, Some(Contact::Phone(_))) => user.contact = None,
            _ => {}
        },
        "slack_handle" => match &patch.contact {
            Some(Contact::SlackHandle(handle)) => {
                user.contact = Some(Contact::SlackHandle(handle.clone()));
            }
            _ if matches!(user.contact, Some(Contact::SlackHandle(_))) => user.contact = None,
            _ => {}
        },
        // check_update_mask has rejected every other path.
        _ => {}
    }
}

/// The seed users; their ids are also the only parents OrderService knows,
/// and v2 of the service starts from the same users.
pub(crate) fn seed_users() -> Vec<User> {
    vec![
        User {
            id: 1,
            email: "ada@example.com".into(),
            display_name: "Ada Lovelace".into(),
            role: Role::Admin.into(),
            create_time: Some(clock::at("2026-01-15T09:30:00Z")),
            update_time: Some(clock::at("2026-01-15T09:30:00Z")),
            labels: HashMap::from([("tier".into(), "gold".into())]),
            address: Some(Address {
                street: "12 St James's Square".into(),
                city: "London".into(),
                postal_code: "SW1Y 4JH".into(),
                country: "GB".into(),
            }),
            contact: Some(Contact::Phone("+44 20 7946 0000".into())),
        },
        User {
            id: 2,
            email: "grace@example.com".into(),
            display_name: "Grace Hopper".into(),
            role: Role::Customer.into(),
            create_time: Some(clock::at("2026-01-16T14:00:00Z")),
            update_time: Some(clock::at("2026-01-16T14:00:00Z")),
            labels: HashMap::new(),
            address: None,
            contact: Some(Contact::SlackHandle("@grace".into())),
        },
        User {
            id: 3,
            email: "alan@example.com".into(),
            display_name: "Alan Turing".into(),
            role: Role::Customer.into(),
            create_time: Some(clock::at("2026-01-17T08:15:00Z")),
            update_time: Some(clock::at("2026-01-17T08:15:00Z")),
            labels: HashMap::new(),
            address: None,
            contact: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::FieldMask;
    use tonic::Code;
    use tonic_types::StatusExt;

    /// The `field` of every BadRequest violation in `status`.
    fn violated_fields(status: &Status) -> Vec<String> {
        status
            .get_details_bad_request()
            .map(|br| br.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default()
    }

    fn new_user(email: &str, display_name: &str) -> User {
        User {
            email: email.into(),
            display_name: display_name.into(),
            ..User::default()
        }
    }

    async fn update(users: &Users, user: User, paths: &[&str]) -> Result<User, Status> {
        let request = UpdateUserRequest {
            user: Some(user),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        };
        users
            .update_user(Request::new(request))
            .await
            .map(Response::into_inner)
    }

    #[tokio::test]
    async fn get_user_returns_seed_user_or_not_found() {
        let users = Users::new();
        let ada = users
            .get_user(Request::new(GetUserRequest { id: 1 }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ada.email, "ada@example.com");
        assert_eq!(ada.role(), Role::Admin);
        assert_eq!(ada.labels["tier"], "gold");

        let err = users
            .get_user(Request::new(GetUserRequest { id: 42 }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(err.message(), "user 42 not found");
    }

    #[tokio::test]
    async fn list_users_pages_through_users_in_id_order() {
        let users = Users::new();
        let list = |page_size, page_token: &str, role: Role| {
            users.list_users(Request::new(ListUsersRequest {
                page_size,
                page_token: page_token.into(),
                role: role.into(),
            }))
        };
        let ids = |resp: &ListUsersResponse| resp.users.iter().map(|u| u.id).collect::<Vec<_>>();

        let first = list(2, "", Role::Unspecified).await.unwrap().into_inner();
        assert_eq!(ids(&first), [1, 2]);
        assert_eq!(first.next_page_token, "2");
        assert_eq!(first.total_size, 3);

        let second = list(2, &first.next_page_token, Role::Unspecified)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ids(&second), [3]);
        assert_eq!(second.next_page_token, "");

        let customers = list(0, "", Role::Customer).await.unwrap().into_inner();
        assert_eq!(ids(&customers), [2, 3]);
        assert_eq!(customers.total_size, 2);

        let err = list(0, "not-a-token", Role::Unspecified).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&err), ["page_token"]);
    }

    #[tokio::test]
    async fn create_user_assigns_next_id_and_timestamps() {
        let users = Users::new();
        let created = users
            .create_user(Request::new(CreateUserRequest {
                user: Some(User {
                    id: 99, // output only: ignored
                    ..new_user("edsger@example.com", "Edsger Dijkstra")
                }),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.id, 4);
        assert!(created.create_time.is_some());
        assert_eq!(created.create_time, created.update_time);

        let fetched = users
            .get_user(Request::new(GetUserRequest { id: 4 }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fetched, created);
    }

    #[tokio::test]
    async fn create_user_rejects_invalid_and_duplicate_users() {
        for (user, code, fields) in [
            (
                new_user("no-at-sign", ""),
                Code::InvalidArgument,
                vec!["user.email", "user.display_name"],
            ),
            (
                new_user("x@example.com", " "),
                Code::InvalidArgument,
                vec!["user.display_name"],
            ),
            (
                new_user("GRACE@example.com", "Imposter"),
                Code::AlreadyExists,
                vec![],
            ),
        ] {
            let email = user.email.clone();
            let err = Users::new()
                .create_user(Request::new(CreateUserRequest { user: Some(user) }))
                .await
                .unwrap_err();
            assert_eq!(err.code(), code, "{email}");
            assert_eq!(violated_fields(&err), fields, "{email}");
        }
    }

    #[tokio::test]
    async fn update_user_applies_only_masked_fields() {
        let users = Users::new();
        let patch = User {
            id: 2,
            email: "ignored@example.com".into(),
            display_name: "Rear Admiral Hopper".into(),
            ..User::default()
        };
        let updated = update(&users, patch, &["display_name"]).await.unwrap();
        assert_eq!(updated.display_name, "Rear Admiral Hopper");
        assert_eq!(updated.email, "grace@example.com");
        assert_eq!(updated.contact, Some(Contact::SlackHandle("@grace".into())));
        assert!(clock::is_after(
            updated.update_time.as_ref().unwrap(),
            updated.create_time.as_ref().unwrap()
        ));
    }

    #[tokio::test]
    async fn update_user_switches_the_contact_oneof() {
        let users = Users::new();
        let patch = User {
            id: 1,
            contact: Some(Contact::SlackHandle("@ada".into())),
            ..User::default()
        };
        let updated = update(&users, patch, &["slack_handle"]).await.unwrap();
        assert_eq!(updated.contact, Some(Contact::SlackHandle("@ada".into())));

        // Naming a oneof member that the patch leaves unset clears it.
        let cleared = update(
            &users,
            User {
                id: 1,
                ..User::default()
            },
            &["slack_handle"],
        )
        .await
        .unwrap();
        assert_eq!(cleared.contact, None);
    }

    #[tokio::test]
    async fn update_user_rejects_bad_masks_and_missing_users() {
        for (id, paths, code, fields) in [
            (1, vec![], Code::InvalidArgument, vec!["update_mask"]),
            (
                1,
                vec!["id", "email"],
                Code::InvalidArgument,
                vec!["update_mask"],
            ),
            (1, vec!["email"], Code::InvalidArgument, vec!["user.email"]),
            (42, vec!["role"], Code::NotFound, vec![]),
        ] {
            let patch = User {
                id,
                email: "invalid".into(),
                ..User::default()
            };
            let err = update(&Users::new(), patch, &paths).await.unwrap_err();
            assert_eq!(err.code(), code, "{id} {paths:?}");
            assert_eq!(violated_fields(&err), fields, "{id} {paths:?}");
        }
    }

    #[tokio::test]
    async fn delete_user_removes_the_user_once() {
        let users = Users::new();
        users
            .delete_user(Request::new(DeleteUserRequest { id: 3 }))
            .await
            .unwrap();
        let err = users
            .delete_user(Request::new(DeleteUserRequest { id: 3 }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(err.message(), "user 3 not found");
    }
}
