//! The cost guard (CoCo spec §3.2) as pure logic: a per-request ceiling and a daily budget that
//! resets when the UTC date advances. The server owns the instance (behind a mutex), passes the
//! current UTC date in, and exports the figures; this module never reads a clock.
//!
//! # Decisions
//!
//! * Money is counted in integer micro-dollars, so a day of small charges adds up exactly.
//! * [`CostGuard::reserve`] checks and records in one step, so two concurrent requests under one
//!   lock cannot both pass a check that only one of them fits in. [`CostGuard::settle`] replaces
//!   a reservation by the actual cost once known.
//! * The refusal messages are CoCo's (`Estimated cost $X exceeds per-request limit $Y`,
//!   `Daily budget $B would be exceeded`), so clients that match on them keep working.
//! * CoCo quotes three different ceilings ($0.05, $0.15, $0.25). [`CostGuard::coco_defaults`]
//!   is CoCo's `CostGuard` (0.25 per request, 1000 per day); the server chooses its own.

use chrono::NaiveDate;

/// An amount of US dollars in micro-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Usd(u64);

impl Usd {
    /// From dollars; refuses negative, non-finite or absurd (> 10^9) amounts.
    pub fn from_dollars(d: f64) -> Result<Self, CostError> {
        if !d.is_finite() || !(0.0..=1e9).contains(&d) {
            return Err(CostError::InvalidAmount);
        }
        Ok(Self((d * 1e6).round() as u64))
    }

    /// From micro-dollars.
    pub const fn from_micros(m: u64) -> Self {
        Self(m)
    }

    /// Micro-dollars.
    pub const fn micros(self) -> u64 {
        self.0
    }

