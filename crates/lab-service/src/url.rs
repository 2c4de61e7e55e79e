//! Plain-HTTP URLs of downstream services and collectors.

use crate::Error;
use hyper::Uri;
use std::fmt;
use std::str::FromStr;

/// An absolute `http://` URL. The lab speaks plain HTTP on loopback; `https`
/// is refused rather than silently downgraded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    text: String,
    uri: Uri,
}

impl HttpUrl {
    /// The URL as it was written (what `--fail-call` matches against).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// This URL with `suffix` appended to its path, unless the path already ends with it.
    ///
    /// # Errors
    ///
    /// When the result is not a valid URL (it always is for a valid `suffix`).
    pub fn with_path_suffix(&self, suffix: &str) -> Result<HttpUrl, Error> {
        if self.uri.path().ends_with(suffix) {
            return Ok(self.clone());
        }
        let base = self.text.trim_end_matches('/');
        format!("{base}{suffix}").parse()
    }
}

impl FromStr for HttpUrl {
    type Err = Error;

    fn from_str(text: &str) -> Result<HttpUrl, Error> {
        let text = text.trim();
        let invalid = |reason: &str| Error::InvalidUrl {
            url: text.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = text.parse().map_err(|e| invalid(&format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(invalid("https is not supported: use http://")),
            Some(_) | None => return Err(invalid("expected http://HOST:PORT/PATH")),
        }
        if uri.authority().is_none_or(|a| a.host().is_empty()) {
            return Err(invalid("no host"));
        }
        Ok(HttpUrl {
            text: text.to_string(),
            uri,
        })
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
