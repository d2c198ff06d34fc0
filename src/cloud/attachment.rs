//! An ENI's attachment to an instance, as DescribeNetworkInterfaces shows it: what Interface
//! mode moves. EC2 answers AttachNetworkInterface and DetachNetworkInterface at once and shows
//! the attachment `attaching` or `detaching` for a while after, so the status is kept.

/// The attachment of one ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// What DetachNetworkInterface takes (`eni-attach-...`).
    pub id: String,
    pub instance_id: String,
    pub device_index: Option<i32>,
    pub status: AttachmentStatus,
}

/// EC2's `Attachment.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentStatus {
    Attaching,
    Attached,
    Detaching,
    Detached,
}

impl AttachmentStatus {
    /// EC2's word for it; an unknown word reads as Attaching (bound, not yet usable), so a
    /// status EC2 adds later is never taken for one the ENI can be used or detached in.
    pub fn parse(s: &str) -> Self {
        match s {
            "attached" => Self::Attached,
            "detaching" => Self::Detaching,
            "detached" => Self::Detached,
            _ => Self::Attaching,
        }
    }

    /// Whether the ENI is bound to the instance in this status (EC2 refuses another attach).
    pub fn bound(self) -> bool {
        self != Self::Detached
    }
}

impl Attachment {
    /// Bound to `instance`: attaching, attached or detaching from it.
    pub fn on(&self, instance: &str) -> bool {
        self.instance_id == instance && self.status.bound()
    }
}

/// Whether an instance in this EC2 state (`InstanceState.Name`) answers a detach: a forced
/// detach is for one that does not (AWS documents Force as the last resort for an instance
/// that is stopped, stopping, shutting down or gone).
pub fn answers_detach(state: Option<&str>) -> bool {
    matches!(state, Some("running" | "pending"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_ec2_writes_them_and_unknown_ones_stay_bound() {
        assert_eq!(
            AttachmentStatus::parse("attached"),
            AttachmentStatus::Attached
        );
        assert_eq!(
            AttachmentStatus::parse("detaching"),
            AttachmentStatus::Detaching
        );
        assert_eq!(
            AttachmentStatus::parse("detached"),
            AttachmentStatus::Detached
        );
        assert_eq!(
            AttachmentStatus::parse("attaching"),
            AttachmentStatus::Attaching
        );
        assert!(AttachmentStatus::parse("something-new").bound());
        assert!(!AttachmentStatus::Detached.bound());
    }

    #[test]
    fn only_a_running_or_pending_instance_is_asked_for_a_plain_detach() {
        assert!(answers_detach(Some("running")));
        assert!(answers_detach(Some("pending")));
        for dead in [
            Some("stopped"),
            Some("stopping"),
            Some("shutting-down"),
            Some("terminated"),
            None,
        ] {
            assert!(!answers_detach(dead), "{dead:?}");
        }
    }
}
