//! EC2's attachment delays, which moto lacks: EC2 answers AttachNetworkInterface and
//! DetachNetworkInterface at once, then shows the attachment `attaching` (or `detaching`) for
//! a while before it is `attached` (or gone, the ENI `available`). moto applies both at once
//! and refuses nothing (it attaches an ENI that is attached elsewhere, over a device index in
//! use, past the instance's limit), so the lab does both here.
//!
//! The model: moto holds the attachment through both transitions. An attach is checked, then
//! carried out in moto at once (moto hands out the attachment id the caller gets); a detach is
//! checked, answered at once and held, and carried out in moto when its delay has passed. Until
//! then every Describe* answer the proxy gives shows the attachment's status as `attaching` or
//! `detaching` (the ENI stays `in-use`, as EC2 shows it). So moto's state is what the instance
//! has (an ENI that is attaching or detaching is still bound to it), and every reader agrees:
//! callers through the proxy see the transitional status; the simulated VPC, which reads moto
//! directly, asks `GET /_lab/attachments` which ENIs are still attaching (an attach is booked
//! before moto sees it, so none shows attached in moto unbooked) and plugs an interface into
//! the node only once its attachment is `attached`, and unplugs it once moto no longer shows
//! it (the held detach was carried out). A change that becomes due counts as a
//! change of EC2 for `GET /_lab/generation`, so the VPC hears of it at once.
//!
//! Refusals, as EC2 words them: attaching an ENI that is attached, attaching or detaching
//! (`InvalidNetworkInterface.InUse`); a device index the instance already uses
//! (`InvalidParameterValue`); an instance with every interface slot taken, by
//! DescribeInstanceTypes' `MaximumNetworkInterfaces` (`AttachmentLimitExceeded`); deleting an
//! ENI that is attached or detaching (`InvalidNetworkInterface.InUse`). A delay of 0 carries
//! the call out in moto at once, as before this model.
//!
//! A forced detach takes the same delay: AWS documents Force as a last resort for a detach
//! that does not finish (an instance that does not answer), not as a faster path, and the lab
//! has no instance that stops answering EC2.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::proxy::{self, Reply, State};
use super::EniDelays;

/// A transition in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Attaching,
    Detaching,
}

impl Phase {
    fn status(self) -> &'static str {
        match self {
            Phase::Attaching => "attaching",
            Phase::Detaching => "detaching",
        }
    }
}

/// A held detach: the request as the caller sent it, carried out in moto when due.
#[derive(Debug, Clone)]
pub struct Held {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Debug, Clone)]
struct Pending {
    phase: Phase,
    /// The ENI attaching, for the VPC (attaches only).
    eni: Option<String>,
    until: Instant,
    held: Option<Held>,
}

/// Why EC2 refuses an attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    InUse { eni: String },
    DeviceInUse { instance: String, device: i32 },
    Limit { instance: String, max: usize },
}

impl Refusal {
    fn code_and_message(&self) -> (&'static str, String) {
        match self {
            Refusal::InUse { eni } => (
                "InvalidNetworkInterface.InUse",
                format!("Interface: [{eni}] in use."),
            ),
            Refusal::DeviceInUse { instance, device } => (
                "InvalidParameterValue",
                format!(
                    "Instance '{instance}' already has an interface attached at device index \
                     '{device}'."
                ),
            ),
            Refusal::Limit { instance, max } => (
                "AttachmentLimitExceeded",
                format!(
                    "Interface count {} exceeds the limit for {instance}",
                    max + 1
                ),
            ),
        }
    }
}

/// What moto shows now, as an attach is checked.
#[derive(Debug, Clone, Default)]
pub struct Now {
    /// The ENI's attachment id, if it has one (attached, attaching or detaching).
    pub eni_attachment: Option<String>,
    /// Device indexes the instance uses.
    pub devices: Vec<i32>,
    /// How many interfaces its type takes; None when unknown.
    pub max: Option<usize>,
}

