//! A strict reader of the Prometheus text exposition format (0.0.4), for checking what
//! `/metrics` serves: every family has one HELP and one TYPE before its samples, every sample
//! belongs to the family announced last and is named as its type requires, names and labels
//! are well formed, values are numbers. Panics, quoting the line, on anything else.
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Family {
    pub kind: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug)]
pub struct Sample {
    /// The sample's own name (`x_bucket`, `x_sum`, … for a histogram `x`).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn is_name(s: &str, extra: &[u8]) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || extra.contains(&b))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || extra.contains(&b))
}

/// `{a="x",b="y\"z"}` → the labels and what follows the closing brace.
fn labels(text: &str, line: &str) -> (BTreeMap<String, String>, String) {
    let mut out = BTreeMap::new();
    let mut rest = text;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (out, after.to_owned());
        }
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label: {line}"));
        assert!(is_name(name, &[]), "label name {name:?}: {line}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("escape {other:?}: {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {line}"),
            }
        };
        assert!(
            out.insert(name.to_owned(), value).is_none(),
            "twice: {line}"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn value(raw: &str, line: &str) -> f64 {
    match raw {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => raw
            .parse()
            .unwrap_or_else(|_| panic!("value {raw:?}: {line}")),
    }
}

/// The names a sample of family `family` of type `kind` may have.
fn sample_belongs(sample: &str, family: &str, kind: &str) -> bool {
    match kind {
        "histogram" => [("_bucket"), ("_sum"), ("_count")]
            .iter()
            .any(|suffix| sample.strip_suffix(suffix) == Some(family)),
        "counter" => sample == family && family.ends_with("_total"),
        _ => sample == family,
    }
}

pub fn parse(body: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut current: Option<String> = None;
    assert!(body.ends_with('\n'), "the exposition ends with a newline");
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("{line}"));
            assert!(is_name(name, b":"), "name: {line}");
            assert!(!help.trim().is_empty(), "empty help: {line}");
            assert!(helped.insert(name.to_owned()), "HELP twice: {line}");
            assert!(!families.contains_key(name), "HELP after TYPE: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{line}"));
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "type: {line}"
            );
            assert!(helped.contains(name), "TYPE without HELP: {line}");
            let family = Family {
                kind: kind.to_owned(),
                samples: vec![],
            };
            assert!(
                families.insert(name.to_owned(), family).is_none(),
                "TYPE twice: {line}"
            );
            current = Some(name.to_owned());
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "line: {line:?}");
            let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line}"));
            let name = &line[..name_end];
            assert!(is_name(name, b":"), "name: {line}");
            let (labels, rest) = match line[name_end..].strip_prefix('{') {
                Some(after) => labels(after, line),
                None => (BTreeMap::new(), line[name_end..].to_owned()),
            };
            let raw = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{line}"));
            // An optional timestamp may follow the value.
            let raw = raw.split(' ').next().unwrap();
            let family_name = current.clone().unwrap_or_else(|| panic!("no TYPE: {line}"));
            let family = families.get_mut(&family_name).unwrap();
            assert!(
                sample_belongs(name, &family_name, &family.kind),
                "{name} in family {family_name} ({})",
                family.kind
            );
            family.samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: value(raw, line),
            });
        }
    }
    families
}

/// Checks one histogram series (the samples with labels `series`): bucket counts never
/// decrease with `le`, the `+Inf` bucket equals `_count`. Returns the count.
pub fn histogram_count(family: &str, f: &Family, series: &BTreeMap<String, String>) -> f64 {
    let mut buckets: Vec<(f64, f64)> = vec![];
    let (mut count, mut sum) = (None, None);
    for s in &f.samples {
        let mut labels = s.labels.clone();
        let le = labels.remove("le");
        if &labels != series {
            continue;
        }
        match s.name.strip_prefix(family) {
            Some("_bucket") => buckets.push((value(&le.expect("le"), &s.name), s.value)),
            Some("_count") => count = Some(s.value),
            Some("_sum") => sum = Some(s.value),
            other => panic!("{other:?}"),
        }
    }
    let count = count.expect("_count");
    assert!(sum.expect("_sum") >= 0.0);
    assert!(buckets.len() >= 2, "{buckets:?}");
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{buckets:?}"
    );
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count));
    count
}
