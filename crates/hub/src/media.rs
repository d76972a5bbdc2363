//! Inline images shared by the client surfaces: base64 data in, `ImagePart` out.

use base64::Engine as _;
use switchyard_proto::v1 as pb;

/// Largest decoded image accepted (Bedrock's own per-image limit is 3.75 MB).
pub const MAX_IMAGE_BYTES: usize = 3_750_000;

/// An image part from a media type (`image/png`, …) and base64 data. The error is client-safe.
pub fn image_part(media_type: &str, base64_data: &str) -> Result<pb::ContentPart, String> {
    let format = match media_type.trim().to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(format!(
                "image media type {other:?} is not supported (png, jpeg, gif, webp)"
            ));
        }
    };
    let data = base64::engine::general_purpose::STANDARD
        .decode(base64_data.trim())
        .map_err(|_| "image data is not valid base64".to_string())?;
    if data.is_empty() {
        return Err("image data is empty".into());
    }
    if data.len() > MAX_IMAGE_BYTES {
        return Err(format!("image larger than {MAX_IMAGE_BYTES} bytes"));
    }
    Ok(pb::ContentPart {
        part: Some(pb::content_part::Part::Image(pb::ImagePart {
            format: format.into(),
            data,
        })),
    })
}

/// An image part from a `data:image/png;base64,…` URL. Remote URLs are refused: the hub does not
/// fetch content on a client's behalf.
pub fn image_from_data_url(url: &str) -> Result<pb::ContentPart, String> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(
            "only `data:` image URLs are supported (the hub does not fetch remote images)".into(),
        );
    };
    let Some((media_type, data)) = rest.split_once(";base64,") else {
        return Err("image data URL must be base64 (`data:image/png;base64,…`)".into());
    };
    image_part(media_type, data)
}

/// `image/{format}` for an image part's format.
pub fn media_type(format: &str) -> String {
    format!("image/{format}")
}

/// The base64 text of an image's bytes.
pub fn encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls() {
        let p = image_from_data_url("data:image/png;base64,iVBORw0KGgo=").unwrap();
        let Some(pb::content_part::Part::Image(img)) = p.part else {
            panic!("not an image");
        };
        assert_eq!(img.format, "png");
        assert_eq!(img.data[..4], [0x89, b'P', b'N', b'G']);
        assert!(image_from_data_url("https://example.com/cat.png").is_err());
        assert!(image_from_data_url("data:image/tiff;base64,AAAA").is_err());
        assert!(image_from_data_url("data:image/png;base64,@@@").is_err());
    }
}
