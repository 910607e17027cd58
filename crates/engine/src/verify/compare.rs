//! The comparer: walked entries in, differences out (to a sink), counts
//! kept.

use super::{DiffClass, DiffCounts, DiffSink, Difference};
use crate::node::{NodeInfo, Slot, acl_equal, acl_masked, canonical_acl, next_sequence, preview};
use crate::read::walk::{Entry, ListFailure, WalkOptions};

/// How a verify walks and compares (set from a [`super::VerifyRequest`]).
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    pub walk: WalkOptions,
    /// Compare ephemeral nodes too (ignored on both sides by default).
    pub include_ephemeral: bool,
    /// Count lagging sequence counters as differences.
    pub strict_counters: bool,
}

/// Compares walked entries one at a time. It keeps counts only: each
/// difference goes to the sink as soon as it is found.
pub struct Comparer<'s> {
    include_ephemeral: bool,
    pub(super) acl: bool,
    pub(super) counts: DiffCounts,
    pub(super) compared: u64,
    sink: &'s mut dyn DiffSink,
}

impl<'s> Comparer<'s> {
    /// `acl`: compare ACLs (both sides read them).
    pub fn new(include_ephemeral: bool, acl: bool, sink: &'s mut dyn DiffSink) -> Comparer<'s> {
        Comparer { include_ephemeral, acl, counts: DiffCounts::default(), compared: 0, sink }
    }

    #[cfg(feature = "internals")]
    pub fn counts(&self) -> &DiffCounts {
        &self.counts
    }

    /// Nodes present on both sides and compared so far.
    #[cfg(feature = "internals")]
    pub fn compared(&self) -> u64 {
        self.compared
    }

    fn note(&mut self, class: DiffClass, rel: &str, detail: String) {
        self.counts.add(class);
        let path = if rel.is_empty() { "/".to_string() } else { rel.to_string() };
        self.sink.difference(Difference { class, path, detail });
    }

    /// A node whose children could not be listed.
    pub fn list_failure(&mut self, f: &ListFailure) {
        self.note(DiffClass::Unreadable, &f.rel, format!("children on the {}: {}", f.side, f.error));
    }

    fn visible<'e>(&self, slot: &'e Slot) -> Option<&'e NodeInfo> {
        slot.persistent(self.include_ephemeral)
    }

    /// One walked path, both sides.
    pub fn entry(&mut self, e: &Entry) {
        for (slot, side) in [(&e.src, "source"), (&e.dst, "destination")] {
            match slot {
                Slot::Failed(err) => self.note(DiffClass::Unreadable, &e.rel, format!("on the {side}: {err}")),
                Slot::Vanished => self.note(DiffClass::Changed, &e.rel, format!("deleted on the {side} during verify")),
                _ => {}
            }
        }
        if matches!(e.src, Slot::Failed(_) | Slot::Vanished) || matches!(e.dst, Slot::Failed(_) | Slot::Vanished) {
            return;
        }
        match (self.visible(&e.src), self.visible(&e.dst)) {
            (Some(s), Some(d)) => {
                self.compared += 1;
                if s.data != d.data {
                    let at =
                        s.data.iter().zip(&d.data).position(|(a, b)| a != b).unwrap_or(s.data.len().min(d.data.len()));
                    let from = at.saturating_sub(8);
                    let detail = format!(
                        "{} / {} bytes, first difference at byte {at}: source {} / destination {}",
                        s.data.len(),
                        d.data.len(),
                        preview(&s.data[from.min(s.data.len())..], 40),
                        preview(&d.data[from.min(d.data.len())..], 40)
                    );
                    self.note(DiffClass::DataDiffers, &e.rel, detail);
                }
                let masked = [(&s.acl, "source"), (&d.acl, "destination")]
                    .into_iter()
                    .find(|(acl, _)| self.acl && acl_masked(acl));
                if let Some((_, side)) = masked {
                    let detail = format!("ACL hidden on the {side}: digest ids show only with ADMIN permission");
                    self.note(DiffClass::Unreadable, &e.rel, detail);
                } else if self.acl && !acl_equal(&s.acl, &d.acl) {
                    let show = |a: &[zookeeper_client::Acl]| {
                        canonical_acl(a).iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
                    };
                    let detail = format!("source [{}] / destination [{}]", show(&s.acl), show(&d.acl));
                    self.note(DiffClass::AclDiffers, &e.rel, detail);
                }
                let (next_s, next_d) = (next_sequence(&s.stat), next_sequence(&d.stat));
                if next_d < next_s {
                    let detail = format!("next sequential number: source {next_s} / destination {next_d}");
                    self.note(DiffClass::CounterBehind, &e.rel, detail);
                }
            }
            (Some(_), None) => self.note(DiffClass::MissingOnDst, &e.rel, String::new()),
            (None, Some(_)) => self.note(DiffClass::ExtraOnDst, &e.rel, String::new()),
            (None, None) => {}
        }
    }
}
