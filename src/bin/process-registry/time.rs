//! Epoch milliseconds for people: RFC 3339 in UTC, and short durations.

use std::time::{SystemTime, UNIX_EPOCH};

const MS_PER_DAY: u64 = 86_400_000;

/// Now, in epoch milliseconds (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `epoch_ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn rfc3339(epoch_ms: u64) -> String {
    let (year, month, day) = civil_from_days(epoch_ms / MS_PER_DAY);
    let in_day = epoch_ms % MS_PER_DAY;
    let (hours, minutes) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (seconds, millis) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}Z")
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01, so leap days end each 400-year era.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A short duration: `850ms`, `42s`, `3m 5s`, `2h 10m`, `3d 4h`.
pub(crate) fn short(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0 => format!("{ms}ms"),
        1..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        3600..86_400 => format!("{}h {}m", seconds / 3600, seconds / 60 % 60),
        _ => format!("{}d {}h", seconds / 86_400, seconds / 3600 % 24),
    }
}

/// Whether a lease expiring at `expires_ms` is live at `now_ms`, and for
/// how long (a lease is live while `now < expires`).
pub(crate) fn expiry(expires_ms: u64, now_ms: u64) -> String {
    if expires_ms > now_ms {
        format!("live, {} left", short(expires_ms - now_ms))
    } else {
        format!("expired {} ago", short(now_ms - expires_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_milliseconds_format_as_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_237_600_123), "2025-11-27T10:00:00.123Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        // Nothing overflows at the far end.
        assert!(rfc3339(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short(850), "850ms");
        assert_eq!(short(42_000), "42s");
        assert_eq!(short(185_000), "3m 5s");
        assert_eq!(short(7_800_000), "2h 10m");
        assert_eq!(short(273_600_000), "3d 4h");
        assert_eq!(expiry(10_000, 4_000), "live, 6s left");
        assert_eq!(expiry(10_000, 10_000), "expired 0ms ago");
    }
}
