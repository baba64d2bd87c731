//! Config validation: every problem at once, each naming its key; the
//! example config loads as shipped.

use super::*;

const MINIMAL: &str = r#"
[sources.stripe]
provider = "stripe"
secrets = ["whsec_abc"]
forward_to = ["billing"]

[destinations.billing]
url = "http://127.0.0.1:3000/hooks"
"#;

fn problems(text: &str) -> Vec<String> {
    match Config::parse(text) {
        Ok(_) => vec![],
        Err(e) => e.problems,
    }
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = Config::parse(MINIMAL).unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.server.max_body, 1 << 20);
    assert_eq!(c.server.request_timeout, Duration::from_secs(10));
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.storage.dedupe_window, Duration::from_secs(7 * 86400));
    assert_eq!(c.storage.commit_interval, Duration::ZERO);
    let s = &c.sources["stripe"];
    assert_eq!(s.tolerance, Some(Duration::from_secs(300)));
    assert_eq!(s.event_id, Some(FieldRef::Pointer("/id".into())));
    let d = &c.destinations["billing"];
    assert_eq!(d.rate, None);
    assert_eq!(d.max_attempts.get(), 12);
    assert_eq!(d.on_dead_letter, DeadLetterPolicy::Skip);
    assert_eq!(d.backoff.initial, Duration::from_secs(1));
    assert_eq!(d.backoff.max, Duration::from_secs(600));
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let text = r#"
[server]
max_body = "1MB"
request_timeout = "soon"

[storage]
dedupe_window = "7 days"

[sources.stripe]
provider = "stripe"
secrets = ["env:HOOKGATE_TEST_SURELY_UNSET_VAR"]
entity = "data.object.id"
forward_to = ["nowhere"]

[sources.acme]
provider = "hmac"
secrets = ["s"]

[destinations.billing]
url = "ftp://example"
rate = "fast"
burst = 0
backoff = { initial = "10m", max = "1s" }
"#;
    let p = problems(text);
    let has = |needle: &str| p.iter().any(|x| x.contains(needle));
    assert!(has("server.max_body:"), "{p:#?}");
    assert!(has("server.request_timeout:"), "{p:#?}");
    assert!(has("storage.dedupe_window:"), "{p:#?}");
    assert!(
        p.contains(
            &"sources.stripe.secrets[0]: env var HOOKGATE_TEST_SURELY_UNSET_VAR is not set"
                .to_string()
        ),
        "{p:#?}"
    );
    assert!(has("sources.stripe.entity:"), "{p:#?}");
    assert!(
        has("sources.stripe.forward_to[0]: no destination named `nowhere`"),
        "{p:#?}"
    );
    assert!(has("sources.acme.signature_header"), "{p:#?}");
    assert!(has("destinations.billing.url:"), "{p:#?}");
    assert!(has("destinations.billing.rate:"), "{p:#?}");
    assert!(has("destinations.billing.burst:"), "{p:#?}");
    assert!(has("destinations.billing.backoff:"), "{p:#?}");
    assert!(p.len() >= 11, "{p:#?}");
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let p = problems(&format!(
        "{MINIMAL}\n[server]\nlisten = \"0.0.0.0:1\"\nlisten_port = 3\n"
    ));
    assert!(p.iter().any(|x| x.contains("listen_port")), "{p:#?}");
    let p = problems(&MINIMAL.replace(
        "provider = \"stripe\"",
        "provider = \"stripe\"\nsecret = \"x\"",
    ));
    assert!(p.iter().any(|x| x.contains("secret")), "{p:#?}");
}

#[test]
fn secrets_come_from_env_files_or_literals_and_never_appear_in_messages() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "whsec_from_file\n").unwrap();
    assert_eq!(
        resolve_secret(&format!("file:{}", file.display()))
            .unwrap()
            .expose(),
        "whsec_from_file"
    );
    assert_eq!(resolve_secret("literal").unwrap().expose(), "literal");
    assert!(resolve_secret("file:/nonexistent/secret").is_err());
    // A standard-webhooks secret that is not base64 is refused without echoing it.
    let text = MINIMAL.replace(
        "provider = \"stripe\"\nsecrets = [\"whsec_abc\"]",
        "provider = \"standard\"\nsecrets = [\"whsec_!!not-base64-SECRETVALUE\"]",
    );
    let p = problems(&text);
    assert!(
        p.iter().any(|x| x.starts_with("sources.stripe.secrets[0]")),
        "{p:#?}"
    );
    assert!(p.iter().all(|x| !x.contains("SECRETVALUE")), "{p:#?}");
    // Secrets are redacted in the config's Debug output.
    let c = Config::parse(MINIMAL).unwrap();
    assert!(!format!("{c:?}").contains("whsec_abc"));
}

#[test]
fn a_bad_secret_index_is_reported_once_and_at_its_own_position() {
    let text = MINIMAL.replace(
        "secrets = [\"whsec_abc\"]",
        "secrets = [\"env:HOOKGATE_TEST_SURELY_UNSET_VAR\", \"whsec_ok\"]",
    );
    let p = problems(&text);
    assert_eq!(
        p,
        vec![
            "sources.stripe.secrets[0]: env var HOOKGATE_TEST_SURELY_UNSET_VAR is not set"
                .to_string()
        ]
    );
}

#[test]
fn admin_off_loopback_needs_a_token() {
    let p = problems(&format!("[admin]\nlisten = \"0.0.0.0:9090\"\n{MINIMAL}"));
    assert!(
        p.iter().any(|x| x.starts_with("admin.token: required")),
        "{p:#?}"
    );
    assert!(problems(&format!(
        "[admin]\nlisten = \"0.0.0.0:9090\"\ntoken = \"t\"\n{MINIMAL}"
    ))
    .is_empty());
}

#[test]
fn a_tolerance_on_a_scheme_without_timestamps_is_an_error() {
    let text = MINIMAL.replace(
        "provider = \"stripe\"",
        "provider = \"github\"\ntolerance = \"5m\"",
    );
    let p = problems(&text);
    assert!(
        p.iter().any(|x| x.starts_with("sources.stripe.tolerance")),
        "{p:#?}"
    );
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    if let Err(e) = Config::load(&path) {
        panic!("config.example.toml: {e}");
    }
}

#[test]
fn commit_interval_is_bounded() {
    let with = |v: &str| format!("[storage]\ncommit_interval = \"{v}\"\n{MINIMAL}");
    assert_eq!(
        Config::parse(&with("0")).unwrap().storage.commit_interval,
        Duration::ZERO
    );
    assert_eq!(
        Config::parse(&with("100ms"))
            .unwrap()
            .storage
            .commit_interval,
        Duration::from_millis(100)
    );
    let p = problems(&with("1s"));
    assert!(
        p.iter()
            .any(|x| x.starts_with("storage.commit_interval: 1000 ms is longer")),
        "{p:#?}"
    );
}
