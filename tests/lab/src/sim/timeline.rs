//! One failover, step by step, from what each part recorded: the controller's log (probes
//! failing, the move decision), the EC2 stand-in's call log, the node monitors (agent), the
//! router (VPC convergence) and the client's own requests. Rendered as text and as SVG.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::traffic::Outage;

/// Milliseconds since the Unix epoch as a wall-clock time of day (UTC), for messages.
pub fn clock(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let day = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3_600_000,
        day / 60_000 % 60,
        day / 1000 % 60,
        day % 1000
    )
}

/// Everything measured about one failover.
#[derive(Debug, Clone)]
pub struct Failover {
    pub scenario: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    /// When the lab broke the holder.
    pub injected: SystemTime,
    /// The first probe of the holder that failed (the controller's log: Down minus the time
    /// the target had been failing).
    pub first_failed_probe: Option<SystemTime>,
    /// The controller marked the holder's own check Down: what an unplanned move waits for
    /// (the address's check Down when the holder's never was).
    pub detected: Option<SystemTime>,
    /// The controller marked the address's check Down.
    pub address_down: Option<SystemTime>,
    /// The first agent on another node published that it sees the holder down (the second
    /// opinion an unplanned move needs).
    pub confirmed: Option<SystemTime>,
    /// The controller decided to move (the move's log line minus its duration).
    pub decided: Option<SystemTime>,
    /// Mutating EC2 calls: (action, started, answered).
    pub ec2: Vec<(String, SystemTime, SystemTime)>,
    /// The new holder's agent configured the address.
    pub agent: Option<SystemTime>,
    /// The VPC routes the address to the new holder.
    pub routed: Option<SystemTime>,
    pub tcp: Outage,
    pub udp: Outage,
}

impl Failover {
    fn offset(&self, t: SystemTime) -> f64 {
        match t.duration_since(self.injected) {
            Ok(d) => d.as_secs_f64() * 1000.0,
            Err(e) => -(e.duration().as_secs_f64() * 1000.0),
        }
    }

    /// When the move had all it needs: the holder Down at the controller and confirmed by an
    /// agent, whichever came last.
    pub fn evidence(&self) -> Option<SystemTime> {
        match (self.detected, self.confirmed) {
            (Some(d), Some(c)) => Some(d.max(c)),
            (d, None) => d,
            (None, c) => c,
        }
    }

    /// The timeline's points in milliseconds after the failure, for the benchmark's JSON rows,
    /// with "our part": from the evidence being complete (the holder Down and an agent's
    /// confirmation, see [`Failover::evidence`]) to the first EC2 call, plus from the last EC2
    /// answer to the agent configuring the address (null when a point is missing). The wait
    /// for the second opinion is its own figure, `secondOpinionWaitMs` (confirmation after
    /// Down; 0 when the agent spoke first).
    pub fn points(&self) -> serde_json::Value {
        let ms = |t: Option<SystemTime>| t.map(|t| (self.offset(t) * 10.0).round() / 10.0);
        let ec2_start = self.ec2.first().map(|(_, s, _)| *s);
        let ec2_end = self.ec2.last().map(|(_, _, e)| *e);
        let ours = match (self.evidence(), ec2_start, ec2_end, self.agent) {
            (Some(d), Some(s), Some(e), Some(a)) => {
                Some(self.offset(s) - self.offset(d) + self.offset(a) - self.offset(e))
            }
            _ => None,
        };
        let wait = match (self.detected, self.confirmed) {
            (Some(d), Some(c)) => Some((self.offset(c) - self.offset(d)).max(0.0)),
            _ => None,
        };
        serde_json::json!({
            "firstFailedProbe": ms(self.first_failed_probe),
            "addressDown": ms(self.address_down),
            "down": ms(self.detected),
            "confirmed": ms(self.confirmed),
            "secondOpinionWaitMs": wait.map(|v| (v * 10.0).round() / 10.0),
            "decided": ms(self.decided),
            "ec2Call": ms(ec2_start),
            "ec2Answered": ms(ec2_end),
            "agent": ms(self.agent),
            "routed": ms(self.routed),
            "ourPartMs": ours.map(|v| (v * 10.0).round() / 10.0),
        })
    }

