//! The HTTP client connectors share: every name it resolves goes through the egress policy,
//! and every request has the connect and query deadlines.

use std::{net::SocketAddr, sync::Arc};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::{config::Deadlines, egress::Egress};

/// Resolves host names for HTTP requests through the egress policy.
#[derive(Debug)]
struct EgressResolver {
    egress: Arc<Egress>,
    limit: std::time::Duration,
}

impl Resolve for EgressResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (egress, limit) = (self.egress.clone(), self.limit);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = egress.resolve(name.as_str(), 0, None, limit).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client whose connections the egress policy allows, with the deployment's deadlines.
pub(super) fn client(egress: Arc<Egress>, deadlines: &Deadlines) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(EgressResolver { egress, limit: deadlines.connect }))
        .connect_timeout(deadlines.connect)
        .timeout(deadlines.query)
        .build()
        .expect("an HTTP client with rustls builds")
}
