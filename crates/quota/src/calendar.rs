//! UTC day and month windows for spend budgets.

const DAY_MS: u64 = 86_400_000;

/// Days since 1970-01-01 → (year, month 1..=12), Howard Hinnant's `civil_from_days`.
fn civil(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

/// Days since epoch of the first day of (year, month), Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Key suffix of the UTC day containing `now_ms`.
pub(crate) fn day_key(now_ms: u64) -> String {
    format!("d{}", now_ms / DAY_MS)
}

/// Key suffix of the UTC month containing `now_ms`.
pub(crate) fn month_key(now_ms: u64) -> String {
    let (y, m) = civil((now_ms / DAY_MS) as i64);
    format!("m{y}{m:02}")
}

pub(crate) fn ms_to_next_day(now_ms: u64) -> u64 {
    DAY_MS - now_ms % DAY_MS
}

pub(crate) fn ms_to_next_month(now_ms: u64) -> u64 {
    let (y, m) = civil((now_ms / DAY_MS) as i64);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next = days_from_civil(ny, nm) as u64 * DAY_MS;
    next.saturating_sub(now_ms)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_days() {
        // 2026-11-21T12:00:00Z
        let t = 1_795_262_400_000u64;
        assert_eq!(month_key(t), "m202611");
        // to 2026-12-01T00:00:00Z = 9.5 days
        assert_eq!(ms_to_next_month(t), 9 * DAY_MS + DAY_MS / 2);
        assert_eq!(ms_to_next_day(t), DAY_MS / 2);
        // 2024-02-29 is a leap day; next month is March.
        let leap = days_from_civil(2024, 2) as u64 * DAY_MS + 28 * DAY_MS;
        assert_eq!(month_key(leap), "m202402");
        assert_eq!(ms_to_next_month(leap), DAY_MS);
        assert_eq!(civil(days_from_civil(1999, 12)), (1999, 12));
    }
}