    /// The steps in time order, as (label, ms after the failure, ms it lasted).
    pub fn steps(&self) -> Vec<(String, f64, f64)> {
        let mut s = vec![("failure injected".to_string(), 0.0, 0.0)];
        let point = |label: &str, t: Option<SystemTime>, s: &mut Vec<(String, f64, f64)>| {
            if let Some(t) = t {
                s.push((label.to_string(), self.offset(t), 0.0));
            }
        };
        if let (Some(first), Some(down)) = (self.first_failed_probe, self.detected) {
            let start = self.offset(first);
            s.push(("probes failing".into(), start, self.offset(down) - start));
        }
        point("controller: address down", self.address_down, &mut s);
        point("controller: holder down", self.detected, &mut s);
        point("agent elsewhere: holder down", self.confirmed, &mut s);
        point("controller: move decided", self.decided, &mut s);
        for (action, started, done) in &self.ec2 {
            let start = self.offset(*started);
            s.push((format!("EC2 {action}"), start, self.offset(*done) - start));
        }
        point("agent: address configured", self.agent, &mut s);
        point("VPC: routes to new holder", self.routed, &mut s);
        point("client: first good request", self.tcp.recovered, &mut s);
        s.sort_by(|a, b| a.1.total_cmp(&b.1));
        s
    }

    /// The steps as text, one per line.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} : {} -> {} ({}), client outage TCP {} ms ({} failed), UDP {} ms ({} failed)\n",
            self.scenario,
            self.from,
            self.to,
            self.reason,
            self.tcp.duration.as_millis(),
            self.tcp.failed,
            self.udp.duration.as_millis(),
            self.udp.failed
        );
        for (label, at, lasted) in self.steps() {
            if lasted > 0.0 {
                let _ = writeln!(out, "  {at:>8.0} ms  {label} (for {lasted:.0} ms)");
            } else {
                let _ = writeln!(out, "  {at:>8.0} ms  {label}");
            }
        }
        out
    }

    /// An SVG picture: one row per step on a shared time axis, and the client's outage as a
    /// shaded band.
    pub fn svg(&self, title: &str) -> String {
        let steps = self.steps();
        let end = steps
            .iter()
            .map(|(_, at, d)| at + d)
            .fold(self.tcp.duration.as_secs_f64() * 1000.0, f64::max)
            .max(500.0);
        let span = (end / 500.0).ceil() * 500.0 + 250.0;
        let (left, width, row, top) = (250.0, 620.0, 26.0, 60.0);
        let x = |ms: f64| left + (ms.max(0.0) / span) * width;
        let height = top + row * steps.len() as f64 + 50.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="900" height="{height:.0}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect width="900" height="{height:.0}" fill="white"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
            escape(title)
        );
        let _ = writeln!(
            s,
            r##"<text x="10" y="42" fill="#444">{} -> {} ({}); client-visible outage {} ms (TCP), {} ms (UDP)</text>"##,
            escape(&self.from),
            escape(&self.to),
            escape(&self.reason),
            self.tcp.duration.as_millis(),
            self.udp.duration.as_millis()
        );
        if let (Some(first), true) = (self.tcp.first_failed, !self.tcp.duration.is_zero()) {
            let a = self.offset(first);
            let b = a + self.tcp.duration.as_secs_f64() * 1000.0;
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{:.0}" fill="#fde2e1"/>"##,
                x(a),
                (x(b) - x(a)).max(1.0),
                row * steps.len() as f64
            );
        }
        for (i, (label, at, lasted)) in steps.iter().enumerate() {
            let y = top + row * i as f64 + row / 2.0;
            let _ = writeln!(
                s,
                r#"<text x="10" y="{:.0}">{}</text>"#,
                y + 4.0,
                escape(label)
            );
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{y:.0}" x2="{:.0}" y2="{y:.0}" stroke="#eee"/>"##,
                left + width
            );
            if *lasted > 0.0 {
                let _ = writeln!(
                    s,
                    r##"<rect x="{:.1}" y="{:.0}" width="{:.1}" height="10" fill="#3b7dd8"/>"##,
                    x(*at),
                    y - 5.0,
                    (x(at + lasted) - x(*at)).max(2.0)
                );
            } else {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{:.1}" cy="{y:.0}" r="5" fill="#d8603b"/>"##,
                    x(*at)
                );
            }
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.0}" fill="#333">{at:.0} ms</text>"##,
                x(at + lasted) + 8.0,
                y + 4.0
            );
        }
        let axis = top + row * steps.len() as f64 + 10.0;
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{axis:.0}" x2="{:.0}" y2="{axis:.0}" stroke="black"/>"#,
            left + width
        );
        let mut tick = 0.0;
        while tick <= span {
            let _ = writeln!(
                s,
                r#"<line x1="{0:.1}" y1="{axis:.0}" x2="{0:.1}" y2="{1:.0}" stroke="black"/>"#,
                x(tick),
                axis + 5.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.0}" text-anchor="middle">{:.1} s</text>"#,
                x(tick),
                axis + 20.0,
                tick / 1000.0
            );
            tick += if span > 6000.0 { 1000.0 } else { 500.0 };
        }
        let _ = writeln!(s, "</svg>");
        s
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `key=value` from a log line (tracing's text format), without quotes.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        &quoted[..quoted.find('"')?]
    } else {
        rest.split_whitespace().next()?
    };
    Some(value)
}

