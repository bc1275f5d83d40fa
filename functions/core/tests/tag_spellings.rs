//! The table of tag spellings that ties the policy code to the IAM guard.
//!
//! This test generates tag sets (production words in every casing and decoration people and attackers use,
//! non-production spellings, protect values, invisible characters, look-alikes) and asks the real policy code what it
//! decides for each, in the default deployment and in allow-list mode. The result must equal the committed file
//! `cdk/test/fixtures/tag-spellings.json`, which the CDK tests feed to an IAM policy simulator
//! (`@cloud-copilot/iam-simulate`) over the synthesized actions role: wherever the code denies, IAM must deny, and
//! where the code allows, IAM must allow. So a change to the code's rules fails here until the table is
//! regenerated (`UPDATE_TAG_TABLE=1 cargo test -p finops-core --test tag_spellings`), and then fails in the CDK
//! tests until IAM says the same.
//!
//! Each row says which IAM layer is expected to agree with the code:
//! - `guard`: the default deployment's explicit Deny statements (and allow-list mode too);
//! - `allow-list`: only allow-list mode, whose Allow requires an exact environment value: Unicode look-alikes
//!   (`ＰＲＯＤ`), keys with padding or invisible characters, which IAM's string operators cannot normalise;
//! - `code`: no IAM layer can express it (a second environment key spelled differently from the first); the
//!   policy code and the human are the layers.

use chrono::{TimeZone, Utc};
use finops_core::policy::{PolicyConfig, NON_PRODUCTION_PREFIXES, UNPROTECT_VALUES};
use finops_core::tags::INVISIBLE_RANGES;
use finops_core::InstanceRecord;
use serde_json::{json, Value};

const FIXTURE: &str = "../../cdk/test/fixtures/tag-spellings.json";
const ALLOW_LIST: [&str; 5] = ["dev", "development", "test", "qa", "sandbox"];

/// IAM accepts policy documents made of tab, line feed, carriage return and U+0020..U+00FF only, so the one
/// invisible character its guard can name is the soft hyphen. Values with the others are production in code, and
/// only allow-list mode's exact Allow refuses them in IAM.
const IAM_CHARACTERS: std::ops::RangeInclusive<u32> = 0x20..=0xFF;

fn invisible_characters() -> Vec<u32> {
    INVISIBLE_RANGES
        .iter()
        .flat_map(|&(lo, hi)| lo..=hi)
        .filter(|&c| c <= 0xFFFF || [0xE0001, 0xE0064, 0x1D173].contains(&c))
        .collect()
}

fn casings(word: &str) -> Vec<String> {
    let title: String =
        word.chars().enumerate().map(|(i, c)| if i == 0 { c.to_ascii_uppercase() } else { c }).collect();
    let alternating = |start: usize| -> String {
        word.chars().enumerate().map(|(i, c)| if i % 2 == start { c.to_ascii_uppercase() } else { c }).collect()
    };
    let mut out = vec![word.to_lowercase(), word.to_uppercase(), title, alternating(0), alternating(1)];
    out.dedup();
    out
}

/// `non-prod` as people write it: lower, UPPER, Title Each Word, Capitalised first word.
fn negation_casings(prefix: &str, sep: &str, word: &str) -> Vec<String> {
    let cap = |s: &str| -> String {
        s.chars().enumerate().map(|(i, c)| if i == 0 { c.to_ascii_uppercase() } else { c }).collect()
    };
    vec![
        format!("{prefix}{sep}{word}"),
        format!("{prefix}{sep}{word}").to_uppercase(),
        format!("{}{sep}{}", cap(prefix), cap(word)),
        format!("{}{sep}{word}", cap(prefix)),
    ]
}

fn instance(tags: &[(String, String)]) -> InstanceRecord {
    let launched = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    InstanceRecord::ordinary("i-0123456789abcdef0", "ap-southeast-2", "t3.large", launched, 8)
        .with_tags(tags.iter().cloned())
}

/// What a row was written to show in the default deployment, by the person who wrote it (not by the code): the
/// reason it must be denied for, or `None` for a row that must be allowed.
const PRODUCTION: Option<&str> = Some("production");
const PROTECTED: Option<&str> = Some("protected");
const ALLOWED: Option<&str> = None;

/// A row: its tags, the IAM layer expected to agree with the code, and what it was written to show.
type Row = (Vec<(String, String)>, &'static str, Option<&'static str>);

