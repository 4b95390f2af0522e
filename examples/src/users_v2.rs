//! `shop.user.v2.UserService` (protos/shop/user/v2/user.proto): v2 of the
//! user service, with names split into given and family name and a
//! lifecycle status. Seeded with v1's users (Ada, Grace, Alan; same ids,
//! emails and timestamps), all active; new users get ids from 4 on.
//!
//! The two versions do not share state: a user created or deactivated
//! through one is not seen by the other. `DeactivateUser` has no
//! `google.api.http` annotation; the gateway maps it from its config.

use crate::pagination::Page;
use crate::pb::shop::user::v1;
use crate::pb::shop::user::v2::{
    Address, CreateUserRequest, DeactivateUserRequest, GetUserRequest, ListUsersRequest,
    ListUsersResponse, Role, User, UserStatus, user::Contact, user_service_server::UserService,
};
use crate::{clock, status, users};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tonic::{Request, Response, Status};
use tonic_types::FieldViolation;

/// Longest `DeactivateUserRequest.reason` accepted, in characters.
const MAX_REASON_CHARS: usize = 500;

/// The v2 UserService implementation; clones share one user table.
#[derive(Debug, Clone)]
pub struct UsersV2 {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// Keyed by id, so listing in id order needs no sort.
    users: BTreeMap<i64, User>,
    next_id: i64,
}

impl State {
    fn find_mut(&mut self, id: i64) -> Result<&mut User, Status> {
        self.users.get_mut(&id).ok_or_else(|| users::not_found(id))
    }

    /// Emails are compared case-insensitively, as in v1.
    fn email_taken(&self, email: &str) -> bool {
        self.users
            .values()
            .any(|u| u.email.eq_ignore_ascii_case(email))
    }
}

impl UsersV2 {
    /// A service holding fresh seed data.
    pub fn new() -> Self {
        let users: BTreeMap<i64, User> = seed_users().into_iter().map(|u| (u.id, u)).collect();
        let next_id = users.keys().max().map_or(1, |id| id + 1);
        UsersV2 {
            state: Arc::new(Mutex::new(State { users, next_id })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }
}

impl Default for UsersV2 {
    fn default() -> Self {
        Self::new()
    }
}

#[tonic::async_trait]
impl UserService for UsersV2 {
    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let id = request.into_inner().id;
        let state = self.state();
        let user = state.users.get(&id).ok_or_else(|| users::not_found(id))?;
        Ok(Response::new(user.clone()))
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
            .filter(|u| req.status == UserStatus::Unspecified as i32 || u.status == req.status)
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
        if state.email_taken(&user.email) {
            return Err(users::duplicate_email(&user.email));
        }
        let now = clock::now();
        user.id = state.next_id;
        // Output-only fields: whatever the client sent is replaced.
        user.status = UserStatus::Active.into();
        user.status_reason = String::new();
        user.create_time = Some(now);
        user.update_time = Some(now);
        state.next_id += 1;
        state.users.insert(user.id, user.clone());
        tracing::info!(id = user.id, "created user");
        Ok(Response::new(user))
    }

    async fn deactivate_user(
        &self,
        request: Request<DeactivateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let req = request.into_inner();
        let id = parse_id(&req.id)?;
        if req.reason.chars().count() > MAX_REASON_CHARS {
            return Err(status::invalid_field(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            ));
        }

        let mut state = self.state();
        let user = state.find_mut(id)?;
        // Already deactivated: a retry, answered like the first call.
        if user.status() != UserStatus::Deactivated {
            user.status = UserStatus::Deactivated.into();
            user.status_reason = req.reason;
            user.update_time = Some(clock::now());
            // The reason is free text from a request body: not logged.
            tracing::info!(id, "deactivated user");
        }
        Ok(Response::new(user.clone()))
    }
}

/// Checks the fields a client may set; violations name the field as it
/// appears in CreateUserRequest.
fn validate(user: &User) -> Result<(), Status> {
    let mut violations: Vec<FieldViolation> =
        users::email_violation(&user.email).into_iter().collect();
    if user.given_name.trim().is_empty() {
        violations.push(FieldViolation::new("user.given_name", "must not be empty"));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(status::invalid_argument("invalid user", violations))
    }
}

/// Reads `DeactivateUserRequest.id`, a user id in decimal. Only plain digits,
/// as for page tokens, so that "+3" or " 3" are rejected rather than guessed.
fn parse_id(id: &str) -> Result<i64, Status> {
    let bad_id = || status::invalid_field("id", "must be a user id in decimal, e.g. \"3\"");
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_id());
    }
    id.parse().map_err(|_| bad_id())
}

