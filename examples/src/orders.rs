//! `shop.order.v1.OrderService` (protos/shop/order/v1/order.proto): an
//! in-memory order book seeded with three orders, "users/1/orders/1001"
//! (paid), "users/1/orders/1002" (pending) and "users/2/orders/1003"
//! (shipped); new orders are numbered from 1004 on.
//!
//! Orders may only be placed for the seed users (ids 1 to 3): the service
//! knows them statically instead of asking UserService, so users created at
//! run time cannot order.
//!
//! Besides the unary methods it streams: WatchOrder follows one order's
//! status (`watch.rs`; every status change is broadcast to the watchers),
//! SyncOrderStatus applies a stream of status updates, ExportOrders sends a
//! CSV in chunks (`csv.rs`, which also writes GetInvoice's CSV) and
//! UploadAttachment receives a file in chunks, keeping only its metadata
//! (`attachment.rs`).

mod attachment;
mod csv;
mod watch;

use self::attachment::Upload;
use self::watch::{CHANGES_CAPACITY, WatchCounts};
use crate::pagination::Page;
use crate::pb::google::api::HttpBody;
use crate::pb::shop::order::v1::{
    Attachment, CancelOrderRequest, Card, CreateOrderRequest, ExportOrdersRequest,
    GetInvoiceRequest, GetOrderRequest, LineItem, ListOrdersRequest, ListOrdersResponse, Money,
    Order, OrderStatus, OrderStatusAck, OrderStatusChange, OrderStatusUpdate,
    UploadAttachmentRequest, WatchOrderRequest, order::Payment, order_service_server::OrderService,
};
use crate::{clock, status, users};
use futures_util::Stream;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, watch as signal};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};
use tonic_types::{FieldViolation, PreconditionViolation};

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// The OrderService implementation; clones share one order book and one
/// count of watch streams.
#[derive(Debug, Clone)]
pub struct Orders {
    state: Arc<Mutex<State>>,
    watches: Arc<WatchCounts>,
    /// Ends the watch streams when it changes or its sender is dropped;
    /// None: they end only with their order.
    stop: Option<signal::Receiver<()>>,
}

#[derive(Debug)]
struct State {
    /// Keyed by name, so listing in name order needs no sort.
    orders: BTreeMap<String, Order>,
    next_id: i64,
    /// Users that may place orders: the seed users of UserService.
    users: BTreeSet<i64>,
    /// The latest status change of every order, sent first by WatchOrder.
    latest_changes: HashMap<String, OrderStatusChange>,
    /// Every status change, to all watchers. Sent while the state is
    /// locked, and watchers subscribe while it is locked, so a watcher sees
    /// each change after the one it starts from exactly once.
    changes: broadcast::Sender<OrderStatusChange>,
    /// Metadata of the attachments of each order, in upload order.
    attachments: HashMap<String, Vec<Attachment>>,
}

impl State {
    fn check_user(&self, user_id: i64) -> Result<(), Status> {
        if self.users.contains(&user_id) {
            Ok(())
        } else {
            Err(Status::not_found(format!("user {user_id} not found")))
        }
    }

    fn find(&self, name: &str) -> Result<&Order, Status> {
        check_order_name(name)?;
        self.orders
            .get(name)
            .ok_or_else(|| Status::not_found(format!("order {name} not found")))
    }

    /// The latest status change of order `name`.
    fn latest_change(&self, name: &str) -> Result<OrderStatusChange, Status> {
        let order = self.find(name)?;
        Ok(self
            .latest_changes
            .get(name)
            .cloned()
            .unwrap_or_else(|| first_change(order)))
    }

