//! Canonical request construction (SigV4 "task 1").
//!
//! Everything here works on the request as it arrived on the wire: the raw,
//! still percent-encoded path and query string, and header values as bytes.
//! The functions append to a caller-owned buffer so that one allocation can
//! serve a whole verification.

use http::HeaderMap;

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// RFC 3986 unreserved characters, the only bytes SigV4 leaves unescaped.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Appends `bytes` URI-encoded the SigV4 way: every byte outside the
/// unreserved set becomes `%XX` (upper-case hex); `/` is kept when
/// `keep_slash` is set (paths), escaped otherwise (query keys and values).
pub(crate) fn uri_encode_into(out: &mut Vec<u8>, bytes: &[u8], keep_slash: bool) {
    for &b in bytes {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b);
        } else {
            out.push(b'%');
            out.push(HEX_UPPER[usize::from(b >> 4)]);
            out.push(HEX_UPPER[usize::from(b & 0x0f)]);
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one query-string component: `%XX` escapes become bytes and `+`
/// becomes a space (form encoding, as the AWS SDKs parse queries); an
/// invalid escape is kept literally.
pub(crate) fn query_decode_into(out: &mut Vec<u8>, s: &[u8]) {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < s.len() => match (hex_val(s[i + 1]), hex_val(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
}

/// Decodes a query component into an owned string (lossy for non-UTF-8).
pub(crate) fn query_decode(s: &str) -> String {
    let mut buf = Vec::with_capacity(s.len());
    query_decode_into(&mut buf, s.as_bytes());
    match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Iterates the `key=value` pairs of a raw query string, skipping empty
/// pairs; a pair without `=` has an empty value.
pub(crate) fn raw_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Appends the canonical URI for `raw_path`.
///
/// With `s3_style` the path is used verbatim (S3 and clients in "single
/// encoding" mode sign the wire path as is). Otherwise, as every non-S3 AWS
/// service does, dot segments and empty segments are removed (RFC 3986
/// section 5.2.4 plus `//` merging) and the result is URI-encoded once more,
/// so a wire `%20` becomes `%2520`.
pub fn canonical_uri_into(out: &mut Vec<u8>, raw_path: &str, s3_style: bool) {
    if raw_path.is_empty() {
        out.push(b'/');
        return;
    }
    if s3_style {
        out.extend_from_slice(raw_path.as_bytes());
        return;
    }
    let needs_normalizing =
        raw_path.contains("//") || raw_path.split('/').any(|s| s == "." || s == "..");
    if !needs_normalizing {
        if !raw_path.starts_with('/') {
            // a relative request target (only `*` in practice) counts as absolute
            out.push(b'/');
        }
        uri_encode_into(out, raw_path.as_bytes(), true);
        return;
    }
    let mut segments: Vec<&str> = Vec::with_capacity(8);
    for segment in raw_path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let trailing = ["/", "/.", "/..", "/./", "/../"]
        .iter()
        .any(|s| raw_path.ends_with(s));
    out.push(b'/');
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        uri_encode_into(out, segment.as_bytes(), true);
    }
    if trailing && !segments.is_empty() {
        out.push(b'/');
    }
}

/// The canonical URI as a string; see [`canonical_uri_into`].
pub fn canonical_uri(raw_path: &str, s3_style: bool) -> String {
    let mut out = Vec::with_capacity(raw_path.len() + 8);
    canonical_uri_into(&mut out, raw_path, s3_style);
    // only ASCII (or the verbatim &str) is ever written
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends the canonical query string: every pair decoded and re-encoded
/// strictly, sorted by encoded key then encoded value, joined with `&`.
/// With `presigned`, `X-Amz-Signature` is left out.
pub fn canonical_query_into(out: &mut Vec<u8>, raw_query: &str, presigned: bool) {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut scratch = Vec::new();
    for (k, v) in raw_pairs(raw_query) {
        scratch.clear();
        query_decode_into(&mut scratch, k.as_bytes());
        if presigned && scratch == b"X-Amz-Signature" {
            continue;
        }
        let mut key = Vec::with_capacity(scratch.len());
        uri_encode_into(&mut key, &scratch, false);
        scratch.clear();
        query_decode_into(&mut scratch, v.as_bytes());
        let mut value = Vec::with_capacity(scratch.len());
        uri_encode_into(&mut value, &scratch, false);
        pairs.push((key, value));
    }
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
    }
}

/// The canonical query string as a string; see [`canonical_query_into`].
pub fn canonical_query(raw_query: &str, presigned: bool) -> String {
    let mut out = Vec::with_capacity(raw_query.len() + 8);
    canonical_query_into(&mut out, raw_query, presigned);
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends a header value trimmed of leading/trailing spaces with internal
/// runs of spaces collapsed to one (the SigV4 "Trimall").
fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    let mut prev_space = false;
    for &b in &value[start..end] {
        if b == b' ' {
            if !prev_space {
                out.push(b' ');
            }
            prev_space = true;
        } else {
            out.push(b);
            prev_space = false;
        }
    }
}

/// Appends the canonical headers block (one `name:value\n` line per signed
/// header, multiple values joined with `,`). `authority` stands in for a
/// missing `host` header (HTTP/2).
pub(crate) fn canonical_headers_into(
    out: &mut Vec<u8>,
    headers: &HeaderMap,
    signed_headers: &str,
    authority: Option<&str>,
) {
    for name in signed_headers.split(';') {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut first = true;
        for value in headers.get_all(name) {
            if !first {
                out.push(b',');
            }
            push_trimmed(out, value.as_bytes());
            first = false;
        }
        if first && name.eq_ignore_ascii_case("host") {
            if let Some(authority) = authority {
                push_trimmed(out, authority.as_bytes());
            }
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_normalization() {
        let cases = [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/./", "/"),
            ("/example/..", "/"),
            ("/example1/example2/../..", "/"),
            ("//example//", "/example/"),
            ("/./example", "/example"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../a", "/a"),
            ("/a%20b", "/a%2520b"),
            ("/a:b@c", "/a%3Ab%40c"),
            ("/-._~", "/-._~"),
            ("/.hidden/x", "/.hidden/x"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical_uri(input, false), want, "input {input:?}");
        }
        assert_eq!(canonical_uri("//a/../b", true), "//a/../b");
        assert_eq!(canonical_uri("", true), "/");
    }

    #[test]
    fn query_canonicalization() {
        assert_eq!(canonical_query("b=2&a=1&a=0", false), "a=0&a=1&b=2");
        assert_eq!(canonical_query("a+b=c%2fd&e", false), "a%20b=c%2Fd&e=");
        assert_eq!(canonical_query("%zz=1", false), "%25zz=1");
        assert_eq!(canonical_query("X-Amz-Signature=abc&x=1", true), "x=1");
        assert_eq!(canonical_query("&&x=1&", false), "x=1");
    }

    #[test]
    fn trimall() {
        let mut out = Vec::new();
        push_trimmed(&mut out, b"  a   b  c  ");
        assert_eq!(out, b"a b c");
    }
}
