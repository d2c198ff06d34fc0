//! apimachinery's duration.HumanDuration: about two significant units, as kubectl's AGE shows.

use jiff::SignedDuration;

pub fn human_duration(d: SignedDuration) -> String {
    // Go truncates toward zero; up to 2s in the future still reads as now (clock skew).
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;
    use jiff::SignedDuration;

    fn h(secs: i64) -> String {
        human_duration(SignedDuration::from_secs(secs))
    }

    #[test]
    fn matches_apimachinery() {
        assert_eq!(
            human_duration(SignedDuration::from_millis(-2500)),
            "<invalid>"
        );
        assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
        assert_eq!(h(0), "0s");
        assert_eq!(h(5), "5s");
        assert_eq!(h(119), "119s");
        assert_eq!(h(120), "2m");
        assert_eq!(h(185), "3m5s");
        assert_eq!(h(599), "9m59s");
        assert_eq!(h(600), "10m");
        assert_eq!(h(3 * 3600 - 1), "179m");
        assert_eq!(h(3 * 3600), "3h");
        assert_eq!(h(3 * 3600 + 25 * 60), "3h25m");
        assert_eq!(h(8 * 3600), "8h");
        assert_eq!(h(47 * 3600 + 59 * 60), "47h");
        assert_eq!(h(48 * 3600), "2d");
        assert_eq!(h(51 * 3600), "2d3h");
        assert_eq!(h(8 * 24 * 3600), "8d");
        assert_eq!(h(729 * 24 * 3600), "729d");
        assert_eq!(h(730 * 24 * 3600), "2y");
        assert_eq!(h(731 * 24 * 3600), "2y1d");
        assert_eq!(h(8 * 365 * 24 * 3600 + 100 * 24 * 3600), "8y");
    }
}