/// The attachments in transition: pure bookkeeping, with the clock passed in.
#[derive(Debug)]
pub struct Book {
    delays: EniDelays,
    pending: BTreeMap<String, Pending>,
    /// ENIs whose attach moto may have carried out before its attachment id is known here.
    in_flight: BTreeSet<String>,
}

impl Book {
    pub fn new(delays: EniDelays) -> Self {
        Self {
            delays,
            pending: BTreeMap::new(),
            in_flight: BTreeSet::new(),
        }
    }

    pub fn delays(&self) -> EniDelays {
        self.delays
    }

    /// Whether EC2 takes an attach of `eni` to `instance` at `device`, given `now`.
    pub fn check_attach(eni: &str, instance: &str, device: i32, now: &Now) -> Result<(), Refusal> {
        if now.eni_attachment.is_some() {
            return Err(Refusal::InUse { eni: eni.into() });
        }
        if now.devices.contains(&device) {
            return Err(Refusal::DeviceInUse {
                instance: instance.into(),
                device,
            });
        }
        match now.max {
            Some(max) if now.devices.len() >= max => Err(Refusal::Limit {
                instance: instance.into(),
                max,
            }),
            _ => Ok(()),
        }
    }

    /// An attach of `eni` goes to moto: it counts as attaching from now, as moto may carry it
    /// out before its answer (and the attachment id) comes back.
    pub fn attach_begins(&mut self, eni: &str) {
        self.in_flight.insert(eni.into());
    }

    /// The attach of `eni` came back: it gave `attachment` (attaching for the delay), or
    /// failed (None).
    pub fn attach_ends(&mut self, eni: &str, attachment: Option<&str>, at: Instant) {
        self.in_flight.remove(eni);
        let Some(attachment) = attachment else {
            return;
        };
        if self.delays.attach_ms == 0 {
            return;
        }
        self.pending.insert(
            attachment.into(),
            Pending {
                phase: Phase::Attaching,
                eni: Some(eni.into()),
                until: at + Duration::from_millis(self.delays.attach_ms),
                held: None,
            },
        );
    }

    /// A detach of `attachment` was answered; moto carries it out (`held`) when due. A detach
    /// of an attachment already detaching changes nothing, as EC2 keeps the first.
    pub fn detach(&mut self, attachment: &str, held: Held, at: Instant) {
        if self.phase(attachment) == Some(Phase::Detaching) {
            return;
        }
        self.pending.insert(
            attachment.into(),
            Pending {
                phase: Phase::Detaching,
                eni: None,
                until: at + Duration::from_millis(self.delays.detach_ms),
                held: Some(held),
            },
        );
    }

    pub fn phase(&self, attachment: &str) -> Option<Phase> {
        self.pending.get(attachment).map(|p| p.phase)
    }

    /// Takes every transition due at `at`; the held detaches among them, to carry out.
    pub fn due(&mut self, at: Instant) -> (usize, Vec<Held>) {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.until <= at)
            .map(|(id, _)| id.clone())
            .collect();
        let held = due
            .iter()
            .filter_map(|id| self.pending.remove(id)?.held)
            .collect();
        (due.len(), held)
    }

    /// The ENIs attaching, or whose attach is on its way through moto.
    pub fn attaching_enis(&self) -> BTreeSet<String> {
        let pending = self
            .pending
            .values()
            .filter(|p| p.phase == Phase::Attaching);
        let enis = pending.filter_map(|p| p.eni.clone());
        enis.chain(self.in_flight.iter().cloned()).collect()
    }

    /// attachment id -> its phase, for every transition in progress.
    pub fn shown(&self) -> BTreeMap<String, Phase> {
        self.pending
            .iter()
            .map(|(id, p)| (id.clone(), p.phase))
            .collect()
    }
}