    /// Moves order `name` to `status` and tells the watchers; for
    /// CANCELLED, `reason` becomes the cancel reason. The caller has checked
    /// that the order exists and may change so.
    fn set_status(&mut self, name: &str, status: OrderStatus, reason: &str) {
        let Some(order) = self.orders.get_mut(name) else {
            return;
        };
        order.set_status(status);
        if status == OrderStatus::Cancelled {
            order.cancel_reason = reason.to_string();
        }
        let change = OrderStatusChange {
            name: name.to_string(),
            status: status.into(),
            change_time: Some(clock::now()),
            reason: reason.to_string(),
        };
        self.latest_changes.insert(name.to_string(), change.clone());
        // Err only means that nobody is watching.
        let _ = self.changes.send(change);
    }

    /// Applies one SyncOrderStatus update.
    fn apply(&mut self, update: OrderStatusUpdate) -> OrderStatusAck {
        let to = update.status();
        let Some(from) = self.orders.get(&update.name).map(Order::status) else {
            return OrderStatusAck {
                name: update.name,
                status: OrderStatus::Unspecified.into(),
                accepted: false,
                reason: "no such order".into(),
            };
        };
        if !may_change(from, to) {
            return OrderStatusAck {
                name: update.name,
                status: from.into(),
                accepted: false,
                reason: format!(
                    "cannot change from {} to {}",
                    from.as_str_name(),
                    to.as_str_name()
                ),
            };
        }
        self.set_status(&update.name, to, &update.reason);
        tracing::info!(name = %update.name, status = to.as_str_name(), "synced order status");
        OrderStatusAck {
            name: update.name,
            status: to.into(),
            accepted: true,
            reason: String::new(),
        }
    }

    /// Stores the metadata of a complete upload to order `name`.
    fn attach(&mut self, name: &str, upload: Upload) -> Result<Attachment, Status> {
        self.find(name)?;
        let attachments = self.attachments.entry(name.to_string()).or_default();
        let attachment = upload.finish(format!("{name}/attachments/{}", attachments.len() + 1));
        attachments.push(attachment.clone());
        Ok(attachment)
    }
}

/// The change that put `order` into its status when it was placed.
fn first_change(order: &Order) -> OrderStatusChange {
    OrderStatusChange {
        name: order.name.clone(),
        status: order.status,
        change_time: order.create_time,
        reason: order.cancel_reason.clone(),
    }
}

/// Whether an order may move from status `from` to `to`: PENDING -> PAID ->
/// SHIPPED, and PENDING or PAID -> CANCELLED.
fn may_change(from: OrderStatus, to: OrderStatus) -> bool {
    use OrderStatus::{Cancelled, Paid, Pending, Shipped};
    matches!(
        (from, to),
        (Pending, Paid) | (Paid, Shipped) | (Pending | Paid, Cancelled)
    )
}

/// Whether `status` is final: no change leads out of it.
fn is_terminal(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Cancelled | OrderStatus::Shipped)
}

impl Orders {
    /// A service holding fresh seed data.
    pub fn new() -> Self {
        let orders: BTreeMap<String, Order> = seed_orders()
            .into_iter()
            .map(|o| (o.name.clone(), o))
            .collect();
        let latest_changes = orders
            .iter()
            .map(|(name, order)| (name.clone(), first_change(order)))
            .collect();
        let state = State {
            orders,
            next_id: 1004,
            users: users::seed_users().iter().map(|u| u.id).collect(),
            latest_changes,
            changes: broadcast::Sender::new(CHANGES_CAPACITY),
            attachments: HashMap::new(),
        };
        Orders {
            state: Arc::new(Mutex::new(state)),
            watches: Arc::default(),
            stop: None,
        }
    }

    /// Ends open WatchOrder streams with UNAVAILABLE once `stop` changes or
    /// its sender is dropped, so that a graceful server shutdown need not
    /// wait for orders to reach a terminal status.
    pub(crate) fn with_stop(self, stop: signal::Receiver<()>) -> Self {
        Orders {
            stop: Some(stop),
            ..self
        }
    }

