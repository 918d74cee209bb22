//! The metrics endpoint's two formats. `prometheus-client` writes OpenMetrics; a scraper that
//! asks for it (`Accept: application/openmetrics-text`, as Prometheus does) gets it as it is,
//! under its own content type. Anything else (curl, promtool, older scrapers) gets the Prometheus
//! text format 0.0.4, in which a counter family is named by its `_total` samples and the
//! OpenMetrics-only lines (`# UNIT`, `# EOF`, `_created` samples) do not exist.

use std::collections::BTreeSet;

pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| range.trim().to_ascii_lowercase().starts_with("application/openmetrics-text"))
    })
}

/// `openmetrics` (as `prometheus-client` encodes a registry) in the Prometheus text format.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    // Family names by type, from the TYPE lines (which follow their HELP line).
    let mut counters = BTreeSet::new();
    let mut infos = BTreeSet::new();
    for line in openmetrics.lines() {
        let mut words = line.split(' ');
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            match kind {
                "counter" => counters.insert(name),
                "info" => infos.insert(name),
                _ => false,
            };
        }
    }
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let converted = match line.strip_prefix("# ") {
            Some(comment) => {
                let mut parts = comment.splitn(3, ' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(keyword @ ("HELP" | "TYPE")), Some(name), rest) => {
                        let rest = rest.unwrap_or_default();
                        if counters.contains(name) {
                            format!("# {keyword} {name}_total {rest}")
                        } else if infos.contains(name) {
                            let rest = if keyword == "TYPE" { "gauge" } else { rest };
                            format!("# {keyword} {name}_info {rest}")
                        } else {
                            line.to_owned()
                        }
                    }
                    _ => line.to_owned(),
                }
            }
            None => {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                if name.strip_suffix("_created").is_some_and(|family| counters.contains(family)) {
                    continue;
                }
                line.to_owned()
            }
        };
        text.push_str(converted.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_openmetrics_only_lines_go() {
        let openmetrics = "\
# HELP chorus_blocks_imported Blocks verified and stored.
# TYPE chorus_blocks_imported counter
chorus_blocks_imported_total 7
chorus_blocks_imported_created 1700000000.0
# HELP chorus_head_height Height of the head block.
# TYPE chorus_head_height gauge
chorus_head_height 12
# HELP libp2p_ping_rtt_seconds Ping round trip.
# TYPE libp2p_ping_rtt_seconds histogram
# UNIT libp2p_ping_rtt_seconds seconds
libp2p_ping_rtt_seconds_sum 0.5
libp2p_ping_rtt_seconds_count 2
libp2p_ping_rtt_seconds_bucket{le=\"+Inf\"} 2
# HELP chorus_build Build.
# TYPE chorus_build info
chorus_build_info{version=\"0.1.0\"} 1
# EOF
";
        let expected = "\
# HELP chorus_blocks_imported_total Blocks verified and stored.
# TYPE chorus_blocks_imported_total counter
chorus_blocks_imported_total 7
# HELP chorus_head_height Height of the head block.
# TYPE chorus_head_height gauge
chorus_head_height 12
# HELP libp2p_ping_rtt_seconds Ping round trip.
# TYPE libp2p_ping_rtt_seconds histogram
libp2p_ping_rtt_seconds_sum 0.5
libp2p_ping_rtt_seconds_count 2
libp2p_ping_rtt_seconds_bucket{le=\"+Inf\"} 2
# HELP chorus_build_info Build.
# TYPE chorus_build_info gauge
chorus_build_info{version=\"0.1.0\"} 1
";
        assert_eq!(to_prometheus_text(openmetrics), expected);
    }

    #[test]
    fn openmetrics_goes_to_those_who_ask_for_it() {
        assert!(wants_openmetrics(Some("application/openmetrics-text; version=1.0.0,text/plain;q=0.5")));
        assert!(wants_openmetrics(Some("text/plain;q=0.5, Application/OpenMetrics-Text")));
        assert!(!wants_openmetrics(Some("text/plain; version=0.0.4")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
