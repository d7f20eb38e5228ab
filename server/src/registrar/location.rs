//! The location service: the registered devices of each extension, in
//! memory, mirrored to the store in batches.

use crate::store::{BindingChange, StoredBinding};
use std::collections::HashMap;
use std::net::SocketAddr;
use tsunagu_sip::register::ContactBinding;
use tsunagu_sip::{Peer, TransportKind};

#[derive(Debug, Clone)]
pub struct Binding {
    pub contact: ContactBinding,
    pub device_key: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// The flow the REGISTER came on: requests to this device reuse it.
    pub flow: Peer,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: Option<String>,
    pub updated_at: u64,
}

#[derive(Default)]
pub struct Location {
    by_extension: HashMap<String, Vec<Binding>>,
    count: usize,
}

pub fn transport_name(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Udp => "udp",
        TransportKind::Tcp => "tcp",
        TransportKind::Tls => "tls",
        TransportKind::Ws => "ws",
    }
}

fn transport_from_name(s: &str) -> TransportKind {
    match s {
        "tcp" => TransportKind::Tcp,
        "tls" => TransportKind::Tls,
        "ws" => TransportKind::Ws,
        _ => TransportKind::Udp,
    }
}

impl Binding {
    pub fn to_stored(&self, extension: &str) -> StoredBinding {
        StoredBinding {
            extension: extension.to_string(),
            device_key: self.device_key.clone(),
            contact: self.contact.uri.clone(),
            expires_at: self.expires_at as i64,
            transport: transport_name(self.flow.transport).to_string(),
            source: self.flow.addr.to_string(),
            instance: self.contact.instance.clone(),
            reg_id: self.contact.reg_id.map(i64::from),
            pn_provider: self.contact.pn_provider.clone(),
            pn_prid: self.contact.pn_prid.clone(),
            pn_param: self.contact.pn_param.clone(),
            call_id: self.call_id.clone(),
            cseq: i64::from(self.cseq),
            user_agent: self.user_agent.clone(),
            updated_at: self.updated_at as i64,
        }
    }

    /// Rebuild from the store after a restart. Connection flows are gone
    /// (flow 0): a device on TCP/TLS reconnects and re-registers.
    pub fn from_stored(s: &StoredBinding) -> Option<Self> {
        let addr: SocketAddr = s.source.parse().ok()?;
        Some(Self {
            contact: ContactBinding {
                uri: s.contact.clone(),
                expires: None,
                instance: s.instance.clone(),
                reg_id: s.reg_id.and_then(|r| u32::try_from(r).ok()),
                pn_provider: s.pn_provider.clone(),
                pn_prid: s.pn_prid.clone(),
                pn_param: s.pn_param.clone(),
                q: None,
            },
            device_key: s.device_key.clone(),
            expires_at: u64::try_from(s.expires_at).ok()?,
            flow: Peer { addr, transport: transport_from_name(&s.transport), flow: 0 },
            call_id: s.call_id.clone(),
            cseq: u32::try_from(s.cseq).unwrap_or(0),
            user_agent: s.user_agent.clone(),
            updated_at: u64::try_from(s.updated_at).unwrap_or(0),
        })
    }
}

impl Location {
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn users_with_bindings(&self) -> usize {
        self.by_extension.len()
    }

    pub fn bindings(&self, extension: &str, now: u64) -> Vec<Binding> {
        self.by_extension
            .get(extension)
            .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a registered device sends from this address (its flow).
    pub fn has_flow_from(&self, addr: std::net::SocketAddr, now: u64) -> bool {
        self.by_extension.values().flatten().any(|b| b.flow.addr == addr && b.expires_at > now)
    }

    pub fn get(&self, extension: &str, device_key: &str) -> Option<&Binding> {
        self.by_extension.get(extension)?.iter().find(|b| b.device_key == device_key)
    }

    pub fn upsert(&mut self, extension: &str, binding: Binding) -> BindingChange {
        let list = self.by_extension.entry(extension.to_string()).or_default();
        let stored = binding.to_stored(extension);
        match list.iter_mut().find(|b| b.device_key == binding.device_key) {
            Some(existing) => *existing = binding,
            None => {
                list.push(binding);
                self.count += 1;
            }
        }
        BindingChange::Upsert(stored)
    }

    pub fn remove(&mut self, extension: &str, device_key: &str) -> Option<BindingChange> {
        let list = self.by_extension.get_mut(extension)?;
        let before = list.len();
        list.retain(|b| b.device_key != device_key);
        let removed = before - list.len();
        self.count -= removed;
        if list.is_empty() {
            self.by_extension.remove(extension);
        }
        (removed > 0).then(|| BindingChange::Remove { extension: extension.to_string(), device_key: device_key.to_string() })
    }

    pub fn remove_all(&mut self, extension: &str) -> Vec<BindingChange> {
        let keys: Vec<String> = self.by_extension.get(extension).map(|v| v.iter().map(|b| b.device_key.clone()).collect()).unwrap_or_default();
        keys.iter().filter_map(|k| self.remove(extension, k)).collect()
    }

    /// Drop expired bindings; what was dropped, for the store.
    pub fn expire(&mut self, now: u64) -> Vec<BindingChange> {
        let expired: Vec<(String, String)> = self
            .by_extension
            .iter()
            .flat_map(|(e, v)| v.iter().filter(|b| b.expires_at <= now).map(move |b| (e.clone(), b.device_key.clone())))
            .collect();
        expired.iter().filter_map(|(e, k)| self.remove(e, k)).collect()
    }

    /// Every binding, as store upserts.
    pub fn snapshot(&self) -> Vec<BindingChange> {
        self.by_extension.iter().flat_map(|(e, v)| v.iter().map(move |b| BindingChange::Upsert(b.to_stored(e)))).collect()
    }

    /// Extensions that have bindings but are no longer users.
    pub fn extensions(&self) -> Vec<String> {
        self.by_extension.keys().cloned().collect()
    }
}