    /// WatchOrder streams now open: started and neither finished nor
    /// dropped.
    pub fn active_watches(&self) -> u64 {
        self.watches.active()
    }

    /// WatchOrder streams that ended because the client went away: the
    /// response stream was dropped before its last message (a terminal
    /// status or an error) was produced.
    pub fn cancelled_watches(&self) -> u64 {
        self.watches.cancelled()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// The latest status change of order `name` and a receiver of the
    /// changes after it, taken under one lock so none falls in between.
    fn subscribe(
        &self,
        name: &str,
    ) -> Result<(OrderStatusChange, broadcast::Receiver<OrderStatusChange>), Status> {
        let state = self.state();
        Ok((state.latest_change(name)?, state.changes.subscribe()))
    }
}

/// A boxed response stream.
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl Default for Orders {
    fn default() -> Self {
        Self::new()
    }
}

#[tonic::async_trait]
impl OrderService for Orders {
    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let req = request.into_inner();
        let user_id = parse_parent(&req.parent)?;
        let Some(input) = req.order else {
            return Err(status::invalid_field("order", "is required"));
        };
        let total = check_items(&input.items)?;

        let mut state = self.state();
        state.check_user(user_id)?;
        let id = state.next_id;
        state.next_id += 1;
        // Output-only fields of the input are ignored, as AIP-203 asks.
        let order = Order {
            name: format!("users/{user_id}/orders/{id}"),
            user_id,
            items: input.items,
            status: OrderStatus::Pending.into(),
            total: Some(total),
            create_time: Some(clock::now()),
            payment: input.payment,
            metadata: input.metadata,
            tags: input.tags,
            cancel_reason: String::new(),
        };
        state
            .latest_changes
            .insert(order.name.clone(), first_change(&order));
        state.orders.insert(order.name.clone(), order.clone());
        tracing::info!(name = %order.name, "created order");
        Ok(Response::new(order))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let name = request.into_inner().name;
        let order = self.state().find(&name)?.clone();
        Ok(Response::new(order))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let mut req = request.into_inner();
        let page = req.page.take().unwrap_or_default();
        let page = Page::parse(page.size, &page.token, "page.size", "page.token")?;
        let user_id = match req.parent.as_str() {
            "" => None,
            parent => Some(parse_parent(parent)?),
        };