    /// Dollars.
    pub fn dollars(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

/// Errors configuring or using the guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    /// A negative, non-finite or absurd amount.
    #[error("cost amounts must be finite, non-negative and at most 1e9 dollars")]
    InvalidAmount,
    /// Ceiling or budget zero, or a ceiling above the budget.
    #[error("cost guard: the per-request ceiling must be positive and not above the daily budget")]
    InvalidLimits,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostDenied {
    /// The estimate alone is above the per-request ceiling.
    #[error("Estimated cost ${:.4} exceeds per-request limit ${:.4}", estimated.dollars(), limit.dollars())]
    PerRequest {
        /// The estimate.
        estimated: Usd,
        /// The ceiling.
        limit: Usd,
    },
    /// Today's spend plus the estimate would pass the daily budget.
    #[error("Daily budget ${:.2} would be exceeded", budget.dollars())]
    DailyBudget {
        /// The budget.
        budget: Usd,
    },
}

/// The guard.
#[derive(Debug, Clone)]
pub struct CostGuard {
    max_per_request: Usd,
    daily_budget: Usd,
    day: Option<NaiveDate>,
    spent: Usd,
    refused: u64,
}

impl CostGuard {
    /// A guard with a per-request ceiling and a daily budget.
    pub fn new(max_per_request: Usd, daily_budget: Usd) -> Result<Self, CostError> {
        if max_per_request.0 == 0 || daily_budget.0 == 0 || max_per_request > daily_budget {
            return Err(CostError::InvalidLimits);
        }
        Ok(Self {
            max_per_request,
            daily_budget,
            day: None,
            spent: Usd(0),
            refused: 0,
        })
    }

    /// CoCo's `CostGuard` defaults: $0.25 per request, $1000 per day.
    pub fn coco_defaults() -> Self {
        Self {
            max_per_request: Usd(250_000),
            daily_budget: Usd(1_000_000_000),
            day: None,
            spent: Usd(0),
            refused: 0,
        }
    }

    fn roll(&mut self, today: NaiveDate) {
        if self.day != Some(today) {
            // A clock that goes backwards does not reopen yesterday's budget: only a later date
            // resets.
            if self.day.is_none_or(|d| today > d) {
                self.day = Some(today);
                self.spent = Usd(0);
            }
        }
    }

    /// Would a request of `estimated` pass today? Does not record anything.
    pub fn check(&self, estimated: Usd, today: NaiveDate) -> Result<(), CostDenied> {
        if estimated > self.max_per_request {
            return Err(CostDenied::PerRequest {
                estimated,
                limit: self.max_per_request,
            });
        }
        let spent = if self.day.is_some_and(|d| today > d) {
            Usd(0)
        } else {
            self.spent
        };
        if spent.0.saturating_add(estimated.0) > self.daily_budget.0 {
            return Err(CostDenied::DailyBudget {
                budget: self.daily_budget,
            });
        }
        Ok(())
    }

    /// Checks and, if allowed, records `estimated` as spent.
    pub fn reserve(&mut self, estimated: Usd, today: NaiveDate) -> Result<(), CostDenied> {
        self.roll(today);
        match self.check(estimated, today) {
            Ok(()) => {
                self.spent = Usd(self.spent.0.saturating_add(estimated.0));
                Ok(())
            }
            Err(e) => {
                self.refused += 1;
                Err(e)
            }
        }
    }

    /// Replaces a reservation of `reserved` by the `actual` cost (same day).
    pub fn settle(&mut self, reserved: Usd, actual: Usd, today: NaiveDate) {
        self.roll(today);
        self.spent = Usd(self
            .spent
            .0
            .saturating_sub(reserved.0)
            .saturating_add(actual.0));
    }

    /// Records a cost without a check (CoCo's `record_spend`).
    pub fn record(&mut self, cost: Usd, today: NaiveDate) {
        self.roll(today);
        self.spent = Usd(self.spent.0.saturating_add(cost.0));
    }

    /// Spent on `today` (zero if the guard's day is earlier).
    pub fn spent_today(&self, today: NaiveDate) -> Usd {
        if self.day == Some(today) {
            self.spent
        } else {
            Usd(0)
        }
    }

    /// Requests refused since creation.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The ceiling.
    pub fn max_per_request(&self) -> Usd {
        self.max_per_request
    }

    /// The budget.
    pub fn daily_budget(&self) -> Usd {
        self.daily_budget
    }
}

/// CoCo's per-operation cost estimates (spec §3.2 CostTracker) plus $0.01 per 1,000 tokens.
pub fn estimate(operation: &str, tokens: u64) -> Usd {
    let base: u64 = match operation {
        "care_gap_detection" => 1_800,
        "readmission_prediction" => 3_100,
        "clinical_summarization" => 34_000,
        "batch_prediction" => 2_500,
        "document_retrieval" => 500,
        "phi_detection" => 200,
        _ => 1_000,
    };
    // $0.01 per 1000 tokens = 10 micro-dollars per token.
    Usd(base.saturating_add(tokens.saturating_mul(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn per_request_ceiling_refuses_with_cocos_message() {
        let g = CostGuard::coco_defaults();
        let e = g
            .check(Usd::from_dollars(0.30).unwrap(), d("2026-01-01"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Estimated cost $0.3000 exceeds per-request limit $0.2500"
        );
        assert!(
            g.check(Usd::from_dollars(0.25).unwrap(), d("2026-01-01"))
                .is_ok()
        );
    }

    #[test]
    fn daily_budget_is_enforced_and_resets_on_a_later_utc_date() {
        let mut g = CostGuard::new(
            Usd::from_dollars(0.5).unwrap(),
            Usd::from_dollars(1.0).unwrap(),
        )
        .unwrap();
        let day = d("2026-01-01");
        g.reserve(Usd::from_dollars(0.5).unwrap(), day).unwrap();
        g.reserve(Usd::from_dollars(0.5).unwrap(), day).unwrap();
        let e = g.reserve(Usd::from_micros(1), day).unwrap_err();
        assert_eq!(e.to_string(), "Daily budget $1.00 would be exceeded");
        assert_eq!(g.refused(), 1);
        assert_eq!(g.spent_today(day), Usd::from_dollars(1.0).unwrap());
        // The clock going backwards does not reopen the budget.
        assert!(g.reserve(Usd::from_micros(1), d("2025-12-31")).is_err());
        g.reserve(Usd::from_dollars(0.5).unwrap(), d("2026-01-02"))
            .unwrap();
        assert_eq!(
            g.spent_today(d("2026-01-02")),
            Usd::from_dollars(0.5).unwrap()
        );
    }

    #[test]
    fn settle_replaces_the_reservation_by_the_actual_cost() {
        let mut g = CostGuard::coco_defaults();
        let day = d("2026-01-01");
        let est = estimate("clinical_summarization", 2000);
        assert_eq!(est, Usd::from_dollars(0.054).unwrap());
        g.reserve(est, day).unwrap();
        g.settle(est, Usd::from_dollars(0.04).unwrap(), day);
        assert_eq!(g.spent_today(day), Usd::from_dollars(0.04).unwrap());
    }

    #[test]
    fn bad_amounts_and_limits_are_refused() {
        assert!(Usd::from_dollars(-1.0).is_err());
        assert!(Usd::from_dollars(f64::NAN).is_err());
        assert!(
            CostGuard::new(
                Usd::from_dollars(2.0).unwrap(),
                Usd::from_dollars(1.0).unwrap()
            )
            .is_err()
        );
        assert!(CostGuard::new(Usd::from_micros(0), Usd::from_dollars(1.0).unwrap()).is_err());
    }
}
