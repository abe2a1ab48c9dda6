//! Runs the plugin natively against the SDK's mock host. The router's tests run the same cases through the
//! real wasm host.

use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};
use sluice_sdk::auth::{Action, Decision, Request};
use sluice_sdk::mock::AuthHost;

use super::Jwt;

const SECRET: &str = "unit-test-secret";
const PUBLIC: &str = include_str!("../testdata/rs256-public.pem");
const PRIVATE: &str = include_str!("../testdata/rs256-private.pem");
const OTHER_PRIVATE: &str = include_str!("../testdata/other-private.pem");
/// `{"alg":"none"}` with claims that would allow everything, and no signature.
const ALG_NONE: &str =
    "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJldmUiLCJleHAiOjQxMDI0NDQ4MDAsInNsdWljZSI6WyIqOioiXX0.";

fn host() -> AuthHost<Jwt> {
    AuthHost::from_value(json!({ "secret": SECRET, "public_key": PUBLIC, "audience": "sluice" })).expect("config")
}

fn claims(extra: Value) -> Value {
    let mut c = json!({ "sub": "ana", "aud": "sluice", "exp": get_current_timestamp() + 600,
        "sluice": [{ "action": "read", "route": "cams/*" }, "publish:studio"] });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn hs256(claims: &Value) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("sign")
}

fn rs256(claims: &Value, pem: &str) -> String {
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("pem");
    encode(&Header::new(jsonwebtoken::Algorithm::RS256), claims, &key).expect("sign")
}

fn read(token: &str, route: &str) -> Decision {
    host().authorize(&Request::new(Action::Read, route).with_bearer(token))
}

fn denied(d: Decision) -> String {
    match d {
        Decision::Deny(reason) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn valid_tokens_allow_what_their_claims_list() {
    let token = hs256(&claims(json!({})));
    match read(&token, "cams/front") {
        Decision::Allow(a) => {
            assert_eq!(a.identity, "ana");
            assert!(a.cache_ttl_ms > 0 && a.cache_ttl_ms <= 60_000, "{}", a.cache_ttl_ms);
        }
        other => panic!("{other:?}"),
    }
    assert!(read(&rs256(&claims(json!({})), PRIVATE), "cams/back").is_allow());
    let publish = Request::new(Action::Publish, "studio").with_bearer(&token);
    assert!(host().authorize(&publish).is_allow(), "short form grants publish on studio");
    assert_eq!(denied(read(&token, "studio")), "the token does not allow read on \"studio\"");
}

#[test]
fn the_cache_ttl_never_outlives_the_token() {
    let token = hs256(&claims(json!({ "exp": get_current_timestamp() + 5 })));
    match read(&token, "cams/a") {
        Decision::Allow(a) => assert!(a.cache_ttl_ms <= 5_000, "{}", a.cache_ttl_ms),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_tokens_are_denied_with_the_reason() {
    let now = get_current_timestamp();
    assert_eq!(denied(read(&hs256(&claims(json!({ "exp": now - 120 }))), "cams/a")), "the token has expired");
    assert_eq!(
        denied(read(&hs256(&claims(json!({ "nbf": now + 600 }))), "cams/a")),
        "the token is not valid yet (nbf)"
    );
    assert_eq!(denied(read(&hs256(&claims(json!({ "aud": "other" }))), "cams/a")), "the token is for another audience");
    assert_eq!(denied(read(ALG_NONE, "cams/a")), "the token is not a JWT");
    assert_eq!(denied(read("garbage", "cams/a")), "the token is not a JWT");
    // A character inside the signature (the last one also carries padding bits, which decoders ignore).
    let mut tampered = hs256(&claims(json!({}))).into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert_eq!(denied(read(&tampered, "cams/a")), "the token's signature does not verify");
    assert_eq!(
        denied(read(&rs256(&claims(json!({})), OTHER_PRIVATE), "cams/a")),
        "the token's signature does not verify"
    );
    // A configured audience must be present, not only match when present.
    let no_aud = hs256(&json!({ "sub": "x", "exp": now + 60, "sluice": ["read:*"] }));
    assert_eq!(denied(read(&no_aud, "cams/a")), "the token has no `aud` claim");
    let no_claim = hs256(&json!({ "sub": "x", "aud": "sluice", "exp": now + 60 }));
    assert_eq!(denied(read(&no_claim, "cams/a")), "the token has no `sluice` claim");
}

#[test]
fn hs256_signed_with_the_public_key_does_not_verify() {
    // The classic confusion attack: the attacker knows the RSA public key and uses it as an HMAC secret.
    let forged =
        encode(&Header::default(), &claims(json!({})), &EncodingKey::from_secret(PUBLIC.as_bytes())).expect("sign");
    assert_eq!(denied(read(&forged, "cams/a")), "the token's signature does not verify");
    let rs_only = AuthHost::<Jwt>::from_value(json!({ "public_key": PUBLIC })).expect("config");
    let d = rs_only.authorize(&Request::new(Action::Read, "cams/a").with_bearer(&forged));
    assert_eq!(denied(d), "tokens signed with HS256 are not accepted here");
}

#[test]
fn missing_credentials_are_challenged_and_other_carriers_work() {
    assert_eq!(host().authorize(&Request::new(Action::Read, "cams/a")), Decision::challenge("sluice"));
    let token = hs256(&claims(json!({})));
    assert!(host().authorize(&Request::new(Action::Read, "cams/a").with_stream_key(&token)).is_allow());
    assert!(host().authorize(&Request::new(Action::Read, "cams/a").with_basic("any", &token)).is_allow());
}

#[test]
fn config_mistakes_are_explained() {
    let e = AuthHost::<Jwt>::from_value(json!({})).expect_err("no key");
    assert!(e.starts_with("set `secret`"), "{e}");
    let e = AuthHost::<Jwt>::from_value(json!({ "secret_env": "SLUICE_TEST_SURELY_UNSET" })).expect_err("unset");
    assert!(e.contains("SLUICE_TEST_SURELY_UNSET is not set, or not granted"), "{e}");
    let e = AuthHost::<Jwt>::from_value(json!({ "secret": "a", "scret": "b" })).expect_err("typo");
    assert!(e.starts_with("invalid config: unknown field `scret`"), "{e}");
    let e = AuthHost::<Jwt>::from_value(json!({ "public_key": "not pem" })).expect_err("pem");
    assert!(e.starts_with("public_key is not an RSA PEM key"), "{e}");
}

#[test]
fn a_configured_issuer_must_be_present_and_match() {
    let host =
        AuthHost::<Jwt>::from_value(json!({ "secret": SECRET, "issuer": "https://id.example" })).expect("config");
    let now = get_current_timestamp();
    let token = |extra: Value| {
        let mut c = json!({ "sub": "ana", "exp": now + 60, "sluice": ["read:*"] });
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        hs256(&c)
    };
    let check = |t: &str| host.authorize(&Request::new(Action::Read, "cams/a").with_bearer(t));
    assert_eq!(denied(check(&token(json!({})))), "the token has no `iss` claim");
    assert_eq!(denied(check(&token(json!({ "iss": "https://other" })))), "the token is from another issuer");
    assert!(matches!(check(&token(json!({ "iss": "https://id.example" }))), Decision::Allow(_)), "right issuer");
}
