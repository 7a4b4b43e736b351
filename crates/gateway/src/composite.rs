//! Composite requests: one client request served by several inner calls (the model selector,
//! orchestrations).
//!
//! A composite counts once: it takes the caller's request-rate and concurrency limits (key,
//! user, team) once, for the whole, and reserves its budget once. Its inner calls are
//! ordinary [`Gateway::complete`](crate::Gateway::complete) calls with a child context: they
//! take token, model, global and provider limits, and draw their worst case from the parent's
//! reservation ([`Drawdown`]) instead of reserving on the caller's budgets again, so a key
//! with `max_parallel: 1` can run a five-call orchestration without waiting on itself.
//!
//! The parent writes its own record, with no cost of its own (its children carry the cost):
//! requests are counted from client rows, spend from leaf rows, and nothing twice.

use crate::ctx::CallCtx;
use crate::limit::{BudgetHold, Hold};
use crate::Gateway;
use plexus_core::log::RequestRecord;
use plexus_core::{ApiError, ErrorCode};
use plexus_protocol::money::Nanos;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// An amount as the tally keeps it: nano-dollars, never negative.
fn nanos(amount: Nanos) -> u64 {
    u64::try_from(amount.0).unwrap_or(0)
}

fn amount(nanos: u64) -> Nanos {
    Nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
}

/// A parent's budget reservation that its inner calls draw from, and the tally of what they
/// spent, in nano-dollars (exact). Without a budget it only tallies.
#[derive(Debug, Default)]
pub struct Drawdown {
    /// What the parent reserved; `None`: no budget applies.
    limit: Option<u64>,
    /// Held by inner calls in flight (their worst case) plus spent by finished ones.
    drawn: AtomicU64,
    spent: AtomicU64,
}

impl Drawdown {
    pub fn new(limit: Option<Nanos>) -> Arc<Drawdown> {
        Arc::new(Drawdown {
            limit: limit.map(nanos),
            ..Drawdown::default()
        })
    }

    /// Whether a budget applies (inner calls then need a known price).
    pub fn limited(&self) -> bool {
        self.limit.is_some()
    }

    /// Takes `worst_case` from the reservation, or refuses when what is left is not enough.
    pub fn draw(self: &Arc<Self>, worst_case: Nanos) -> Result<Draw, ApiError> {
        let worst = nanos(worst_case);
        if let Some(limit) = self.limit {
            let mut current = self.drawn.load(Ordering::Acquire);
            loop {
                let next = current.saturating_add(worst);
                if next > limit {
                    return Err(ApiError::new(
                        ErrorCode::BudgetExceeded,
                        format!(
                            "This step could cost up to ${}, but only ${} of the request's ${} reservation is left.",
                            worst_case,
                            amount(limit.saturating_sub(current)),
                            amount(limit)
                        ),
                    ));
                }
                match self.drawn.compare_exchange_weak(
                    current,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(now) => current = now,
                }
            }
        } else {
            self.drawn.fetch_add(worst, Ordering::AcqRel);
        }
        Ok(Draw {
            from: self.clone(),
            worst,
        })
    }

    /// What the inner calls spent so far.
    pub fn spent(&self) -> Nanos {
        amount(self.spent.load(Ordering::Acquire))
    }

    /// What is left of the reservation (`None` without one).
    pub fn remaining(&self) -> Option<Nanos> {
        self.limit
            .map(|l| amount(l.saturating_sub(self.drawn.load(Ordering::Acquire))))
    }
}

/// One inner call's share of a [`Drawdown`]: its worst case until it settles.
#[derive(Debug)]
pub struct Draw {
    from: Arc<Drawdown>,
    worst: u64,
}

impl Draw {
    /// Replaces the worst case with the real cost.
    pub fn settle(mut self, actual_cost: Nanos) {
        let actual = nanos(actual_cost);
        let worst = std::mem::take(&mut self.worst);
        self.from.drawn.fetch_add(actual, Ordering::AcqRel);
        self.from.drawn.fetch_sub(worst, Ordering::AcqRel);
        self.from.spent.fetch_add(actual, Ordering::AcqRel);
    }
}

impl Drop for Draw {
    fn drop(&mut self) {
        // Not settled: nothing was spent.
        self.from.drawn.fetch_sub(self.worst, Ordering::AcqRel);
    }
}

/// A composite request in progress: its limits and reservation, and its own record, written
/// when it finishes (or, if it is dropped, as cancelled).
pub struct Composite {
    gateway: Gateway,
    ctx: CallCtx,
    drawdown: Arc<Drawdown>,
    holds: Vec<Hold>,
    budget: Option<BudgetHold>,
    record: Option<Box<RequestRecord>>,
    next_step: AtomicU32,
}

impl Gateway {
    /// Admits a composite request for `model` (`endpoint` names it in the log; the caller checks
    /// that the key may use it): the caller's
    /// request-rate and concurrency limits once, and a budget reservation of `reserve` that
    /// the inner calls draw from (when a budget applies). `cap`, the composite's own budget,
    /// bounds the inner calls' draws when no budget of the caller's does.
    pub async fn begin_composite(
        &self,
        ctx: &CallCtx,
        endpoint: &'static str,
        model: &str,
        stream: bool,
        reserve: Nanos,
        cap: Option<Nanos>,
    ) -> Result<Composite, ApiError> {
        let mut record = crate::record::base(self, ctx, endpoint, model, stream);
        let admitted = self.admit_composite(ctx, reserve).await;
        match admitted {
            Ok((holds, budget, limit)) => Ok(Composite {
                gateway: self.clone(),
                ctx: ctx.clone(),
                drawdown: Drawdown::new(limit.or(cap)),
                holds,
                budget,
                record: Some(record),
                next_step: AtomicU32::new(0),
            }),
            Err(e) => {
                record.status = e.status();
                record.error_code = Some(e.code.as_str());
                crate::record::write(self, record, None).await;
                Err(e)
            }
        }
    }

