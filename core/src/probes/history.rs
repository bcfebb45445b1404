//! Per (host, metric) ring buffers of recent values, for sparklines, charts and windowed
//! figures such as the HTTP p95.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Default capacity: 240 points, 20 minutes at the default 5 s interval.
pub const DEFAULT_CAPACITY: usize = 240;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at: Instant,
    pub value: f64,
}

/// A fixed-capacity ring: pushing onto a full ring drops the oldest point.
#[derive(Debug, Clone)]
pub struct Ring {
    cap: usize,
    points: VecDeque<Point>,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Ring {
            cap,
            points: VecDeque::with_capacity(cap),
        }
    }

    pub fn push(&mut self, p: Point) {
        if self.points.len() == self.cap {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Point> + ExactSizeIterator {
        self.points.iter()
    }

    pub fn last(&self) -> Option<&Point> {
        self.points.back()
    }

    /// Values no older than `window` before `now`, oldest first.
    pub fn window(&self, now: Instant, window: Duration) -> Vec<f64> {
        self.points
            .iter()
            .filter(|p| now.saturating_duration_since(p.at) <= window)
            .map(|p| p.value)
            .collect()
    }
}

/// The `q`-quantile (0..=1) by nearest rank; `None` for no values.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    v.get(rank.saturating_sub(1).min(v.len() - 1)).copied()
}

/// Every series, keyed by host and metric (metric names follow check ids, e.g.
/// `host.cpu`, `disk./`, `mysql.connections@127.0.0.1:3306`).
#[derive(Debug, Clone)]
pub struct History {
    cap: usize,
    series: HashMap<String, HashMap<String, Ring>>,
}

impl Default for History {
    fn default() -> Self {
        History::new(DEFAULT_CAPACITY)
    }
}

impl History {
    pub fn new(capacity: usize) -> Self {
        History {
            cap: capacity.max(1),
            series: HashMap::new(),
        }
    }

    /// Enough points to cover `span` at `interval`.
    pub fn covering(span: Duration, interval: Duration) -> Self {
        let n = span.as_secs_f64() / interval.as_secs_f64().max(0.001);
        History::new((n.ceil() as usize).max(1))
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn push(&mut self, host: &str, metric: &str, at: Instant, value: f64) {
        if !value.is_finite() {
            return;
        }
        // Look up by borrowed key first so a steady state allocates nothing.
        let cap = self.cap;
        let per_host = match self.series.get_mut(host) {
            Some(m) => m,
            None => self.series.entry(host.to_owned()).or_default(),
        };
        let ring = match per_host.get_mut(metric) {
            Some(r) => r,
            None => per_host
                .entry(metric.to_owned())
                .or_insert_with(|| Ring::new(cap)),
        };
        ring.push(Point { at, value });
    }

    pub fn series(&self, host: &str, metric: &str) -> Option<&Ring> {
        self.series.get(host)?.get(metric)
    }

    /// The metrics recorded for a host, sorted.
    pub fn metrics(&self, host: &str) -> Vec<&str> {
        let mut m: Vec<&str> = self
            .series
            .get(host)
            .map(|s| s.keys().map(String::as_str).collect())
            .unwrap_or_default();
        m.sort_unstable();
        m
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    #[test]
    fn ring_drops_the_oldest_when_full() {
        let t0 = Instant::now();
        let mut r = Ring::new(3);
        for i in 0..5 {
            r.push(Point {
                at: t0 + Duration::from_secs(i),
                value: i as f64,
            });
        }
        assert_eq!(r.len(), 3);
        let v: Vec<f64> = r.iter().map(|p| p.value).collect();
        assert_eq!(v, vec![2.0, 3.0, 4.0]);
        assert_eq!(r.last().map(|p| p.value), Some(4.0));
        assert_eq!(
            r.window(t0 + Duration::from_secs(4), Duration::from_secs(1)),
            vec![3.0, 4.0]
        );
    }

    #[test]
    fn default_covers_ten_minutes_at_five_seconds() {
        let h = History::default();
        assert!(h.capacity() >= 120, "10 min at 5 s needs 120 points");
        assert_eq!(
            History::covering(Duration::from_secs(600), Duration::from_secs(5)).capacity(),
            120
        );
    }

    #[test]
    fn history_keeps_series_apart_and_bounded() {
        let t0 = Instant::now();
        let mut h = History::new(2);
        for i in 0..10 {
            h.push("db-1", "host.cpu", t0, f64::from(i));
            h.push("db-2", "host.cpu", t0, 100.0);
        }
        h.push("db-1", "host.cpu", t0, f64::NAN);
        let s = h.series("db-1", "host.cpu").expect("series");
        assert_eq!(
            s.iter().map(|p| p.value).collect::<Vec<_>>(),
            vec![8.0, 9.0]
        );
        assert_eq!(h.series("db-2", "host.cpu").map(Ring::len), Some(2));
        assert!(h.series("db-3", "host.cpu").is_none());
        assert_eq!(h.metrics("db-1"), vec!["host.cpu"]);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.95), Some(95.0));
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&[7.0], 0.95), Some(7.0));
        assert_eq!(quantile(&[], 0.95), None);
    }
}
