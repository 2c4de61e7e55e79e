//! Base64 as OTLP/JSON and Jaeger speak it: standard and padded when
//! written (`bytesValue`, `binary` tags); standard or URL-safe, padded or
//! not, when read, as OTLP/JSON senders differ.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, padded or not; `None` on any other text.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD_LENIENT
        .decode(text)
        .or_else(|_| URL_SAFE_LENIENT.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips() {
        for input in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            &[0, 255, 128],
        ] {
            let text = super::encode(input);
            assert_eq!(super::decode(&text).as_deref(), Some(input), "{text}");
        }
        assert_eq!(super::encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::encode(b"fo"), "Zm8=");
        assert_eq!(super::decode("Zm9v!"), None);
    }

    #[test]
    fn encoding_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::encode(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(super::encode(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn decoding_takes_both_alphabets_with_or_without_padding() {
        for text in ["+/+/", "-_-_"] {
            assert_eq!(super::decode(text), Some(vec![0xfb, 0xff, 0xbf]), "{text}");
        }
        for text in ["Zm8=", "Zm8", "Zg==", "Zg"] {
            assert!(super::decode(text).is_some(), "{text}");
        }
    }
}
