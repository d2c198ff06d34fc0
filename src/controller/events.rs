//! Kubernetes Events for what the controller did. One Event per move: kube's Recorder folds
//! repeats into a series that keeps the first note, and every move's from/to must stay visible.

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use crate::api::FloatingIP;

/// Events of cluster-scoped objects live in this namespace, as kubectl describe expects.
const EVENT_NAMESPACE: &str = "default";

pub struct Events {
    api: Api<Event>,
    instance: String,
}

impl Events {
    pub fn new(client: kube::Client, instance: &str) -> Self {
        Self {
            api: Api::namespaced(client, EVENT_NAMESPACE),
            instance: instance.to_string(),
        }
    }

    /// Publishes a Normal event about `fip`.
    pub async fn normal(
        &self,
        fip: &FloatingIP,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        self.publish(fip, "Normal", reason, action, note).await
    }

    /// Publishes a Warning event about `fip`: something a person should look at.
    pub async fn warning(
        &self,
        fip: &FloatingIP,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        self.publish(fip, "Warning", reason, action, note).await
    }

    async fn publish(
        &self,
        fip: &FloatingIP,
        type_: &str,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", fip.name_any())),
                namespace: Some(EVENT_NAMESPACE.to_string()),
                ..Default::default()
            },
            event_time: Some(MicroTime(jiff::Timestamp::now())),
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(note),
            regarding: Some(fip.object_ref(&())),
            reporting_controller: Some("floatip.io/controller".into()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        self.api
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
    }
}
