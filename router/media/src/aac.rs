//! AAC helpers: what the router reads from an AudioSpecificConfig.

/// Sample rate and channel count from an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).
pub fn aac_config(asc: &[u8]) -> Option<(u32, u8)> {
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    let bits = u32::from(*asc.first()?) << 8 | u32::from(*asc.get(1)?);
    let index = ((bits >> 7) & 0x0f) as usize;
    let channels = ((bits >> 3) & 0x0f) as u8;
    Some((*RATES.get(index)?, channels))
}

/// The raw AAC frames of an ADTS stream (what `ffmpeg -f adts` writes, what many encoders pipe out) and the
/// AudioSpecificConfig its first header describes; an error names the byte offset where the stream stops making
/// sense.
pub fn split_adts(data: &[u8]) -> Result<(bytes::Bytes, Vec<bytes::Bytes>), String> {
    let mut frames = Vec::new();
    let mut asc = None;
    let mut at = 0;
    while at < data.len() {
        let h = data.get(at..at + 7).ok_or_else(|| format!("a cut-off ADTS header at byte {at}"))?;
        if h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
            return Err(format!("no ADTS sync word at byte {at}"));
        }
        let header = if h[1] & 1 == 1 { 7 } else { 9 };
        let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let frame = data.get(at + header..at + len).ok_or_else(|| format!("a cut-off ADTS frame at byte {at}"))?;
        // ADTS stores the object type less one, and the same rate index and channel configuration as the ASC.
        let object_type = (h[2] >> 6) + 1;
        let rate_index = (h[2] >> 2) & 0x0f;
        let channels = ((h[2] & 1) << 2) | (h[3] >> 6);
        asc.get_or_insert_with(|| {
            bytes::Bytes::from(vec![object_type << 3 | rate_index >> 1, (rate_index & 1) << 7 | channels << 3])
        });
        frames.push(bytes::Bytes::copy_from_slice(frame));
        at += len;
    }
    Ok((asc.ok_or("no ADTS frames")?, frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adts_frames_and_their_config() {
        // Two frames of AAC-LC 44.1 kHz stereo, protection absent (7-byte headers), 3 and 2 payload bytes.
        let header = |len: usize| {
            [0xff, 0xf1, 0x50, 0x80 | (len >> 11) as u8, (len >> 3) as u8, ((len & 7) << 5) as u8 | 0x1f, 0xfc]
        };
        let mut data = header(10).to_vec();
        data.extend([1, 2, 3]);
        data.extend(header(9));
        data.extend([4, 5]);
        let (asc, frames) = split_adts(&data).expect("splits");
        assert_eq!(&asc[..], [0x12, 0x10]);
        assert_eq!(aac_config(&asc), Some((44100, 2)));
        assert_eq!(frames, [&[1u8, 2, 3][..], &[4, 5][..]]);
        assert!(split_adts(&data[..data.len() - 1]).is_err_and(|e| e.contains("cut-off ADTS frame at byte 10")));
        assert!(split_adts(&[0u8; 9]).is_err_and(|e| e.contains("no ADTS sync word at byte 0")));
        assert!(split_adts(&[]).is_err());
    }

    #[test]
    fn fields() {
        // AAC-LC, 44.1 kHz (index 4), stereo: 0x12 0x10; 48 kHz stereo: 0x11 0x90.
        assert_eq!(aac_config(&[0x12, 0x10]), Some((44100, 2)));
        assert_eq!(aac_config(&[0x11, 0x90]), Some((48000, 2)));
        assert_eq!(aac_config(&[0x12]), None);
    }
}
