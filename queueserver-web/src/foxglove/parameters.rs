//! A Foxglove client's `getParameters`: one asker per name (or one for every value),
//! their outcomes gathered until the last, then one reply.

use super::wire::{self, Level, Parameter};
use crate::browser::{Browser, Out};
use crate::view::lock;
use queueserver::runtime::asks::AskError;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

/// How one name of a `getParameters` ended.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// Read: the values (one, or every value for a read of all).
    Found(Vec<Parameter>),
    /// No such value, or no valid name.
    Unknown(String),
    /// The read failed (timed out, refused, the server went away).
    Failed(String),
}

struct Gathered {
    results: Vec<Option<Outcome>>,
    remaining: usize,
}

/// One `getParameters` request: its names' outcomes, gathered until the last one, then
/// the reply.
pub(crate) struct Gather {
    browser: Weak<Browser>,
    id: Option<String>,
    state: Mutex<Gathered>,
}

impl Gather {
    /// A request of `browser`'s with `parts` outcomes to gather.
    pub(crate) fn new(browser: &Arc<Browser>, id: Option<String>, parts: usize) -> Arc<Self> {
        Arc::new(Self {
            browser: Arc::downgrade(browser),
            id,
            state: Mutex::new(Gathered {
                results: vec![None; parts],
                remaining: parts,
            }),
        })
    }

    /// Records the outcome of the name at `at`; the last one sends the reply: a
    /// `parameterValues` with the values read (always, with the request's id), then a
    /// `status` error naming the others, if any.
    pub(crate) fn done(&self, at: usize, outcome: Outcome) {
        let mut state = lock(&self.state);
        let Some(slot) = state.results.get_mut(at) else {
            return;
        };
        if slot.is_some() {
            return;
        }
        *slot = Some(outcome);
        state.remaining -= 1;
        if state.remaining > 0 {
            return;
        }
        let results = std::mem::take(&mut state.results);
        drop(state);
        let Some(browser) = self.browser.upgrade() else {
            return;
        };
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for outcome in results.into_iter().flatten() {
            match outcome {
                Outcome::Found(values) => found.extend(values),
                Outcome::Unknown(why) | Outcome::Failed(why) => errors.push(why),
            }
        }
        browser.outbox.push(Out::text(wire::parameter_values(
            &found,
            self.id.as_deref(),
        )));
        if !errors.is_empty() {
            let id = self
                .id
                .as_ref()
                .map_or(String::new(), |id| format!(" (id {id:?})"));
            browser.outbox.push(Out::text(wire::status(
                Level::Error,
                &format!("getParameters{id}: {}", errors.join("; ")),
            )));
        }
    }
}

/// One name of a client's `getParameters`, waiting for its answer.
pub(crate) struct ParameterAsker {
    gather: Arc<Gather>,
    at: usize,
    name: String,
    /// A read of every value.
    all: bool,
    told: bool,
}

impl ParameterAsker {
    /// The asker of the name at `at` of `gather`'s request (of every value, if `all`).
    pub(crate) fn new(gather: &Arc<Gather>, at: usize, name: String, all: bool) -> Self {
        Self {
            gather: Arc::clone(gather),
            at,
            name,
            all,
            told: false,
        }
    }

    /// Delivers the answer: the values the reply prepared.
    pub(crate) fn answer(mut self, parameters: &Result<Vec<Parameter>, String>) {
        self.told = true;
        let outcome = match parameters {
            Ok(found) if found.is_empty() && !self.all => {
                Outcome::Unknown(format!("{:?}: no such value", self.name))
            }
            Ok(found) => Outcome::Found(found.clone()),
            Err(why) => Outcome::Failed(format!("{}: {why}", self.what())),
        };
        self.gather.done(self.at, outcome);
    }

    /// Ends the ask without an answer.
    pub(crate) fn fail(mut self, error: AskError) {
        self.told = true;
        let what = self.what();
        self.gather
            .done(self.at, Outcome::Failed(format!("{what}: {error}")));
    }

    /// What it reads, as the reply names it.
    fn what(&self) -> String {
        if self.all {
            "every value".to_owned()
        } else {
            format!("{:?}", self.name)
        }
    }
}

impl Drop for ParameterAsker {
    /// Gives back the count the asker held; an asker dropped unanswered tells its request.
    fn drop(&mut self) {
        if !self.told {
            self.told = true;
            let what = self.what();
            self.gather.done(
                self.at,
                Outcome::Failed(format!("{what}: no answer will come")),
            );
        }
        if let Some(browser) = self.gather.browser.upgrade() {
            browser.asks.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