fn rows() -> Vec<Row> {
    let config = PolicyConfig::default();
    let mut rows: Vec<Row> = Vec::new();
    let mut add = |tags: Vec<(&str, String)>, layer: &'static str, expected: Option<&'static str>| {
        rows.push((tags.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), layer, expected));
    };

    let env_keys: Vec<String> = config
        .environment_tag_keys
        .iter()
        .flat_map(|k| {
            let mut v = vec![k.clone(), k.to_lowercase(), k.to_uppercase()];
            v.dedup();
            v
        })
        .collect();
    // Production words in every casing and decoration, under every environment key.
    let decorations = [
        "{}",
        " {} ",
        "  {}",
        "{} ",
        "\"{}\"",
        "'{}'",
        "{}1",
        "{}01",
        "{}-eu",
        "{}_2",
        "{} (eu)",
        "{}.db",
        "eu-{}",
        "us-east-1-{}",
        "1-{}",
        "my-{}-db",
        "{}-and-non-prod",
        "pre-{}-eu",
    ];
    for (i, key) in env_keys.iter().enumerate() {
        // Every decoration under the first key; the plain and padded ones under the other spellings of the keys.
        let decorations = if i == 0 { &decorations[..] } else { &decorations[..2] };
        for word in &config.production_values {
            for cased in casings(word) {
                for d in decorations {
                    add(vec![(key.as_str(), d.replace("{}", &cased))], "guard", PRODUCTION);
                }
            }
        }
    }
    // Non-production spellings of the same words, and everyday environments.
    for (i, key) in env_keys.iter().enumerate() {
        for prefix in NON_PRODUCTION_PREFIXES {
            for word in &config.production_values {
                for sep in ["", "-", "_", " "] {
                    let spellings = negation_casings(prefix, sep, word);
                    let spellings = if i == 0 { &spellings[..] } else { &spellings[..1] };
                    for v in spellings {
                        add(vec![(key.as_str(), v.clone())], "guard", ALLOWED);
                    }
                }
            }
        }
        for v in ["dev", "Dev", "DEV", "development", "test", "qa", "uat", "staging", "sandbox", "demo", ""] {
            add(vec![(key.as_str(), v.to_owned())], "guard", ALLOWED);
        }
    }
    // Invisible characters in an environment value: production, whatever the visible letters say.
    for code in invisible_characters() {
        let c = char::from_u32(code).expect("a scalar value");
        let layer = if IAM_CHARACTERS.contains(&code) { "guard" } else { "allow-list" };
        add(vec![("Environment", format!("de{c}v"))], layer, PRODUCTION);
        add(vec![("Environment", format!("pr{c}od"))], layer, PRODUCTION);
    }
    // The protect tag: only an exact no unprotects.
    for key in ["finops:protect", "Finops:Protect", "FINOPS:PROTECT"] {
        for v in
            ["true", "yes", "1", "on", "", "please", " false", "false ", "No ", "\"no\"", "ｆａｌｓｅ", "fa\u{200B}lse"]
        {
            add(vec![(key, v.to_owned()), ("Environment", "dev".into())], "guard", PROTECTED);
        }
        for no in UNPROTECT_VALUES {
            for v in casings(no) {
                add(vec![(key, v), ("Environment", "dev".into())], "guard", ALLOWED);
            }
        }
    }
    // Tags that are not environment or protect tags, and several tags at once.
    add(vec![], "guard", ALLOWED);
    add(vec![("Name", "prod".into())], "guard", ALLOWED);
    add(vec![("Name", "production-db".into()), ("Environment", "dev".into())], "guard", ALLOWED);
    add(vec![("Environment", "dev".into()), ("stage", "live".into())], "guard", PRODUCTION);
    // Two keys that differ only in case: IAM's tag condition keys are case-insensitive, so IAM sees one of the two
    // values (which one, AWS does not say); the code reads both and any that blocks wins.
    add(vec![("Environment", "dev".into()), ("environment", "prod".into())], "code", PRODUCTION);
    add(vec![("environment", "prod".into()), ("Environment", "dev".into())], "code", PRODUCTION);
    add(
        vec![("Finops:protect", "false".into()), ("finops:protect", "true".into()), ("Environment", "dev".into())],
        "code",
        PROTECTED,
    );
    add(
        vec![("Finops:protect", "true".into()), ("finops:protect", "false".into()), ("Environment", "dev".into())],
        "code",
        PROTECTED,
    );
    // What IAM's string operators cannot normalise: only allow-list mode's exact Allow refuses these.
    for v in ["ＰＲＯＤ", "𝐩𝐫𝐨𝐝", "ⓟⓡⓞⓓ", "ｐｒｏｄｕｃｔｉｏｎ", "de\u{E0100}v", "de\u{E0080}v"]
    {
        add(vec![("Environment", v.to_owned())], "allow-list", PRODUCTION);
    }
    for key in [" Environment", "Environment ", "Environ\u{200B}ment", "ＥＮＶ"] {
        add(vec![(key, "prod".into())], "allow-list", PRODUCTION);
    }
    for key in [" finops:protect", "finops:protect ", "finops:\u{200B}protect"] {
        add(vec![(key, "true".into())], "allow-list", PROTECTED);
    }
    // A second environment key that IAM does not see as one, beside an allow-listed value: the code alone.
    add(vec![("Environment", "dev".into()), (" Environment", "prod".into())], "code", PRODUCTION);
    add(vec![("Environment", "dev".into()), ("Environ\u{200B}ment", "prod".into())], "code", PRODUCTION);
    rows
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

