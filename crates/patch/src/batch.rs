//! Batch sizes, as Ansible's `serial` writes them: a count (`2`), a share
//! (`25%`), or a list whose last item repeats (`1,2,25%`: one canary host,
//! then two, then a quarter of the fleet at a time).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchSize {
    Count(usize),
    /// Percent of all selected hosts, rounded down, at least one host.
    Percent(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSpec(pub Vec<BatchSize>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid batch {text:?}: {reason} (examples: 2, 25%, 1,2,25%)")]
pub struct BatchError {
    pub text: String,
    pub reason: &'static str,
}

impl Default for BatchSpec {
    /// One host at a time: the safest rolling order.
    fn default() -> Self {
        BatchSpec(vec![BatchSize::Count(1)])
    }
}

impl FromStr for BatchSpec {
    type Err = BatchError;
    fn from_str(text: &str) -> Result<Self, BatchError> {
        let fail = |reason| BatchError {
            text: text.to_string(),
            reason,
        };
        let mut sizes = Vec::new();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(fail("empty item"));
            }
            let size = match item.strip_suffix('%') {
                Some(p) => match p.trim().parse::<u32>() {
                    Ok(p @ 1..=100) => BatchSize::Percent(p),
                    _ => return Err(fail("a percentage must be 1% to 100%")),
                },
                None => match item.parse::<usize>() {
                    Ok(n @ 1..) => BatchSize::Count(n),
                    _ => return Err(fail("a count must be a whole number of at least 1")),
                },
            };
            sizes.push(size);
        }
        Ok(BatchSpec(sizes))
    }
}

impl fmt::Display for BatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .0
            .iter()
            .map(|s| match s {
                BatchSize::Count(n) => n.to_string(),
                BatchSize::Percent(p) => format!("{p}%"),
            })
            .collect();
        f.write_str(&items.join(","))
    }
}

impl BatchSpec {
    /// The sizes of the batches for `total` hosts; they add up to `total`.
    pub fn sizes(&self, total: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut left = total;
        let mut items = self.0.iter();
        let mut current = BatchSize::Count(1);
        while left > 0 {
            if let Some(next) = items.next() {
                current = *next;
            }
            let n = match current {
                BatchSize::Count(n) => n,
                BatchSize::Percent(p) => (total * p as usize / 100).max(1),
            };
            let n = n.min(left).max(1);
            out.push(n);
            left -= n;
        }
        out
    }

    /// Splits `items` into batches, keeping their order.
    pub fn split<T: Clone>(&self, items: &[T]) -> Vec<Vec<T>> {
        let mut rest = items;
        self.sizes(items.len())
            .into_iter()
            .map(|n| {
                let (head, tail) = rest.split_at(n);
                rest = tail;
                head.to_vec()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
