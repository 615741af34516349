//! View change: the view timer, view-change and new-view messages, and entering a new view.
//!
//! A replica that waits a view timeout without a commit while something waits to be ordered
//! broadcasts a [`ViewChange`] for the next view and stops taking normal-case messages. It joins
//! a higher view as soon as `f + 1` replicas ask for one (one of them is correct). Once a quorum
//! asks for its view, the new primary sends a [`NewView`] proving what it proposes, and the
//! others start a timer: if the new view does not come in time they move on to the next one,
//! with the timeout doubled (the exponential back-off that gives liveness once delays are
//! bounded). A replica still asking for a view the others entered is sent the new view again.

use std::time::Duration;

use primitives::{NodeId, time::Instant};
use tracing::{debug, error, info, warn};

use super::{Replica, ReplicaEvent};
use crate::{
    error::RejectReason,
    evidence::{Evidence, EvidenceKind, PbftSignature, Signed},
    log::{Held, Proposal, Verdict},
    message::{Message, NewView, PrePrepare, PreparedProof, ViewChange, Vote},
    persist::Record,
    value::Value,
    view_change::{NewViewPlan, derive_new_view, verify_new_view, verify_view_change},
};

impl<V: Value> Replica<V> {
    /// The verified view change `sender` sent for `view`, if any.
    fn view_change_of(&self, sender: u16, view: u64) -> Option<&ViewChange<V>> {
        self.view_changes.get(&sender)?.get(&view)
    }

    /// How many validators asked for `view`.
    fn asking_for(&self, view: u64) -> usize {
        self.view_changes
            .values()
            .filter(|views| views.contains_key(&view))
            .count()
    }

    /// Keeps a verified view change, dropping the sender's lowest beyond the bound.
    pub(super) fn keep_view_change(&mut self, view_change: ViewChange<V>) {
        let views = self.view_changes.entry(view_change.replica).or_default();
        views.insert(view_change.view, view_change);
        while views.len() > super::VIEW_CHANGES_PER_SENDER {
            views.pop_first();
        }
    }

    /// A peer sends normal-case messages of `view`, beyond the next one. Once `f + 1` peers
    /// do, this replica missed view changes: it asks for the view `f + 1` of them are at or
    /// beyond, and replicas already there answer with the new view. One of the `f + 1` is
    /// correct, so no faulty replica can drag this one along alone.
    pub(super) fn note_future_view(&mut self, sender: u16, view: u64) {
        let seen = self.peer_views.entry(sender).or_insert(0);
        if *seen >= view {
            return;
        }
        *seen = view;
        let mut ahead: Vec<u64> = self
            .peer_views
            .values()
            .copied()
            .filter(|seen| *seen > self.view)
            .collect();
        let f = self.validators.f();
        if ahead.len() > f {
            ahead.sort_unstable_by(|a, b| b.cmp(a));
            let target = ahead[f];
            self.peer_views.clear();
            self.start_view_change(self.time_last, target);
        }
    }

    /// The view timeout now: the base, doubled for each view change in a row without a commit.
    pub(super) fn view_timeout(&self) -> Duration {
        let doublings = self.views_without_progress.min(32);
        let micros = self
            .config
            .view_timeout_us
            .saturating_mul(1u64 << doublings)
            .min(self.config.view_timeout_max_us);
        Duration::from_micros(micros)
    }

    /// Arms the view timer while something waits to be ordered (the application's backlog, or a
    /// proposal not yet decided) and re-arms it on every commit; disarms it when nothing waits.
    /// During a view change the timer is the view change's own.
    pub(super) fn arm_timer(&mut self, now: Instant) {
        if !self.active {
            return;
        }
        let waiting = self.backlog
            || self
                .slots
                .range(self.last_committed + 1..)
                .any(|(_, slot)| slot.proposal.is_some());
        if !waiting {
            self.timer = None;
            return;
        }
        match self.timer {
            Some((_, mark)) if mark == self.last_committed => {}
            _ => self.timer = Some((now + self.view_timeout(), self.last_committed)),
        }
    }

    /// The view timer or the fetch timer fired.
    pub(super) fn on_timeout(&mut self, now: Instant) {
        if let Some((deadline, peer)) = self.fetch
            && now >= deadline
        {
            self.fetch = None;
            if self.lagging() {
                self.request_fetch(now, Some(peer));
            }
        }
        let Some((deadline, mark)) = self.timer else {
            return;
        };
        if now < deadline {
            return;
        }
        self.timer = None;
        if self.active {
            if self.last_committed != mark {
                return; // Progress since: `arm_timer` starts a new period.
            }
            if self.lagging() && self.gap_fetched != Some(mark) {
                // The others are ahead: catch up before suspecting the primary.
                self.gap_fetched = Some(mark);
                self.request_fetch(now, None);
                self.timer = Some((now + self.view_timeout(), mark));
                return;
            }
            self.start_view_change(now, self.view + 1);
        } else if self.view_change_quorum {
            // A quorum asked for this view and its primary did not start it in time.
            self.start_view_change(now, self.view + 1);
        } else {
            // Too few replicas asked for this view yet: ask again, in case ours was lost. The
            // others may also have decided more meanwhile, without this replica.
            if let Some(own) = self.view_change_of(self.index, self.view).cloned() {
                self.broadcast(&Message::ViewChange(own));
            }
            let avoid = self.fetch.map(|(_, peer)| peer);
            self.request_fetch(now, avoid);
            self.timer = Some((now + self.view_timeout(), self.last_committed));
        }
    }

