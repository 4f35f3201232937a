//! What a query costs where the platform runs on a pay-per-scan engine: Athena bills
//! each query by the bytes it scans, rounded up to the megabyte, with a 10 MB minimum;
//! DDL and failed queries are free. The benchmark (`make bench-publish`) prints each
//! mart's scanned bytes and this price beside them; the README's *Costs* extrapolates.

/// Athena's price per TB scanned (SQL queries, engine v3; US East and EU (Ireland)).
/// Decimal units, as AWS prices them.
pub const ATHENA_USD_PER_TB: f64 = 5.0;
/// The least a query is billed for, in MB.
pub const ATHENA_MIN_MB: u64 = 10;

/// What Athena bills for one query that scans `bytes`.
pub fn athena_usd(bytes: u64) -> f64 {
    let mb = bytes.div_ceil(1_000_000).max(ATHENA_MIN_MB);
    mb as f64 / 1_000_000.0 * ATHENA_USD_PER_TB
}

#[cfg(test)]
mod tests {
    use super::athena_usd;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn athena_bills_whole_megabytes_and_at_least_ten() {
        // The minimum: $5/TB for 10 MB, however little was read.
        assert!(close(athena_usd(0), 0.00005));
        assert!(close(athena_usd(9_999_999), 0.00005));
        // One byte over a megabyte is another megabyte.
        assert!(close(athena_usd(20_000_001), 21.0 * 5.0 / 1_000_000.0));
        assert!(close(athena_usd(20_000_000), 20.0 * 5.0 / 1_000_000.0));
        // A terabyte, decimal.
        assert!((athena_usd(1_000_000_000_000) - 5.0).abs() < 1e-9);
    }
}
