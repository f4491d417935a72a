//! Durations written the way operators write them: `250ms`, `2s`, `1m`, `1h`.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A duration read from a string such as `250ms`, `2s`, `1m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Parses `250ms`, `2s`, `1.5s`, `1m`, `1h`, `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected a number and a unit such as 250ms, 2s, 1m")
    })?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: unit must be ms, s, m or h"
            ))
        }
    };
    Ok(Duration::from_secs_f64(value * scale))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => parse_duration(&s)
                .map(Dur)
                .map_err(serde::de::Error::custom),
            // A bare number is seconds, as most proxies read it.
            Raw::Seconds(n) => Ok(Dur(Duration::from_secs(n))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("2 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }
}