/// `d` before `t`.
pub fn before(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_sub(d).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_out_of_tracing_lines() {
        let l = r#"2026-11-21T10:00:00.000Z  INFO floatip::probe::engine: probe target changed health target=10.99.8.100:30080 from=Up to=Down reason="connection refused" failing_ms=1012"#;
        assert_eq!(field(l, "failing_ms"), Some("1012"));
        assert_eq!(field(l, "reason"), Some("connection refused"));
        assert_eq!(field(l, "to"), Some("Down"));
        assert_eq!(field(l, "missing"), None);
    }

    #[test]
    fn steps_are_in_time_order_relative_to_the_failure() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let f = Failover {
            scenario: "service dies".into(),
            from: "node-1".into(),
            to: "node-2".into(),
            reason: "HolderUnhealthy".into(),
            injected: t0,
            first_failed_probe: Some(ms(200)),
            address_down: Some(ms(1190)),
            detected: Some(ms(1200)),
            confirmed: Some(ms(1205)),
            decided: Some(ms(1210)),
            ec2: vec![("AssignPrivateIpAddresses".into(), ms(1215), ms(1240))],
            agent: Some(ms(1260)),
            routed: Some(ms(2450)),
            tcp: Outage {
                requests: 300,
                failed: 120,
                duration: Duration::from_millis(2300),
                first_failed: Some(ms(5)),
                recovered: Some(ms(2460)),
                last_failure: None,
            },
            udp: Outage::default(),
        };
        let steps = f.steps();
        let labels: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            labels,
            [
                "failure injected",
                "probes failing",
                "controller: address down",
                "controller: holder down",
                "agent elsewhere: holder down",
                "controller: move decided",
                "EC2 AssignPrivateIpAddresses",
                "agent: address configured",
                "VPC: routes to new holder",
                "client: first good request"
            ]
        );
        assert_eq!(steps[1].2, 1000.0);
        let svg = f.svg("one failover");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 8);
        assert!(f.text().contains("2300 ms (120 failed)"));
        // Our part runs from the evidence being complete (the agent's word, 1205 ms): 10 ms to
        // the EC2 call, 20 ms from its answer to the agent.
        let points = f.points();
        assert_eq!(points["ourPartMs"], 30.0);
        assert_eq!(points["secondOpinionWaitMs"], 5.0);
        assert_eq!(points["addressDown"], 1190.0);
    }
}