fn allow_list_mode() -> PolicyConfig {
    PolicyConfig { act_only_on_environments: Some(ALLOW_LIST.map(String::from).to_vec()), ..PolicyConfig::default() }
}

fn decide(config: &PolicyConfig, tags: &[(String, String)]) -> (bool, Option<&'static str>) {
    match config.instance_block(&instance(tags), now()) {
        Some((reason, _)) => (true, Some(reason.as_str())),
        None => (false, None),
    }
}

fn table() -> Value {
    let config = PolicyConfig::default();
    let allow_list = allow_list_mode();
    let rows = rows();
    let rows: Vec<Value> = rows
        .iter()
        .map(|(tags, layer, _)| {
            let (denied, reason) = decide(&config, tags);
            let (denied_allow_list, reason_allow_list) = decide(&allow_list, tags);
            json!({
                "tags": tags,
                "layer": layer,
                "denied": denied,
                "reason": reason,
                "deniedInAllowListMode": denied_allow_list,
                "reasonInAllowListMode": reason_allow_list,
            })
        })
        .collect();
    json!({
        "comment": "Generated by functions/core/tests/tag_spellings.rs from the policy code; do not edit by hand.",
        "config": {
            "environmentTagKeys": config.environment_tag_keys,
            "productionValues": config.production_values,
            "protectTagKey": config.protect_tag_key,
            "unprotectValues": UNPROTECT_VALUES,
            "nonProductionPrefixes": NON_PRODUCTION_PREFIXES,
            "actOnlyOnEnvironments": ALLOW_LIST,
            "iamListedInvisible": invisible_characters().iter().filter(|c| IAM_CHARACTERS.contains(c)).map(|c| format!("{c:04X}")).collect::<Vec<_>>(),
        },
        "rows": rows,
    })
}

/// JSON with object keys sorted: the same text whichever map type serde_json was built with (a workspace build turns
/// on its insertion-ordered maps, a build of this crate alone does not).
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> =
                keys.iter().map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&map[*k]))).collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// One row per line, so a change reads as a diff of the rows it touches.
fn render(table: &Value) -> String {
    let mut out = String::from("{\n");
    out.push_str(&format!("  \"comment\": {},\n", canonical(&table["comment"])));
    out.push_str(&format!("  \"config\": {},\n", canonical(&table["config"])));
    out.push_str("  \"rows\": [\n");
    let rows = table["rows"].as_array().expect("rows");
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&format!("    {}{}\n", canonical(row), if i + 1 < rows.len() { "," } else { "" }));
    }
    out.push_str("  ]\n}\n");
    out
}

#[test]
fn the_committed_table_is_what_the_policy_code_decides() {
    let generated = render(&table());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    if std::env::var_os("UPDATE_TAG_TABLE").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what the policy code decides now: regenerate it with \
         `UPDATE_TAG_TABLE=1 cargo test -p finops-core --test tag_spellings`, then make the IAM guard agree \
         (cdk/lib/production-guard.ts; `make cdk-test` checks it)",
        path.display()
    );
}

/// The table's oracle is not the code that generates it: every row says what it was written to show, and the code
/// must decide that in the default deployment; allow-list mode only ever denies more.
#[test]
fn the_code_decides_what_each_row_was_written_to_show() {
    let (default, allow_list) = (PolicyConfig::default(), allow_list_mode());
    let mut wrong = Vec::new();
    for (tags, _, expected) in rows() {
        let (denied, reason) = decide(&default, &tags);
        if reason != expected {
            wrong.push(format!("{tags:?}: expected {expected:?}, the code says {reason:?}"));
        }
        if denied && !decide(&allow_list, &tags).0 {
            wrong.push(format!("{tags:?}: allowed in allow-list mode though denied by default"));
        }
    }
    assert!(wrong.is_empty(), "{} rows:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn the_table_covers_both_answers_of_every_rule() {
    let t = table();
    let rows = t["rows"].as_array().unwrap();
    let count = |f: &dyn Fn(&Value) -> bool| rows.iter().filter(|r| f(r)).count();
    for reason in ["production", "protected"] {
        assert!(count(&|r| r["reason"] == reason) > 30, "{reason}");
    }
    assert!(count(&|r| r["denied"] == false) > 100);
    assert!(count(&|r| r["reasonInAllowListMode"] == "not-allow-listed") > 50);
    assert!(count(&|r| r["deniedInAllowListMode"] == false) > 20);
    // What the issue found: each of these is production or protected in code.
    for (k, v) in [("environment", " PROD "), ("Environment", "prod-eu"), ("finops:protect", "on")] {
        let row = rows.iter().find(|r| r["tags"][0] == json!([k, v])).unwrap_or_else(|| panic!("{k}={v} row"));
        assert_eq!(row["denied"], true, "{k}={v}");
    }
}