        let state = self.state();
        if let Some(user_id) = user_id {
            state.check_user(user_id)?;
        }
        let matching: Vec<&Order> = state
            .orders
            .values()
            .filter(|order| user_id.is_none_or(|id| order.user_id == id))
            .filter(|order| matches_filters(order, &req))
            .collect();
        let (orders, next_page_token) = page.apply(matching);
        Ok(Response::new(ListOrdersResponse {
            orders: orders.into_iter().cloned().collect(),
            next_page_token,
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let req = request.into_inner();
        let mut state = self.state();
        let current = match state.find(&req.name)?.status() {
            OrderStatus::Cancelled => Some("cancelled"),
            OrderStatus::Shipped => Some("shipped"),
            _ => None,
        };
        if let Some(current) = current {
            return Err(status::failed_precondition(
                format!(
                    "order {} is already {current} and cannot be cancelled",
                    req.name
                ),
                PreconditionViolation::new(
                    "ORDER_STATUS",
                    &req.name,
                    format!("order is {current}"),
                ),
            ));
        }
        state.set_status(&req.name, OrderStatus::Cancelled, &req.reason);
        tracing::info!(name = %req.name, "cancelled order");
        Ok(Response::new(state.find(&req.name)?.clone()))
    }

    type WatchOrderStream = BoxStream<OrderStatusChange>;

    async fn watch_order(
        &self,
        request: Request<WatchOrderRequest>,
    ) -> Result<Response<Self::WatchOrderStream>, Status> {
        let changes = watch::watch(self, request.into_inner().name)?;
        Ok(Response::new(Box::pin(changes)))
    }

    type SyncOrderStatusStream = BoxStream<OrderStatusAck>;

    async fn sync_order_status(
        &self,
        request: Request<Streaming<OrderStatusUpdate>>,
    ) -> Result<Response<Self::SyncOrderStatusStream>, Status> {
        let orders = self.clone();
        // Lazy: each update is applied, and acked, when it arrives. An
        // error reading the updates is passed on and ends the call.
        let acks = request
            .into_inner()
            .map(move |update| update.map(|update| orders.state().apply(update)));
        Ok(Response::new(Box::pin(acks)))
    }

    async fn get_invoice(
        &self,
        request: Request<GetInvoiceRequest>,
    ) -> Result<Response<HttpBody>, Status> {
        let name = request.into_inner().name;
        let invoice = csv::invoice(self.state().find(&name)?);
        Ok(Response::new(HttpBody {
            content_type: csv::CONTENT_TYPE.into(),
            data: invoice.into_bytes(),
            extensions: Vec::new(),
        }))
    }

    type ExportOrdersStream = tokio_stream::Iter<std::vec::IntoIter<Result<HttpBody, Status>>>;

    async fn export_orders(
        &self,
        request: Request<ExportOrdersRequest>,
    ) -> Result<Response<Self::ExportOrdersStream>, Status> {
        let user_id = parse_parent(&request.into_inner().parent)?;
        let state = self.state();
        state.check_user(user_id)?;
        let chunk = |content_type: &str, line: String| {
            Ok(HttpBody {
                content_type: content_type.into(),
                data: line.into_bytes(),
                extensions: Vec::new(),
            })
        };
        // A snapshot: orders placed during the download are not in it.
        let chunks: Vec<_> = std::iter::once(chunk(csv::CONTENT_TYPE, csv::EXPORT_HEADER.into()))
            .chain(
                state
                    .orders
                    .values()
                    .filter(|order| order.user_id == user_id)
                    .map(|order| chunk("", csv::export_line(order))),
            )
            .collect();
        Ok(Response::new(tokio_stream::iter(chunks)))
    }

    async fn upload_attachment(
        &self,
        request: Request<Streaming<UploadAttachmentRequest>>,
    ) -> Result<Response<Attachment>, Status> {
        let mut chunks = request.into_inner();
        let Some(first) = chunks.message().await? else {
            return Err(status::invalid_field("file", "the upload sent no chunks"));
        };
        let name = first.name;
        // Refuse an unknown order before reading the file.
        self.state().find(&name)?;
        let mut upload = Upload::default();
        upload.add(first.file)?;
        while let Some(chunk) = chunks.message().await? {
            if !chunk.name.is_empty() && chunk.name != name {
                return Err(status::invalid_field(
                    "name",
                    format!(
                        "chunk {} names {}, but the first chunk named {name}",
                        upload.chunks().saturating_add(1),
                        chunk.name
                    ),
                ));
            }
            upload.add(chunk.file)?;
        }
        let attachment = self.state().attach(&name, upload)?;
        tracing::info!(name = %attachment.name, size = attachment.size_bytes, "stored attachment");
        Ok(Response::new(attachment))
    }
}

/// The ListOrders filters other than parent; unset filters match everything.
fn matches_filters(order: &Order, req: &ListOrdersRequest) -> bool {
    let status_ok = req.status == OrderStatus::Unspecified as i32 || order.status == req.status;
    let total_ok = order.total.as_ref().map_or(0, |t| t.units) >= req.min_total_units;
    let created_ok = match (&req.created_after, &order.create_time) {
        (None, _) => true,
        (Some(after), Some(created)) => clock::is_after(created, after),
        (Some(_), None) => false,
    };
    let tags_ok = req.tags.iter().all(|tag| order.tags.contains(tag));
    status_ok && total_ok && created_ok && tags_ok
}

/// Reads a user id out of "users/{user_id}".
fn parse_parent(parent: &str) -> Result<i64, Status> {
    parent
        .strip_prefix("users/")
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| status::invalid_field("parent", "must look like users/{user_id}"))
}

/// Rejects names that cannot name an order, so a typo is INVALID_ARGUMENT
/// rather than a misleading NOT_FOUND.
fn check_order_name(name: &str) -> Result<(), Status> {
    let is_id = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["users", user, "orders", order] if is_id(user) && is_id(order) => Ok(()),
        _ => Err(status::invalid_field(
            "name",
            "must look like users/{user_id}/orders/{order_id}",
        )),
    }
}

/// Validates the line items of a new order and returns their total.
///
/// Errors: INVALID_ARGUMENT with one violation per problem, named like
/// "order.items[1].quantity".
fn check_items(items: &[LineItem]) -> Result<Money, Status> {
    let mut violations = Vec::new();
    if items.is_empty() {
        violations.push(FieldViolation::new(
            "order.items",
            "must contain at least one line item",
        ));
    }
    // The first currency seen sets the currency of the whole order.
    let currency = items
        .iter()
        .filter_map(|item| item.unit_price.as_ref())
        .map(|price| price.currency_code.as_str())
        .find(|code| !code.is_empty())
        .unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| format!("order.items[{i}].{name}");
        if item.sku.is_empty() {
            violations.push(FieldViolation::new(field("sku"), "must not be empty"));
        }
        if item.quantity <= 0 {
            violations.push(FieldViolation::new(field("quantity"), "must be positive"));
        }
        match &item.unit_price {
            None => violations.push(FieldViolation::new(field("unit_price"), "is required")),
            Some(price) => {
                if price.currency_code.is_empty() {
                    violations.push(FieldViolation::new(
                        field("unit_price.currency_code"),
                        "is required",
                    ));
                } else if price.currency_code != currency {
                    violations.push(FieldViolation::new(
                        field("unit_price.currency_code"),
                        format!("must be {currency}, like the other items"),
                    ));
                }
                if price.units < 0 || !(0..1_000_000_000).contains(&price.nanos) {
                    violations.push(FieldViolation::new(
                        field("unit_price"),
                        "must be a non-negative amount with nanos below 1000000000",
                    ));
                }
            }
        }
    }
    if !violations.is_empty() {
        return Err(status::invalid_argument("invalid order", violations));
    }
    total(items, currency).ok_or_else(|| {
        status::invalid_field("order.items", "the order total does not fit into Money")
    })
}