/// `body` (a Describe* answer) with each attachment in `shown` given its transitional status;
/// None when nothing changed.
pub fn rewrite(body: &str, shown: &BTreeMap<String, Phase>) -> Option<String> {
    const OPEN: &str = "<attachment>";
    const CLOSE: &str = "</attachment>";
    const ATTACHED: &str = "<status>attached</status>";
    if shown.is_empty() || !body.contains(OPEN) {
        return None;
    }
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    let mut changed = false;
    while let Some(start) = rest.find(OPEN) {
        let Some(len) = rest[start..].find(CLOSE) else {
            break;
        };
        let end = start + len + CLOSE.len();
        let element = &rest[start..end];
        out.push_str(&rest[..start]);
        let phase = shown
            .iter()
            .find(|(id, _)| element.contains(&format!("<attachmentId>{id}</attachmentId>")))
            .map(|(_, p)| *p);
        match phase {
            Some(p) if element.contains(ATTACHED) => {
                out.push_str(&element.replacen(
                    ATTACHED,
                    &format!("<status>{}</status>", p.status()),
                    1,
                ));
                changed = true;
            }
            _ => out.push_str(element),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// The value of parameter `key` in a form body.
fn param(body: &[u8], key: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Carries out AttachNetworkInterface or DetachNetworkInterface with EC2's delays and
/// refusals.
/// Also refuses DeleteNetworkInterface of an ENI still attached or detaching, which moto
/// deletes.
pub async fn carry_out(
    state: &State,
    action: &str,
    parts: http::request::Parts,
    body: Bytes,
) -> Reply {
    // One at a time, so that two attaches of one ENI cannot both pass the check before
    // either is carried out. A lab process serves one EC2, so one lock serves it.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    match action {
        "AttachNetworkInterface" => attach(state, parts, body).await,
        "DetachNetworkInterface" => detach(state, parts, body).await,
        _ => delete(state, parts, body).await,
    }
}

async fn delete(state: &State, parts: http::request::Parts, body: Bytes) -> Reply {
    let Some(eni) = param(&body, "NetworkInterfaceId") else {
        return proxy::forward(state, parts, body).await;
    };
    let attached = state
        .moto_client()
        .describe_network_interfaces()
        .network_interface_ids(&eni)
        .send()
        .await
        .is_ok_and(|r| {
            r.network_interfaces()
                .iter()
                .any(|n| n.attachment().is_some())
        });
    if attached {
        let (code, message) = Refusal::InUse { eni }.code_and_message();
        return proxy::ec2_error_with(StatusCode::BAD_REQUEST, code, &message);
    }
    proxy::forward(state, parts, body).await
}

async fn attach(state: &State, parts: http::request::Parts, body: Bytes) -> Reply {
    let (Some(eni), Some(instance), Some(device)) = (
        param(&body, "NetworkInterfaceId"),
        param(&body, "InstanceId"),
        param(&body, "DeviceIndex").and_then(|d| d.parse::<i32>().ok()),
    ) else {
        // moto words what is missing.
        return proxy::forward(state, parts, body).await;
    };
    let now = match moto_now(state, &eni, &instance).await {
        Ok(now) => now,
        Err(err) => {
            tracing::debug!(%err, "attach: reading moto; moto answers the call");
            return proxy::forward(state, parts, body).await;
        }
    };
    if let Err(refusal) = Book::check_attach(&eni, &instance, device, &now) {
        let (code, message) = refusal.code_and_message();
        return proxy::ec2_error_with(StatusCode::BAD_REQUEST, code, &message);
    }
    state.attachments().attach_begins(&eni);
    let (parts, body) = proxy::split(proxy::forward(state, parts, body).await).await;
    let id = std::str::from_utf8(&body)
        .ok()
        .and_then(|b| between(b, "<attachmentId>", "</attachmentId>"))
        .filter(|_| parts.status.is_success());
    state
        .attachments()
        .attach_ends(&eni, id.as_deref(), Instant::now());
    http::Response::from_parts(parts, Full::new(body))
}

async fn detach(state: &State, parts: http::request::Parts, body: Bytes) -> Reply {
    let Some(id) = param(&body, "AttachmentId") else {
        return proxy::forward(state, parts, body).await;
    };
    // An attachment moto does not know: moto's own answer is EC2's.
    let known = state
        .moto_client()
        .describe_network_interfaces()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("attachment.attachment-id")
                .values(&id)
                .build(),
        )
        .send()
        .await
        .is_ok_and(|r| !r.network_interfaces().is_empty());
    if !known || state.attachments().delays().detach_ms == 0 {
        return proxy::forward(state, parts, body).await;
    }
    let held = Held {
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        headers: parts.headers.clone(),
        body,
    };
    state.attachments().detach(&id, held, Instant::now());
    proxy::ec2_ok("DetachNetworkInterfaceResponse")
}

/// The ENI's attachment and the instance's devices and limit, as moto shows them.
async fn moto_now(state: &State, eni: &str, instance: &str) -> anyhow::Result<Now> {
    use aws_sdk_ec2::types::Filter;
    let ec2 = state.moto_client();
    let enis = ec2
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await?;
    let eni_attachment = enis
        .network_interfaces()
        .first()
        .and_then(|n| n.attachment())
        .and_then(|a| a.attachment_id())
        .map(str::to_string);
    let on = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await?;
    let devices = on
        .network_interfaces()
        .iter()
        .filter_map(|n| n.attachment()?.device_index())
        .collect();
    let kind = ec2
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await?
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.instance_type().cloned());
    let max = match kind {
        Some(kind) => ec2
            .describe_instance_types()
            .instance_types(kind)
            .send()
            .await?
            .instance_types()
            .first()
            .and_then(|t| t.network_info()?.maximum_network_interfaces())
            .and_then(|m| usize::try_from(m).ok()),
        None => None,
    };
    Ok(Now {
        eni_attachment,
        devices,
        max,
    })
}

fn between(s: &str, open: &str, close: &str) -> Option<String> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(s[start..start + len].to_string())
}

