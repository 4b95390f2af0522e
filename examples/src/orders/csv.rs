//! The CSV documents of GetInvoice and ExportOrders, built from orders:
//! RFC 4180 quoting, lines ending in "\n", amounts as decimals with at least
//! two places ("12.50"). Looking orders up is the order book's job.

use super::NANOS_PER_UNIT;
use crate::pb::shop::order::v1::{LineItem, Money, Order};
use std::borrow::Cow;

/// Content type of both documents.
pub(super) const CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// First line of an invoice.
pub(super) const INVOICE_HEADER: &str = "sku,quantity,unit_price,line_total,currency\n";

/// First line of an export.
pub(super) const EXPORT_HEADER: &str = "name,status,total_units,currency,create_time\n";

/// The invoice of `order`: the header, one line per item, then
/// "total,,,{sum of line totals},{currency}".
pub(super) fn invoice(order: &Order) -> String {
    let mut csv = String::from(INVOICE_HEADER);
    let mut sum = 0;
    for item in &order.items {
        let price = item.unit_price.as_ref().map_or(0, nanos);
        let line_total = line_total(item);
        sum += line_total;
        let currency = item
            .unit_price
            .as_ref()
            .map_or("", |p| p.currency_code.as_str());
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            field(&item.sku),
            item.quantity,
            amount(price),
            amount(line_total),
            field(currency)
        ));
    }
    let currency = order
        .total
        .as_ref()
        .map_or("", |t| t.currency_code.as_str());
    csv.push_str(&format!("total,,,{},{}\n", amount(sum), field(currency)));
    csv
}

/// One export line: name, status (the enum value's name), whole units and
/// currency of the total, create_time (RFC 3339).
pub(super) fn export_line(order: &Order) -> String {
    let (units, currency) = order
        .total
        .as_ref()
        .map_or((0, ""), |t| (t.units, t.currency_code.as_str()));
    let created = order
        .create_time
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    format!(
        "{},{},{units},{},{}\n",
        field(&order.name),
        order.status().as_str_name(),
        field(currency),
        field(&created)
    )
}

fn nanos(money: &Money) -> i128 {
    i128::from(money.units) * NANOS_PER_UNIT + i128::from(money.nanos)
}

fn line_total(item: &LineItem) -> i128 {
    i128::from(item.quantity) * item.unit_price.as_ref().map_or(0, nanos)
}

/// `nanos` billionths as a decimal with two to nine places: "12.50",
/// "0.123456789".
fn amount(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let nanos = nanos.unsigned_abs();
    let per_unit = NANOS_PER_UNIT.unsigned_abs();
    let fraction = format!("{:09}", nanos % per_unit);
    let places = fraction.trim_end_matches('0').len().max(2);
    format!("{sign}{}.{}", nanos / per_unit, &fraction[..places])
}

/// A CSV field, quoted if it holds a separator, quote or line break.
fn field(value: &str) -> Cow<'_, str> {
    if value.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", value.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_keeps_two_to_nine_places() {
        for (nanos, want) in [
            (0, "0.00"),
            (45_000_000_000, "45.00"),
            (12_500_000_000, "12.50"),
            (89_990_000_000, "89.99"),
            (123_456_789, "0.123456789"),
            (-1_500_000_000, "-1.50"),
        ] {
            assert_eq!(amount(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn field_quotes_only_when_needed() {
        for (value, want) in [
            ("sku-kettle", "sku-kettle"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
        ] {
            assert_eq!(field(value), want, "{value:?}");
        }
    }
}