    async fn admit_composite(
        &self,
        ctx: &CallCtx,
        reserve: Nanos,
    ) -> Result<(Vec<Hold>, Option<BudgetHold>, Option<Nanos>), ApiError> {
        let rt = self.runtime();
        let mut subjects = self
            .auth()
            .rate_subjects(&ctx.principal)
            .await
            .map_err(crate::error::from_store)?;
        // The whole counts as one request; its inner calls count their tokens.
        subjects.retain_mut(|s| {
            s.quota.tpm = None;
            s.quota.tpd = None;
            !s.quota.is_empty()
        });
        let on_error = rt.config.limits.on_redis_error;
        let (hold, _) = self.limiter().acquire(&subjects, 0, on_error).await?;
        let budget = self.reserve_own_budget(ctx, reserve).await;
        let holds: Vec<Hold> = hold.into_iter().collect();
        match budget {
            Ok(Some(b)) => Ok((holds, Some(b), Some(reserve))),
            Ok(None) => Ok((holds, None, None)),
            Err(e) => {
                let now = self.limiter().now_ns();
                for h in holds {
                    h.settle(Some(0), now);
                }
                Err(e)
            }
        }
    }
}

impl Composite {
    /// The context of the next inner call.
    pub fn child(&self) -> Result<CallCtx, ApiError> {
        let step = self.next_step.fetch_add(1, Ordering::Relaxed);
        self.ctx.child(step, Some(self.drawdown.clone()))
    }

    /// The composite's own request id (its children's parent).
    pub fn request_id(&self) -> &str {
        &self.ctx.request_id
    }

    /// What the inner calls spent so far: the composite's cost.
    pub fn spent(&self) -> Nanos {
        self.drawdown.spent()
    }

    /// What is left of the reservation the inner calls draw from (`None`: unlimited).
    pub fn remaining(&self) -> Option<Nanos> {
        self.drawdown.remaining()
    }

    /// Keeps `json` (an orchestration's result and evidence graph) on the composite's record.
    pub fn set_orchestration(&mut self, json: String) {
        if let Some(r) = &mut self.record {
            r.orchestration = Some(json);
        }
    }

    /// Records the composite's outcome (`served_by`: what answered, for the log) and settles
    /// its limits and reservation with what its children spent.
    pub async fn finish(mut self, status: u16, error: Option<&ApiError>, served_by: &str) {
        if let Some(record) = self.settle(status, error, served_by) {
            crate::record::write(&self.gateway, record, None).await;
        }
    }

    fn settle(
        &mut self,
        status: u16,
        error: Option<&ApiError>,
        served_by: &str,
    ) -> Option<Box<RequestRecord>> {
        let mut record = self.record.take()?;
        let now = self.gateway.limiter().now_ns();
        for h in self.holds.drain(..) {
            h.settle(None, now);
        }
        if let Some(b) = self.budget.take() {
            b.settle(self.drawdown.spent());
        }
        record.status = status;
        record.error_code = error.map(|e| e.code.as_str());
        let (provider, upstream) = served_by.split_once('/').unwrap_or(("", served_by));
        record.provider = provider.to_owned();
        record.upstream_model = upstream.to_owned();
        // The children carry the cost; the parent row none, so spend is never counted twice.
        record.cost = Nanos::ZERO;
        record.latency_ms = self.ctx.started.elapsed().as_millis() as u64;
        Some(record)
    }
}

impl Drop for Composite {
    fn drop(&mut self) {
        if let Some(record) = self.settle(499, None, "") {
            self.gateway.writer().record_detached(record);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn usd(v: f64) -> Nanos {
        Nanos::from_usd(v)
    }

    #[test]
    fn draws_hold_the_reservation_and_settle_to_the_real_cost() {
        let d = Drawdown::new(Some(usd(1.0)));
        let a = d.draw(usd(0.6)).unwrap();
        let err = d.draw(usd(0.5)).unwrap_err();
        assert_eq!(err.code, ErrorCode::BudgetExceeded);
        assert!(
            err.message
                .contains("up to $0.5, but only $0.4 of the request's $1 reservation"),
            "{}",
            err.message
        );
        a.settle(usd(0.1));
        assert_eq!(d.spent(), usd(0.1));
        let b = d.draw(usd(0.8)).unwrap();
        drop(b);
        // A dropped draw gives its worst case back and spends nothing.
        let _c = d.draw(usd(0.9)).unwrap();
        assert_eq!(d.spent(), usd(0.1));
    }

    #[test]
    fn without_a_budget_draws_only_tally() {
        let d = Drawdown::new(None);
        assert!(!d.limited());
        for _ in 0..3 {
            d.draw(usd(100.0)).unwrap().settle(usd(0.0000207));
        }
        assert_eq!(d.spent(), Nanos(62_100), "exact");
        assert_eq!(d.spent().to_string(), "0.0000621");
    }
}