/// Rewrites a Describe* answer to show the transitions in progress.
pub async fn shown_in(state: &State, reply: Reply) -> Reply {
    let shown = state.attachments().shown();
    if shown.is_empty() || !reply.status().is_success() {
        return reply;
    }
    let (mut parts, body) = proxy::split(reply).await;
    let body = match std::str::from_utf8(&body)
        .ok()
        .and_then(|b| rewrite(b, &shown))
    {
        Some(rewritten) => {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Bytes::from(rewritten)
        }
        None => body,
    };
    http::Response::from_parts(parts, Full::new(body))
}

/// Finishes transitions as they become due, carrying out held detaches in moto; each counts
/// as a change of EC2. Runs for as long as the lab.
pub async fn settle(state: std::sync::Arc<State>) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        let (done, held) = state.attachments().due(Instant::now());
        for h in held {
            let Ok(uri) = format!("http://{}{}", state.moto, h.path).parse::<http::Uri>() else {
                continue;
            };
            let mut req = Request::post(uri);
            if let Some(headers) = req.headers_mut() {
                *headers = h.headers;
            }
            let Ok(req) = req.body(Full::new(h.body)) else {
                continue;
            };
            if let Err(err) = state.send_to_moto(req).await {
                tracing::warn!(err = format!("{err:#}"), "carrying out a held detach");
            }
        }
        if done > 0 {
            state.changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn held() -> Held {
        Held {
            path: "/".into(),
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"Action=DetachNetworkInterface"),
        }
    }

    fn book() -> Book {
        Book::new(EniDelays {
            attach_ms: 300,
            detach_ms: 500,
        })
    }

    #[test]
    fn an_attach_is_attaching_until_its_delay_has_passed() {
        let (mut b, t0) = (book(), Instant::now());
        b.attach_begins("eni-1");
        assert_eq!(b.attaching_enis(), BTreeSet::from(["eni-1".to_string()]));
        b.attach_ends("eni-1", Some("eni-attach-1"), t0);
        assert_eq!(b.attaching_enis(), BTreeSet::from(["eni-1".to_string()]));
        assert_eq!(b.phase("eni-attach-1"), Some(Phase::Attaching));
        assert_eq!(b.due(t0 + 299 * MS).0, 0);
        assert_eq!(b.phase("eni-attach-1"), Some(Phase::Attaching));
        let (done, held) = b.due(t0 + 300 * MS);
        assert_eq!((done, held.len()), (1, 0));
        assert_eq!(b.phase("eni-attach-1"), None);
        assert!(b.attaching_enis().is_empty());
        b.attach_begins("eni-2");
        b.attach_ends("eni-2", None, t0);
        assert!(
            b.attaching_enis().is_empty(),
            "a failed attach is not attaching"
        );
    }

    #[test]
    fn a_detach_is_held_until_due_and_a_second_one_does_not_restart_it() {
        let (mut b, t0) = (book(), Instant::now());
        b.attach_ends("eni-1", Some("eni-attach-1"), t0);
        b.detach("eni-attach-1", held(), t0 + 100 * MS);
        assert_eq!(b.phase("eni-attach-1"), Some(Phase::Detaching));
        b.detach("eni-attach-1", held(), t0 + 400 * MS);
        assert_eq!(b.due(t0 + 599 * MS).0, 0);
        let (done, held) = b.due(t0 + 600 * MS);
        assert_eq!((done, held.len()), (1, 1));
        assert!(b.shown().is_empty());
    }

    #[test]
    fn attach_refusals_are_ec2s() {
        let free = Now {
            eni_attachment: None,
            devices: vec![0],
            max: Some(3),
        };
        assert_eq!(Book::check_attach("eni-1", "i-1", 1, &free), Ok(()));
        let attached = Now {
            eni_attachment: Some("eni-attach-9".into()),
            ..free.clone()
        };
        let r = Book::check_attach("eni-1", "i-1", 1, &attached).unwrap_err();
        assert_eq!(r.code_and_message().0, "InvalidNetworkInterface.InUse");
        let r = Book::check_attach("eni-1", "i-1", 0, &free).unwrap_err();
        assert_eq!(r.code_and_message().0, "InvalidParameterValue");
        let full = Now {
            devices: vec![0, 1, 2],
            ..free.clone()
        };
        let r = Book::check_attach("eni-1", "i-1", 3, &full).unwrap_err();
        assert_eq!(r.code_and_message().0, "AttachmentLimitExceeded");
        let unknown = Now { max: None, ..full };
        assert_eq!(Book::check_attach("eni-1", "i-1", 3, &unknown), Ok(()));
    }

    #[test]
    fn rewrite_changes_only_the_named_attachments_status() {
        let body = "<r><item><attachment><attachmentId>eni-attach-1</attachmentId>\
                    <status>attached</status></attachment><status>in-use</status></item>\
                    <item><attachment><attachmentId>eni-attach-2</attachmentId>\
                    <status>attached</status></attachment></item></r>";
        let shown = BTreeMap::from([("eni-attach-2".to_string(), Phase::Detaching)]);
        let out = rewrite(body, &shown).unwrap();
        assert_eq!(
            out,
            body.replacen(
                "eni-attach-2</attachmentId><status>attached",
                "eni-attach-2</attachmentId><status>detaching",
                1
            )
        );
        assert!(out.contains("eni-attach-1</attachmentId><status>attached"));
        assert!(out.contains("<status>in-use</status>"));
        let other = BTreeMap::from([("eni-attach-3".to_string(), Phase::Attaching)]);
        assert_eq!(rewrite(body, &other), None);
    }
}