/// v1's seed users in v2 form: same ids, emails and timestamps, display
/// names split at the first space into given and family name, all active.
fn seed_users() -> Vec<User> {
    users::seed_users().into_iter().map(from_v1).collect()
}

/// Converts a v1 user to v2. An active user: v1 has no status.
fn from_v1(user: v1::User) -> User {
    let (given_name, family_name) = match user.display_name.split_once(' ') {
        Some((given, family)) => (given.to_owned(), family.to_owned()),
        None => (user.display_name.clone(), String::new()),
    };
    let role = match user.role() {
        v1::Role::Unspecified => Role::Unspecified,
        v1::Role::Customer => Role::Customer,
        v1::Role::Admin => Role::Admin,
    };
    User {
        id: user.id,
        email: user.email,
        given_name,
        family_name,
        role: role.into(),
        status: UserStatus::Active.into(),
        status_reason: String::new(),
        create_time: user.create_time,
        update_time: user.update_time,
        labels: user.labels,
        address: user.address.map(|a| Address {
            street: a.street,
            city: a.city,
            postal_code: a.postal_code,
            country: a.country,
        }),
        contact: user.contact.map(|contact| match contact {
            v1::user::Contact::Phone(phone) => Contact::Phone(phone),
            v1::user::Contact::SlackHandle(handle) => Contact::SlackHandle(handle),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::StatusExt;

    /// The `field` of every BadRequest violation in `status`.
    fn violated_fields(status: &Status) -> Vec<String> {
        status
            .get_details_bad_request()
            .map(|br| br.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default()
    }

    fn new_user(email: &str, given_name: &str, family_name: &str) -> User {
        User {
            email: email.into(),
            given_name: given_name.into(),
            family_name: family_name.into(),
            ..User::default()
        }
    }

    async fn deactivate(users: &UsersV2, id: &str, reason: &str) -> Result<User, Status> {
        users
            .deactivate_user(Request::new(DeactivateUserRequest {
                id: id.into(),
                reason: reason.into(),
            }))
            .await
            .map(Response::into_inner)
    }

    #[test]
    fn seed_users_match_v1_with_split_names() {
        let v1 = users::seed_users();
        let v2 = seed_users();
        assert_eq!(v1.len(), v2.len());
        for (old, new) in v1.iter().zip(&v2) {
            assert_eq!(
                (
                    old.id,
                    &old.email,
                    old.role,
                    &old.create_time,
                    &old.update_time
                ),
                (
                    new.id,
                    &new.email,
                    new.role,
                    &new.create_time,
                    &new.update_time
                ),
                "user {}",
                old.id
            );
            assert_eq!(
                format!("{} {}", new.given_name, new.family_name),
                old.display_name,
                "user {}",
                old.id
            );
            assert_eq!(new.status(), UserStatus::Active, "user {}", old.id);
        }
        assert_eq!(
            (v2[0].given_name.as_str(), v2[0].family_name.as_str()),
            ("Ada", "Lovelace")
        );
    }

    #[test]
    fn from_v1_keeps_a_single_name_as_given_name() {
        let user = from_v1(v1::User {
            display_name: "Plato".into(),
            ..v1::User::default()
        });
        assert_eq!(
            (user.given_name.as_str(), user.family_name.as_str()),
            ("Plato", "")
        );
    }

    #[tokio::test]
    async fn get_user_returns_seed_user_or_not_found() {
        let users = UsersV2::new();
        let ada = users
            .get_user(Request::new(GetUserRequest { id: 1 }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ada.given_name, "Ada");
        assert_eq!(ada.role(), Role::Admin);
        assert_eq!(ada.contact, Some(Contact::Phone("+44 20 7946 0000".into())));

        let err = users
            .get_user(Request::new(GetUserRequest { id: 42 }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(err.message(), "user 42 not found");
    }

    #[tokio::test]
    async fn list_users_filters_by_role_and_status() {
        let users = UsersV2::new();
        deactivate(&users, "3", "").await.unwrap();
        let ids = |role: Role, status: UserStatus| {
            let users = users.clone();
            async move {
                let resp = users
                    .list_users(Request::new(ListUsersRequest {
                        role: role.into(),
                        status: status.into(),
                        ..ListUsersRequest::default()
                    }))
                    .await
                    .unwrap()
                    .into_inner();
                let ids: Vec<i64> = resp.users.iter().map(|u| u.id).collect();
                assert_eq!(resp.total_size as usize, ids.len());
                ids
            }
        };
        for (role, status, want) in [
            (Role::Unspecified, UserStatus::Unspecified, vec![1, 2, 3]),
            (Role::Customer, UserStatus::Unspecified, vec![2, 3]),
            (Role::Unspecified, UserStatus::Active, vec![1, 2]),
            (Role::Customer, UserStatus::Deactivated, vec![3]),
            (Role::Admin, UserStatus::Suspended, vec![]),
        ] {
            assert_eq!(ids(role, status).await, want, "{role:?} {status:?}");
        }
    }

    #[tokio::test]
    async fn list_users_pages_like_v1() {
        let users = UsersV2::new();
        let first = users
            .list_users(Request::new(ListUsersRequest {
                page_size: 2,
                ..ListUsersRequest::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.users.len(), 2);
        assert_eq!(first.next_page_token, "2");

        let err = users
            .list_users(Request::new(ListUsersRequest {
                page_size: -1,
                ..ListUsersRequest::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&err), ["page_size"]);
    }

    #[tokio::test]
    async fn create_user_assigns_id_status_and_timestamps() {
        let users = UsersV2::new();
        let created = users
            .create_user(Request::new(CreateUserRequest {
                user: Some(User {
                    id: 99,                                 // output only: ignored
                    status: UserStatus::Deactivated.into(), // output only: ignored
                    ..new_user("edsger@example.com", "Edsger", "Dijkstra")
                }),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.id, 4);
        assert_eq!(created.status(), UserStatus::Active);
        assert_eq!(created.family_name, "Dijkstra");
        assert!(created.create_time.is_some());
        assert_eq!(created.create_time, created.update_time);
    }

    #[tokio::test]
    async fn create_user_rejects_invalid_and_duplicate_users() {
        for (user, code, fields) in [
            (
                new_user("no-at-sign", " ", "Smith"),
                Code::InvalidArgument,
                vec!["user.email", "user.given_name"],
            ),
            (new_user("plato@example.com", "Plato", ""), Code::Ok, vec![]),
            (
                new_user("GRACE@example.com", "Imposter", ""),
                Code::AlreadyExists,
                vec![],
            ),
        ] {
            let email = user.email.clone();
            let got = UsersV2::new()
                .create_user(Request::new(CreateUserRequest { user: Some(user) }))
                .await;
            let err = got.err().unwrap_or_else(|| Status::ok(""));
            assert_eq!(err.code(), code, "{email}");
            assert_eq!(violated_fields(&err), fields, "{email}");
        }
    }

    #[tokio::test]
    async fn deactivate_user_sets_status_once() {
        let users = UsersV2::new();
        let grace = deactivate(&users, "2", "asked to close the account")
            .await
            .unwrap();
        assert_eq!(grace.status(), UserStatus::Deactivated);
        assert_eq!(grace.status_reason, "asked to close the account");
        assert!(clock::is_after(
            grace.update_time.as_ref().unwrap(),
            grace.create_time.as_ref().unwrap()
        ));

        // A retry succeeds and changes nothing, not even the reason.
        let again = deactivate(&users, "2", "another reason").await.unwrap();
        assert_eq!(again, grace);
        let fetched = users
            .get_user(Request::new(GetUserRequest { id: 2 }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fetched, grace);
    }

    #[tokio::test]
    async fn deactivate_user_rejects_bad_ids_and_reasons() {
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        for (id, reason, code, fields) in [
            ("42", "", Code::NotFound, vec![]),
            ("", "", Code::InvalidArgument, vec!["id"]),
            ("abc", "", Code::InvalidArgument, vec!["id"]),
            ("+1", "", Code::InvalidArgument, vec!["id"]),
            (
                "99999999999999999999",
                "",
                Code::InvalidArgument,
                vec!["id"],
            ),
            ("1", long.as_str(), Code::InvalidArgument, vec!["reason"]),
        ] {
            let err = deactivate(&UsersV2::new(), id, reason).await.unwrap_err();
            assert_eq!(err.code(), code, "{id:?}");
            assert_eq!(violated_fields(&err), fields, "{id:?}");
        }
    }
}