    /// Leaves the current view for `view`: broadcasts a view change carrying the stable
    /// checkpoint and every prepared proof above it, and takes no normal-case message until the
    /// new view starts.
    pub(super) fn start_view_change(&mut self, now: Instant, view: u64) {
        assert!(view > self.view, "views only move up");
        warn!(target: "consensus", replica = self.index, from = self.view, to = view,
            "starting a view change");
        self.view = view;
        self.active = false;
        self.view_change_quorum = false;
        self.new_view = None;
        self.views_without_progress = self.views_without_progress.saturating_add(1);
        self.stats.view_changes_started += 1;
        for held in self.future.values_mut() {
            held.retain(|message| super::normal_case_view(message).is_some_and(|v| v >= view));
        }
        let prepared: Vec<PreparedProof<V>> = self
            .slots
            .range(self.low_watermark + 1..)
            .filter_map(|(_, slot)| slot.prepared.clone())
            .collect();
        let own = ViewChange::in_epoch(
            &self.secret,
            view,
            self.index,
            self.validators.start(),
            self.stable_proof.clone(),
            prepared,
        );
        // Before the view change goes out: a restarted replica never votes in a view it left.
        self.record(|| Record::ViewChange(own.clone()));
        self.keep_view_change(own.clone());
        self.broadcast(&Message::ViewChange(own));
        self.timer = Some((now + self.view_timeout(), self.last_committed));
        self.view_change_progress(now);
    }

    pub(super) fn handle_view_change(
        &mut self,
        sender: u16,
        view_change: ViewChange<V>,
    ) -> Result<(), RejectReason> {
        let now = self.time_last;
        let lowest_wanted = if self.active {
            self.view + 1
        } else {
            self.view
        };
        if view_change.view < lowest_wanted {
            // The sender is stuck in a view this replica left: it lost the new view, or this
            // replica's view change for that view. Messages are not retransmitted below us, so
            // hand it what it is missing.
            let reply = if self.active && view_change.view == self.view {
                self.new_view.clone().map(Message::NewView)
            } else {
                None
            };
            let reply = reply.or_else(|| {
                self.view_change_of(self.index, view_change.view)
                    .cloned()
                    .map(Message::ViewChange)
            });
            let base = Duration::from_micros(self.config.view_timeout_us);
            let replied_lately = self
                .stale_replies
                .get(&sender)
                .is_some_and(|(view, at)| *view == view_change.view && now < *at + base);
            if let Some(reply) = reply.filter(|_| !replied_lately) {
                self.stale_replies.insert(sender, (view_change.view, now));
                let to = self.validators.validators()[usize::from(sender)].id;
                let bytes = primitives::Encode::to_bytes(&reply);
                self.transmits
                    .push_back(primitives::machine::Transmit { to, bytes });
                return Ok(());
            }
            return Err(RejectReason::OldView {
                view: view_change.view,
                current: self.view,
            });
        }
        if self.view_change_of(sender, view_change.view).is_some() {
            return Err(RejectReason::Duplicate {
                what: "view change",
                sequence: view_change.view,
            });
        }
        let cached = view_change
            .prepared
            .iter()
            .filter(|proof| self.proof_cache.contains(*proof))
            .count();
        self.stats.signature_checks += 2 + 2 * (view_change.prepared.len() - cached) as u64;
        verify_view_change(
            &self.validators,
            sender,
            &view_change,
            &mut self.proof_cache,
        )?;
        debug!(target: "consensus", replica = self.index, sender, view = view_change.view,
            "view change");
        self.detect_equivocation(&view_change);
        self.keep_view_change(view_change);
        self.view_change_progress(now);
        Ok(())
    }

