//! `shop.inventory.v1.InventoryService`
//! (protos/shop/inventory/v1/inventory.proto): in-memory stock levels seeded
//! for "sku-espresso" (120 available), "sku-grinder" (5) and "sku-kettle"
//! (sold out), plus stock reservations, one at a time (ReserveStock) or
//! all or nothing from a stream of requests (BulkReserve).
//!
//! Reservations are not stored: their expire_time is informational, and
//! reserved units return to available only when a BulkReserve call fails.

use crate::pb::shop::inventory::v1::{
    BatchGetStockRequest, BatchGetStockResponse, BulkReserveResponse, GetStockRequest, Reservation,
    ReserveStockRequest, StockLevel, inventory_service_server::InventoryService,
};
use crate::{clock, status};
use prost_types::{Duration, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tonic::{Request, Response, Status, Streaming};
use tonic_types::{PreconditionViolation, StatusExt as _};

const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// Reservation lifetime when the request sets no ttl.
const DEFAULT_TTL_SECONDS: i64 = 15 * 60;
/// Longest reservation lifetime a request may ask for.
const MAX_TTL_SECONDS: i64 = 24 * 60 * 60;

/// The InventoryService implementation; clones share one stock table.
#[derive(Debug, Clone)]
pub struct Inventory {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    stocks: BTreeMap<String, StockLevel>,
    next_reservation: u64,
}

impl State {
    fn find(&self, sku: &str) -> Result<&StockLevel, Status> {
        self.stocks.get(sku).ok_or_else(|| sku_not_found(sku))
    }

    /// The stock of `sku` as a reply carries it: with its etag.
    fn read(&self, sku: &str) -> Result<StockLevel, Status> {
        let mut stock = self.find(sku)?.clone();
        stock.etag = etag(&stock);
        Ok(stock)
    }

    /// Moves `req.quantity` units of `req.sku` from available to reserved.
    ///
    /// Errors: as InventoryService.ReserveStock.
    fn reserve(&mut self, req: ReserveStockRequest) -> Result<Reservation, Status> {
        if req.quantity <= 0 {
            return Err(status::invalid_field("quantity", "must be positive"));
        }
        let ttl_nanos = ttl_nanos(req.ttl)?;
        let stock = self
            .stocks
            .get_mut(&req.sku)
            .ok_or_else(|| sku_not_found(&req.sku))?;
        if !req.etag.is_empty() && req.etag != etag(stock) {
            return Err(status::failed_precondition(
                format!("the stock of {} changed since etag {}", req.sku, req.etag),
                PreconditionViolation::new("ETAG", &req.sku, "the stock changed"),
            ));
        }
        let quantity = i64::from(req.quantity);
        if quantity > stock.available {
            return Err(status::failed_precondition(
                format!("not enough stock of {} to reserve {quantity}", req.sku),
                PreconditionViolation::new(
                    "STOCK",
                    &req.sku,
                    format!("only {} available", stock.available),
                ),
            ));
        }
        let now = clock::now();
        stock.available -= quantity;
        stock.reserved += quantity;
        stock.update_time = Some(now);
        let id = format!("res-{}", self.next_reservation);
        self.next_reservation += 1;
        tracing::info!(%id, sku = %req.sku, quantity, "reserved stock");
        Ok(Reservation {
            id,
            sku: req.sku,
            quantity: req.quantity,
            expire_time: Some(add_nanos(now, ttl_nanos)),
            order_name: req.order_name,
        })
    }

    /// Returns the units of `reservation` to available.
    fn release(&mut self, reservation: &Reservation) {
        if let Some(stock) = self.stocks.get_mut(&reservation.sku) {
            let quantity = i64::from(reservation.quantity);
            stock.available += quantity;
            stock.reserved -= quantity;
            stock.update_time = Some(clock::now());
            tracing::info!(id = %reservation.id, "released stock");
        }
    }
}

/// The reservations of one BulkReserve call; released when dropped before
/// [`Bulk::commit`], whether the call failed or its client went away.
#[derive(Debug)]
struct Bulk {
    inventory: Inventory,
    reservations: Vec<Reservation>,
    committed: bool,
}

impl Bulk {
    /// Keeps the reservations.
    fn commit(mut self) -> Vec<Reservation> {
        self.committed = true;
        std::mem::take(&mut self.reservations)
    }
}

impl Drop for Bulk {
    fn drop(&mut self) {
        if self.committed || self.reservations.is_empty() {
            return;
        }
        let mut state = self.inventory.state();
        for reservation in &self.reservations {
            state.release(reservation);
        }
    }
}

/// `err` with its message prefixed by "message {position}: ", keeping code
/// and error details.
fn at_message(position: usize, err: Status) -> Status {
    let message = format!("message {position}: {}", err.message());
    if err.details().is_empty() {
        Status::new(err.code(), message)
    } else {
        Status::with_error_details(err.code(), message, err.get_error_details())
    }
}

fn sku_not_found(sku: &str) -> Status {
    Status::not_found(format!("sku {sku} not found"))
}

impl Inventory {
    /// A service holding fresh seed data.
    pub fn new() -> Self {
        let stocks = seed_stocks()
            .into_iter()
            .map(|s| (s.sku.clone(), s))
            .collect();
        Inventory {
            state: Arc::new(Mutex::new(State {
                stocks,
                next_reservation: 1,
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }
}

impl Default for Inventory {
    fn default() -> Self {
        Self::new()
    }
}

#[tonic::async_trait]
impl InventoryService for Inventory {
    async fn get_stock(
        &self,
        request: Request<GetStockRequest>,
    ) -> Result<Response<StockLevel>, Status> {
        let sku = request.into_inner().sku;
        let stock = self.state().read(&sku)?;
        Ok(Response::new(stock))
    }

    async fn batch_get_stock(
        &self,
        request: Request<BatchGetStockRequest>,
    ) -> Result<Response<BatchGetStockResponse>, Status> {
        let skus = request.into_inner().skus;
        if skus.is_empty() {
            return Err(status::invalid_field("skus", "must name at least one sku"));
        }
        let state = self.state();
        let stocks = skus
            .iter()
            .map(|sku| state.read(sku))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(BatchGetStockResponse { stocks }))
    }

    async fn reserve_stock(
        &self,
        request: Request<ReserveStockRequest>,
    ) -> Result<Response<Reservation>, Status> {
        let reservation = self.state().reserve(request.into_inner())?;
        Ok(Response::new(reservation))
    }

    async fn bulk_reserve(
        &self,
        request: Request<Streaming<ReserveStockRequest>>,
    ) -> Result<Response<BulkReserveResponse>, Status> {
        let mut requests = request.into_inner();
        let mut bulk = Bulk {
            inventory: self.clone(),
            reservations: Vec::new(),
            committed: false,
        };
        // Each request is reserved as it arrives; an error drops `bulk`,
        // which releases what the earlier ones reserved.
        while let Some(req) = requests.message().await? {
            let position = bulk.reservations.len() + 1;
            let reservation = self
                .state()
                .reserve(req)
                .map_err(|err| at_message(position, err))?;
            bulk.reservations.push(reservation);
        }
        let reservations = bulk.commit();
        Ok(Response::new(BulkReserveResponse {
            count: i32::try_from(reservations.len()).unwrap_or(i32::MAX),
            reservations,
        }))
    }
}

/// The requested reservation lifetime in nanoseconds.
///
/// Errors: INVALID_ARGUMENT unless 0 < ttl <= 24h.
/// A stock's etag: its available and reserved units, which is all a
/// reservation changes.
fn etag(stock: &StockLevel) -> String {
    format!("{}-{}", stock.available, stock.reserved)
}

fn ttl_nanos(ttl: Option<Duration>) -> Result<i128, Status> {
    let Some(ttl) = ttl else {
        return Ok(i128::from(DEFAULT_TTL_SECONDS) * NANOS_PER_SECOND);
    };
    let nanos = i128::from(ttl.seconds) * NANOS_PER_SECOND + i128::from(ttl.nanos);
    if nanos <= 0 {
        return Err(status::invalid_field("ttl", "must be positive"));
    }
    if nanos > i128::from(MAX_TTL_SECONDS) * NANOS_PER_SECOND {
        return Err(status::invalid_field("ttl", "must be at most 24h"));
    }
    Ok(nanos)
}

/// `time + nanos`, for nanos bounded by MAX_TTL_SECONDS.
fn add_nanos(time: Timestamp, nanos: i128) -> Timestamp {
    let total = i128::from(time.seconds) * NANOS_PER_SECOND + i128::from(time.nanos) + nanos;
    // Both parts fit: the seconds of a SystemTime plus at most a day, and a
    // remainder below one second.
    Timestamp {
        seconds: i64::try_from(total.div_euclid(NANOS_PER_SECOND)).unwrap_or(i64::MAX),
        nanos: i32::try_from(total.rem_euclid(NANOS_PER_SECOND)).unwrap_or(0),
    }
}

/// The seed stock levels; warehouse counts add up to available plus reserved.
fn seed_stocks() -> Vec<StockLevel> {
    let stock = |sku: &str, available: i64, warehouses: &[(&str, i32)]| StockLevel {
        sku: sku.into(),
        available,
        reserved: 0,
        warehouses: warehouses
            .iter()
            .map(|&(code, units)| (code.to_string(), units))
            .collect::<HashMap<_, _>>(),
        update_time: Some(clock::at("2026-01-15T08:00:00Z")),
        // Made on every read.
        etag: String::new(),
    };
    vec![
        stock("sku-espresso", 120, &[("ams", 80), ("ber", 40)]),
        stock("sku-grinder", 5, &[("ams", 5)]),
        stock("sku-kettle", 0, &[]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::StatusExt;

    fn reserve_request(sku: &str, quantity: i32, ttl: Option<Duration>) -> ReserveStockRequest {
        ReserveStockRequest {
            sku: sku.into(),
            quantity,
            order_name: "users/1/orders/1002".into(),
            ttl,
            etag: String::new(),
        }
    }

    async fn stock(inventory: &Inventory, sku: &str) -> StockLevel {
        inventory
            .get_stock(Request::new(GetStockRequest { sku: sku.into() }))
            .await
            .unwrap()
            .into_inner()
    }

    #[tokio::test]
    async fn get_stock_returns_seed_level_or_not_found() {
        let inventory = Inventory::new();
        let espresso = stock(&inventory, "sku-espresso").await;
        assert_eq!(espresso.available, 120);
        assert_eq!(
            espresso.warehouses,
            HashMap::from([("ams".into(), 80), ("ber".into(), 40)])
        );

        let err = inventory
            .get_stock(Request::new(GetStockRequest {
                sku: "sku-toaster".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(err.message(), "sku sku-toaster not found");
    }

    #[tokio::test]
    async fn batch_get_stock_keeps_request_order() {
        let inventory = Inventory::new();
        let batch = |skus: &[&str]| {
            inventory.batch_get_stock(Request::new(BatchGetStockRequest {
                skus: skus.iter().map(|s| s.to_string()).collect(),
            }))
        };

        let resp = batch(&["sku-kettle", "sku-espresso"])
            .await
            .unwrap()
            .into_inner();
        let skus: Vec<_> = resp.stocks.iter().map(|s| s.sku.as_str()).collect();
        assert_eq!(skus, ["sku-kettle", "sku-espresso"]);

        let err = batch(&[]).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);

        let err = batch(&["sku-kettle", "sku-toaster"]).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(err.message().contains("sku-toaster"), "{err:?}");
    }

    #[tokio::test]
    async fn reserve_stock_moves_units_to_reserved() {
        let inventory = Inventory::new();
        let before = clock::now();
        let first = inventory
            .reserve_stock(Request::new(reserve_request("sku-espresso", 20, None)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.id, "res-1");
        assert_eq!(first.order_name, "users/1/orders/1002");
        // Default ttl: 15 minutes from now.
        let expire = first.expire_time.unwrap();
        assert!(
            (expire.seconds - before.seconds - 15 * 60).abs() <= 1,
            "{expire:?}"
        );

        let level = stock(&inventory, "sku-espresso").await;
        assert_eq!((level.available, level.reserved), (100, 20));

        let hour = Duration {
            seconds: 3600,
            nanos: 0,
        };
        let second = inventory
            .reserve_stock(Request::new(reserve_request("sku-grinder", 5, Some(hour))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.id, "res-2");
        let expire = second.expire_time.unwrap();
        assert!(
            (expire.seconds - before.seconds - 3600).abs() <= 1,
            "{expire:?}"
        );
    }

    #[tokio::test]
    async fn reserve_stock_rejects_invalid_requests() {
        let day_and_a_second = Duration {
            seconds: 24 * 3600 + 1,
            nanos: 0,
        };
        let zero = Duration {
            seconds: 0,
            nanos: 0,
        };
        for (request, code, field) in [
            (
                reserve_request("sku-espresso", 0, None),
                Code::InvalidArgument,
                Some("quantity"),
            ),
            (
                reserve_request("sku-espresso", 1, Some(day_and_a_second)),
                Code::InvalidArgument,
                Some("ttl"),
            ),
            (
                reserve_request("sku-espresso", 1, Some(zero)),
                Code::InvalidArgument,
                Some("ttl"),
            ),
            (
                reserve_request("sku-toaster", 1, None),
                Code::NotFound,
                None,
            ),
        ] {
            let case = format!("{request:?}");
            let err = Inventory::new()
                .reserve_stock(Request::new(request))
                .await
                .unwrap_err();
            assert_eq!(err.code(), code, "{case}");
            let fields: Vec<_> = err
                .get_details_bad_request()
                .map(|br| br.field_violations.into_iter().map(|v| v.field).collect())
                .unwrap_or_default();
            assert_eq!(fields, field.into_iter().collect::<Vec<_>>(), "{case}");
        }
    }

    #[tokio::test]
    async fn reserve_stock_fails_precondition_when_short() {
        let inventory = Inventory::new();
        let err = inventory
            .reserve_stock(Request::new(reserve_request("sku-grinder", 6, None)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        let failure = err.get_details_precondition_failure().unwrap();
        let violation = &failure.violations[0];
        assert_eq!(
            (
                violation.r#type.as_str(),
                violation.subject.as_str(),
                violation.description.as_str()
            ),
            ("STOCK", "sku-grinder", "only 5 available")
        );
        // Nothing was reserved.
        let level = stock(&inventory, "sku-grinder").await;
        assert_eq!((level.available, level.reserved), (5, 0));
    }
}
