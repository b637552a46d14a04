use std::path::PathBuf;

use super::azure::azure_account_url;
use super::s3::s3_host_style_endpoint;
use super::*;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

#[test]
fn option_words_parse() {
    assert_eq!("path".parse::<UriStyle>().unwrap(), UriStyle::Path);
    assert_eq!("HOST".parse::<UriStyle>().unwrap(), UriStyle::Host);
    assert_eq!("sas".parse::<AzureKeyType>().unwrap(), AzureKeyType::Sas);
    assert_eq!("token".parse::<GcsKeyType>().unwrap(), GcsKeyType::Token);
    let err = "virtual".parse::<UriStyle>().unwrap_err().to_string();
    assert!(
        err.contains("virtual") && err.contains("host, path"),
        "{err}"
    );
}

#[test]
fn endpoints() {
    assert_eq!(
        s3_host_style_endpoint("http://127.0.0.1:9000/", "b"),
        "http://b.127.0.0.1:9000"
    );
    assert_eq!(
        s3_host_style_endpoint("s3.eu-west-1.amazonaws.com", "b"),
        "https://b.s3.eu-west-1.amazonaws.com"
    );
    let url = |e, style| azure_account_url(e, "acct", style);
    // Unset: path style for an emulator, host style for Azure's clouds or a named host.
    assert_eq!(
        url("http://127.0.0.1:10000", None),
        "http://127.0.0.1:10000/acct"
    );
    assert_eq!(
        url("https://acct.blob.core.windows.net/", None),
        "https://acct.blob.core.windows.net"
    );
    // pgBackRest's usual endpoint, without the account: host style, as pgBackRest does.
    assert_eq!(
        url("blob.core.windows.net", None),
        "https://acct.blob.core.windows.net"
    );
    assert_eq!(
        url("blob.core.chinacloudapi.cn", None),
        "https://acct.blob.core.chinacloudapi.cn"
    );
    // Set: as asked.
    assert_eq!(
        url("http://127.0.0.1:10000", Some(UriStyle::Host)),
        "http://acct.127.0.0.1:10000"
    );
    assert_eq!(
        url("https://stack.example:443", Some(UriStyle::Path)),
        "https://stack.example:443/acct"
    );
    assert_eq!(
        url("stack.example", Some(UriStyle::Host)),
        "https://acct.stack.example"
    );
}

#[test]
fn prefixes() {
    for (p, want) in [("/", ""), ("", ""), ("/pgbr", "pgbr"), ("/a/b/", "a/b")] {
        assert_eq!(normalize_prefix("s3", p).unwrap().as_ref(), want, "{p}");
    }
    for bad in ["/a//b", "/a/../b", "/./a"] {
        assert!(normalize_prefix("s3", bad).is_err(), "{bad}");
    }
}

#[test]
fn secrets_stay_out_of_debug_and_descriptions() {
    let o = S3Options {
        bucket: "bkt".into(),
        endpoint: Some("http://127.0.0.1:1".into()),
        region: "us-east-1".into(),
        key: Some("AKIDEXAMPLE".into()),
        key_secret: Some(SECRET.into()),
        token: Some("session-token-secret".into()),
        uri_style: UriStyle::Path,
        prefix: "/pgbr".into(),
        ..S3Options::default()
    };
    let s = Storage::s3(&o).unwrap();
    assert_eq!(s.description(), "s3:bkt/pgbr");
    for text in [format!("{o:?}"), format!("{s:?}")] {
        for secret in [SECRET, "AKIDEXAMPLE", "session-token-secret"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    let a = AzureOptions {
        account: "acct".into(),
        container: "c".into(),
        key: Some("c2VjcmV0LWtleQ==".into()),
        ..AzureOptions::default()
    };
    assert!(!format!("{a:?}").contains("c2VjcmV0LWtleQ=="));
    assert_eq!(Storage::azure(&a).unwrap().description(), "azure:acct/c/");
    // A key that is not base64 is refused without being echoed.
    let bad = AzureOptions {
        key: Some(format!("{SECRET}!!")),
        ..a.clone()
    };
    let err = Storage::azure(&bad).unwrap_err().to_string();
    assert!(!err.contains(SECRET), "{err}");

    let g = GcsOptions {
        bucket: "g".into(),
        key: Some(PathBuf::from("ya29.token-secret")),
        key_type: GcsKeyType::Token,
        prefix: "/r".into(),
        ..GcsOptions::default()
    };
    assert!(!format!("{g:?}").contains("token-secret"));
    assert_eq!(Storage::gcs(&g).unwrap().description(), "gcs:g/r");
}

#[test]
fn bad_configurations_are_refused() {
    let base = S3Options {
        bucket: "b".into(),
        region: "us-east-1".into(),
        ..S3Options::default()
    };
    let half = S3Options {
        key: Some("k".into()),
        ..base.clone()
    };
    let err = Storage::s3(&half).unwrap_err().to_string();
    assert!(err.contains("key secret"), "{err}");
    let nobucket = S3Options {
        bucket: String::new(),
        ..base.clone()
    };
    assert!(Storage::s3(&nobucket).is_err());

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let with_ca = S3Options {
        ca_file: Some(ca.clone()),
        ..base.clone()
    };
    let err = Storage::s3(&with_ca).unwrap_err().to_string();
    assert!(err.contains("ca.pem"), "{err}");
    let missing = S3Options {
        ca_file: Some(dir.path().join("missing.pem")),
        ..base
    };
    let err = Storage::s3(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.pem"), "{err}");

    let g = GcsOptions {
        bucket: "g".into(),
        key_type: GcsKeyType::Auto,
        key: Some("x".into()),
        ..GcsOptions::default()
    };
    assert!(Storage::gcs(&g).is_err());
}