    /// A view change's prepared proofs carry pre-prepares signed by past primaries: one that
    /// contradicts the pre-prepare this replica took for the same view and sequence proves the
    /// primary equivocated (both signatures are checked by then).
    fn detect_equivocation(&mut self, view_change: &ViewChange<V>) {
        for proof in &view_change.prepared {
            let theirs = &proof.pre_prepare;
            let Some(slot) = self.slots.get(&theirs.sequence) else {
                continue;
            };
            let Some(ours) = slot.proposal.as_ref() else {
                continue;
            };
            let their_digest = theirs.digest();
            if ours.pre_prepare.view != theirs.view || ours.digest == their_digest {
                continue;
            }
            let offender = u16::try_from(self.validators.primary_index(theirs.view))
                .expect("validator indices fit u16");
            if slot
                .evidence
                .contains(&(EvidenceKind::PrePrepare, offender))
            {
                continue;
            }
            let evidence = Evidence::new(
                EvidenceKind::PrePrepare,
                offender,
                theirs.view,
                theirs.sequence,
                Signed {
                    digest: ours.digest,
                    signature: PbftSignature::Operator(ours.pre_prepare.signature),
                },
                Signed {
                    digest: their_digest,
                    signature: PbftSignature::Operator(theirs.signature),
                },
            );
            self.emit_evidence(evidence);
        }
    }

    /// Acts on the view changes held: joins a higher view that `f + 1` replicas ask for; once a
    /// quorum asks for this replica's view, starts the new-view timer, or, on its primary,
    /// sends the new view.
    fn view_change_progress(&mut self, now: Instant) {
        let mut higher: Vec<u64> = self
            .view_changes
            .iter()
            .filter(|(sender, _)| **sender != self.index)
            .filter_map(|(_, views)| views.keys().next_back().copied())
            .filter(|view| *view > self.view)
            .collect();
        let f = self.validators.f();
        if higher.len() > f {
            higher.sort_unstable_by(|a, b| b.cmp(a));
            // The highest view that at least `f + 1` of them ask for, or a higher one.
            self.start_view_change(now, higher[f]);
            return;
        }
        if self.active {
            return;
        }
        if self.asking_for(self.view) < self.validators.quorum() {
            return;
        }
        if !self.view_change_quorum {
            self.view_change_quorum = true;
            self.timer = Some((now + self.view_timeout(), self.last_committed));
        }
        if self.validators.primary_index(self.view) == self.index() && self.new_view.is_none() {
            self.send_new_view(now);
        }
    }

    /// As the new primary: derives the new view from a quorum of view changes (its own first),
    /// broadcasts it and enters it.
    fn send_new_view(&mut self, now: Instant) {
        let quorum = self.validators.quorum();
        let view = self.view;
        let own = self
            .view_change_of(self.index, view)
            .cloned()
            .expect("the new primary asked for its view");
        let view_changes: Vec<ViewChange<V>> = std::iter::once(own)
            .chain(
                self.view_changes
                    .iter()
                    .filter(|(sender, _)| **sender != self.index)
                    .filter_map(|(_, views)| views.get(&view).cloned()),
            )
            .take(quorum)
            .collect();
        let plan = derive_new_view(&view_changes);
        let pre_prepares = plan
            .proposals
            .iter()
            .map(|(sequence, value)| {
                PrePrepare::proposing(&self.operator, self.view, *sequence, value.clone())
            })
            .collect();
        let new_view = NewView::new(&self.secret, self.view, view_changes, pre_prepares);
        self.broadcast(&Message::NewView(new_view.clone()));
        self.stats.new_views_sent += 1;
        info!(target: "consensus", replica = self.index, view = self.view,
            proposals = plan.proposals.len(), "sent the new view");
        self.enter_new_view(now, new_view, plan);
    }

    pub(super) fn handle_new_view(
        &mut self,
        sender: u16,
        new_view: NewView<V>,
    ) -> Result<(), RejectReason> {
        let now = self.time_last;
        if new_view.view < self.view {
            return Err(RejectReason::OldView {
                view: new_view.view,
                current: self.view,
            });
        }
        if new_view.view == self.view && self.active {
            return Err(RejectReason::Duplicate {
                what: "new view",
                sequence: new_view.view,
            });
        }
        let checks: usize = new_view
            .view_changes
            .iter()
            .filter(|view_change| {
                self.view_change_of(view_change.replica, view_change.view) != Some(view_change)
            })
            .map(|view_change| 2 + 2 * view_change.prepared.len())
            .sum();
        self.stats.signature_checks += (1 + checks + new_view.pre_prepares.len()) as u64;
        let known = &self.view_changes;
        let plan = verify_new_view(
            &self.validators,
            sender,
            &new_view,
            |view_change| {
                known
                    .get(&view_change.replica)
                    .and_then(|views| views.get(&view_change.view))
                    == Some(view_change)
            },
            &mut self.proof_cache,
        )?;
        self.enter_new_view(now, new_view, plan);
        Ok(())
    }

