//! AAC helpers: what the router reads from an AudioSpecificConfig.

/// Sample rate and channel count from an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).
pub fn aac_config(asc: &[u8]) -> Option<(u32, u8)> {
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    let bits = u32::from(*asc.first()?) << 8 | u32::from(*asc.get(1)?);
    let index = ((bits >> 7) & 0x0f) as usize;
    let channels = ((bits >> 3) & 0x0f) as u8;
    Some((*RATES.get(index)?, channels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        // AAC-LC, 44.1 kHz (index 4), stereo: 0x12 0x10; 48 kHz stereo: 0x11 0x90.
        assert_eq!(aac_config(&[0x12, 0x10]), Some((44100, 2)));
        assert_eq!(aac_config(&[0x11, 0x90]), Some((48000, 2)));
        assert_eq!(aac_config(&[0x12]), None);
    }
}