/// Sum of quantity * unit_price over valid items (non-negative prices, one
/// currency); None if the sum overflows Money.units.
fn total(items: &[LineItem], currency: &str) -> Option<Money> {
    // i128 nanos cannot overflow for i32 quantities times i64 units.
    let nanos: i128 = items
        .iter()
        .map(|item| {
            let price = item.unit_price.as_ref().map_or(0, |p| {
                i128::from(p.units) * NANOS_PER_UNIT + i128::from(p.nanos)
            });
            i128::from(item.quantity) * price
        })
        .sum();
    Some(Money {
        currency_code: currency.to_string(),
        units: i64::try_from(nanos / NANOS_PER_UNIT).ok()?,
        nanos: i32::try_from(nanos % NANOS_PER_UNIT).ok()?,
    })
}

fn usd(units: i64, nanos: i32) -> Money {
    Money {
        currency_code: "USD".into(),
        units,
        nanos,
    }
}

fn item(sku: &str, quantity: i32, unit_price: Money) -> LineItem {
    LineItem {
        sku: sku.into(),
        quantity,
        unit_price: Some(unit_price),
    }
}

/// The seed orders. Their items use the seed skus of InventoryService, but
/// placing them did not reserve stock.
fn seed_orders() -> Vec<Order> {
    let order = |user_id: i64, id: i64, items: Vec<LineItem>, status: OrderStatus| Order {
        name: format!("users/{user_id}/orders/{id}"),
        user_id,
        total: total(&items, "USD"),
        items,
        status: status.into(),
        ..Order::default()
    };
    vec![
        Order {
            create_time: Some(clock::at("2026-01-20T10:00:00Z")),
            payment: Some(Payment::Card(Card {
                brand: "visa".into(),
                last4: "4242".into(),
            })),
            metadata: HashMap::from([("channel".into(), "web".into())]),
            tags: vec!["gift".into()],
            ..order(
                1,
                1001,
                vec![
                    item("sku-espresso", 2, usd(12, 500_000_000)),
                    item("sku-grinder", 1, usd(89, 990_000_000)),
                ],
                OrderStatus::Paid,
            )
        },
        Order {
            create_time: Some(clock::at("2026-02-02T16:45:00Z")),
            payment: Some(Payment::GiftCardCode("GC-7731".into())),
            ..order(
                1,
                1002,
                vec![item("sku-kettle", 1, usd(45, 0))],
                OrderStatus::Pending,
            )
        },
        Order {
            create_time: Some(clock::at("2026-02-10T08:20:00Z")),
            tags: vec!["express".into()],
            ..order(
                2,
                1003,
                vec![item("sku-espresso", 4, usd(12, 500_000_000))],
                OrderStatus::Shipped,
            )
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::StatusExt;

    fn violated_fields(status: &Status) -> Vec<String> {
        status
            .get_details_bad_request()
            .map(|br| br.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default()
    }

    async fn create(orders: &Orders, parent: &str, items: Vec<LineItem>) -> Result<Order, Status> {
        let request = CreateOrderRequest {
            parent: parent.into(),
            order: Some(Order {
                items,
                status: OrderStatus::Shipped.into(), // output only: ignored
                tags: vec!["new".into()],
                ..Order::default()
            }),
        };
        orders
            .create_order(Request::new(request))
            .await
            .map(Response::into_inner)
    }

    async fn list_names(orders: &Orders, request: ListOrdersRequest) -> (Vec<String>, String) {
        let resp = orders
            .list_orders(Request::new(request))
            .await
            .unwrap()
            .into_inner();
        let names = resp.orders.into_iter().map(|o| o.name).collect();
        (names, resp.next_page_token)
    }

    #[test]
    fn status_moves_only_forward() {
        use OrderStatus::{Cancelled, Paid, Pending, Shipped, Unspecified};
        for (from, to, want) in [
            (Pending, Paid, true),
            (Paid, Shipped, true),
            (Pending, Cancelled, true),
            (Paid, Cancelled, true),
            (Pending, Shipped, false),
            (Paid, Pending, false),
            (Paid, Paid, false),
            (Shipped, Cancelled, false),
            (Cancelled, Paid, false),
            (Pending, Unspecified, false),
        ] {
            assert_eq!(may_change(from, to), want, "{from:?} -> {to:?}");
        }
    }

    #[test]
    fn accepted_update_is_the_latest_change() {
        let orders = Orders::new();
        let (_, mut changes) = orders.subscribe("users/1/orders/1002").unwrap();
        let ack = orders.state().apply(OrderStatusUpdate {
            name: "users/1/orders/1002".into(),
            status: OrderStatus::Cancelled.into(),
            reason: "fraud".into(),
        });
        assert!(ack.accepted);
        let sent = changes.try_recv().unwrap();
        assert_eq!(
            (sent.status(), sent.reason.as_str()),
            (OrderStatus::Cancelled, "fraud")
        );
        let (latest, _) = orders.subscribe("users/1/orders/1002").unwrap();
        assert_eq!(latest, sent);
        let order = orders.state().find("users/1/orders/1002").unwrap().clone();
        assert_eq!(order.cancel_reason, "fraud");
    }

    #[test]
    fn seed_orders_have_consistent_totals() {
        let totals: Vec<_> = seed_orders()
            .into_iter()
            .map(|o| o.total.map(|t| (t.units, t.nanos)))
            .collect();
        assert_eq!(
            totals,
            [Some((114, 990_000_000)), Some((45, 0)), Some((50, 0))]
        );
    }

    #[tokio::test]
    async fn create_order_computes_total_and_assigns_name() {
        let orders = Orders::new();
        let order = create(
            &orders,
            "users/2",
            vec![
                item("sku-espresso", 3, usd(12, 500_000_000)),
                item("sku-grinder", 1, usd(89, 990_000_000)),
            ],
        )
        .await
        .unwrap();
        assert_eq!(order.name, "users/2/orders/1004");
        assert_eq!(order.user_id, 2);
        assert_eq!(order.status(), OrderStatus::Pending);
        // 37.50 + 89.99: the nanos carry into units.
        assert_eq!(order.total, Some(usd(127, 490_000_000)));
        assert_eq!(order.tags, ["new"]);

        let next = create(&orders, "users/2", vec![item("sku-kettle", 1, usd(45, 0))])
            .await
            .unwrap();
        assert_eq!(next.name, "users/2/orders/1005");
    }

    #[tokio::test]
    async fn create_order_rejects_invalid_orders() {
        let eur = Money {
            currency_code: "EUR".into(),
            units: 1,
            nanos: 0,
        };
        let no_price = LineItem {
            sku: "sku-kettle".into(),
            quantity: 1,
            unit_price: None,
        };
        for (parent, items, code, fields) in [
            (
                "users/1",
                vec![],
                Code::InvalidArgument,
                vec!["order.items"],
            ),
            (
                "users/1",
                vec![item("sku-kettle", 0, usd(45, 0)), no_price],
                Code::InvalidArgument,
                vec!["order.items[0].quantity", "order.items[1].unit_price"],
            ),
            (
                "users/1",
                vec![item("sku-kettle", 1, usd(45, 0)), item("", 1, eur)],
                Code::InvalidArgument,
                vec![
                    "order.items[1].sku",
                    "order.items[1].unit_price.currency_code",
                ],
            ),
            (
                "users/1",
                vec![item("sku-kettle", 1, usd(-1, 0))],
                Code::InvalidArgument,
                vec!["order.items[0].unit_price"],
            ),
            ("customers/1", vec![], Code::InvalidArgument, vec!["parent"]),
            (
                "users/9",
                vec![item("sku-kettle", 1, usd(45, 0))],
                Code::NotFound,
                vec![],
            ),
        ] {
            let err = create(&Orders::new(), parent, items).await.unwrap_err();
            assert_eq!(err.code(), code, "{parent} {fields:?}");
            assert_eq!(violated_fields(&err), fields, "{parent}");
        }
    }

    #[tokio::test]
    async fn get_order_finds_seed_order_or_not_found() {
        let orders = Orders::new();
        let get =
            |name: &str| orders.get_order(Request::new(GetOrderRequest { name: name.into() }));

        let order = get("users/1/orders/1001").await.unwrap().into_inner();
        assert_eq!(order.status(), OrderStatus::Paid);
        assert_eq!(order.metadata["channel"], "web");

        for (name, code) in [
            ("users/1/orders/1003", Code::NotFound),
            ("users/1/orders/9999", Code::NotFound),
            ("orders/1001", Code::InvalidArgument),
        ] {
            let err = get(name).await.unwrap_err();
            assert_eq!(err.code(), code, "{name}");
        }
    }

    #[tokio::test]
    async fn list_orders_applies_filters() {
        let feb_first = clock::at("2026-02-01T00:00:00Z");
        for (request, want) in [
            (
                ListOrdersRequest::default(),
                vec![
                    "users/1/orders/1001",
                    "users/1/orders/1002",
                    "users/2/orders/1003",
                ],
            ),
            (
                ListOrdersRequest {
                    parent: "users/1".into(),
                    ..Default::default()
                },
                vec!["users/1/orders/1001", "users/1/orders/1002"],
            ),
            (
                ListOrdersRequest {
                    parent: "users/3".into(),
                    ..Default::default()
                },
                vec![],
            ),
            (
                ListOrdersRequest {
                    status: OrderStatus::Shipped.into(),
                    ..Default::default()
                },
                vec!["users/2/orders/1003"],
            ),
            (
                ListOrdersRequest {
                    min_total_units: 50,
                    ..Default::default()
                },
                vec!["users/1/orders/1001", "users/2/orders/1003"],
            ),
            (
                ListOrdersRequest {
                    created_after: Some(feb_first),
                    ..Default::default()
                },
                vec!["users/1/orders/1002", "users/2/orders/1003"],
            ),
            (
                ListOrdersRequest {
                    tags: vec!["gift".into()],
                    ..Default::default()
                },
                vec!["users/1/orders/1001"],
            ),
            (
                ListOrdersRequest {
                    tags: vec!["gift".into(), "express".into()],
                    ..Default::default()
                },
                vec![],
            ),
        ] {
            let case = format!("{request:?}");
            let (names, _) = list_names(&Orders::new(), request).await;
            assert_eq!(names, want, "{case}");
        }
    }

    #[tokio::test]
    async fn list_orders_paginates_and_validates() {
        let orders = Orders::new();
        let page = |size, token: &str| ListOrdersRequest {
            page: Some(crate::pb::shop::order::v1::Page {
                size,
                token: token.into(),
            }),
            ..Default::default()
        };
        let (first, token) = list_names(&orders, page(2, "")).await;
        assert_eq!(first, ["users/1/orders/1001", "users/1/orders/1002"]);
        assert_eq!(token, "2");
        let (second, token) = list_names(&orders, page(2, &token)).await;
        assert_eq!(second, ["users/2/orders/1003"]);
        assert_eq!(token, "");

        for (request, code, fields) in [
            (page(-1, ""), Code::InvalidArgument, vec!["page.size"]),
            (page(2, "x"), Code::InvalidArgument, vec!["page.token"]),
            (
                ListOrdersRequest {
                    parent: "users/x".into(),
                    ..Default::default()
                },
                Code::InvalidArgument,
                vec!["parent"],
            ),
            (
                ListOrdersRequest {
                    parent: "users/9".into(),
                    ..Default::default()
                },
                Code::NotFound,
                vec![],
            ),
        ] {
            let case = format!("{request:?}");
            let err = orders.list_orders(Request::new(request)).await.unwrap_err();
            assert_eq!(err.code(), code, "{case}");
            assert_eq!(violated_fields(&err), fields, "{case}");
        }
    }

    #[tokio::test]
    async fn cancel_order_sets_status_and_reason_once() {
        let orders = Orders::new();
        let cancel = |name: &str| {
            orders.cancel_order(Request::new(CancelOrderRequest {
                name: name.into(),
                reason: "changed my mind".into(),
            }))
        };

        let cancelled = cancel("users/1/orders/1002").await.unwrap().into_inner();
        assert_eq!(cancelled.status(), OrderStatus::Cancelled);
        assert_eq!(cancelled.cancel_reason, "changed my mind");

        for (name, current) in [
            ("users/1/orders/1002", "cancelled"),
            ("users/2/orders/1003", "shipped"),
        ] {
            let err = cancel(name).await.unwrap_err();
            assert_eq!(err.code(), Code::FailedPrecondition, "{name}");
            let failure = err.get_details_precondition_failure().unwrap();
            let violation = &failure.violations[0];
            assert_eq!(violation.r#type, "ORDER_STATUS", "{name}");
            assert_eq!(violation.subject, name);
            assert_eq!(violation.description, format!("order is {current}"));
        }

        let err = cancel("users/1/orders/4242").await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
}