    /// Enters the view of `new_view` (verified, or built here): adopts its stable checkpoint,
    /// forgets the old view's votes, takes its pre-prepares as the primary's proposals (asking
    /// the application about values it has not already found valid), and replays what arrived
    /// early for the view.
    fn enter_new_view(&mut self, now: Instant, new_view: NewView<V>, plan: NewViewPlan<V>) {
        let view = new_view.view;
        self.view = view;
        self.active = true;
        self.view_change_quorum = false;
        self.timer = None;
        self.stats.new_views_entered += 1;
        self.record(|| Record::View { view, active: true });
        let own = self.index;
        for (sender, views) in &mut self.view_changes {
            if *sender != own {
                views.retain(|asked, _| *asked >= view);
            }
        }
        self.view_changes.retain(|_, views| !views.is_empty());
        if plan.stable > self.low_watermark {
            let source = &new_view.view_changes[plan.stable_from];
            let (history, proof, from) =
                (source.history, source.stable_proof.clone(), source.replica);
            self.adopt_stable(now, plan.stable, history, proof, from);
        }
        // What this replica already found valid, so that it does not ask again.
        let validated: std::collections::BTreeMap<u64, primitives::B256> = self
            .slots
            .iter()
            .filter_map(|(sequence, slot)| {
                let proposal = slot.proposal.as_ref()?;
                matches!(proposal.verdict, Verdict::Own | Verdict::Valid)
                    .then_some((*sequence, proposal.digest))
            })
            .collect();
        for slot in self.slots.values_mut() {
            slot.leave_view();
        }
        let primary = self.validators.primary_index(view) == self.index();
        for pre_prepare in new_view.pre_prepares.iter().cloned() {
            let sequence = pre_prepare.sequence;
            if sequence <= self.low_watermark {
                continue; // Decided and checkpointed here already.
            }
            let digest = pre_prepare.digest();
            let slot = self.slots.entry(sequence).or_default();
            let decided = slot
                .certificate
                .as_ref()
                .and(slot.proposal.as_ref())
                .map(|proposal| proposal.digest);
            if decided.is_some_and(|decided| decided != digest) {
                // Only more than `f` faulty replicas can make a new view contradict a decision.
                error!(target: "consensus", replica = self.index, sequence,
                    "new view re-proposes another value than the one decided here");
                continue;
            }
            let verdict = if primary {
                Verdict::Own
            } else if pre_prepare.value.is_none()
                || decided.is_some()
                || validated.get(&sequence) == Some(&digest)
            {
                Verdict::Valid
            } else {
                Verdict::Pending
            };
            let ask = (verdict == Verdict::Pending)
                .then(|| pre_prepare.value.clone())
                .flatten();
            if matches!(verdict, Verdict::Own | Verdict::Valid) && self.durable {
                // Before its prepare (or, on the primary, the new view) goes out.
                self.persist
                    .push_back(Record::Proposal(pre_prepare.clone()));
            }
            slot.proposal = Some(Proposal {
                pre_prepare,
                digest,
                verdict,
            });
            if verdict == Verdict::Valid {
                let vote = Vote::prepare(&self.operator, view, sequence, digest, self.index);
                slot.prepares.insert(
                    self.index,
                    Held {
                        vote: vote.clone(),
                        verified: true,
                    },
                );
                self.stats.prepares_sent += 1;
                self.broadcast(&Message::Prepare(vote));
            }
            if let Some(value) = ask {
                self.events
                    .push_back(ReplicaEvent::Verify { sequence, value });
            }
        }
        let highest = plan
            .proposals
            .last()
            .map_or(plan.stable, |(sequence, _)| *sequence);
        self.next_sequence = highest.max(self.last_committed).max(self.low_watermark) + 1;
        let primary_id = self.validators.primary(view).id;
        info!(target: "consensus", replica = self.index, view, primary = %primary_id,
            "entered a new view");
        self.new_view = Some(new_view);
        self.events.push_back(ReplicaEvent::ViewEntered {
            view,
            primary: primary_id,
        });
        self.replay_future();
        let sequences: Vec<u64> = self.slots.keys().copied().collect();
        for sequence in sequences {
            self.advance(sequence);
        }
    }

    /// Feeds the messages held for the view just entered, in the order they came; drops those
    /// of older views and keeps those of later ones.
    fn replay_future(&mut self) {
        let view = self.view;
        let mut ready: Vec<(u16, Message<V>)> = Vec::new();
        for (sender, held) in &mut self.future {
            let (now, later): (Vec<_>, Vec<_>) = held
                .drain(..)
                .filter(|message| super::normal_case_view(message).is_some_and(|v| v >= view))
                .partition(|message| super::normal_case_view(message) == Some(view));
            ready.extend(now.into_iter().map(|message| (*sender, message)));
            held.extend(later);
        }
        self.future.retain(|_, held| !held.is_empty());
        for (sender, message) in ready {
            let id: NodeId = self.validators.validators()[usize::from(sender)].id;
            if let Err(reason) = self.dispatch(id, sender, message) {
                self.stats.rejected.count(&reason);
            }
        }
    }
}
