//! Call-progress tones the PBX plays itself, made in code at 8 kHz.

use std::sync::Arc;

const RATE: usize = 8000;

/// The Japanese ringback tone (呼出音): 400 Hz modulated by 16 Hz, one
/// second on and two off, as one three-second loop. A caller whose call we
/// already answered (an IVR handing over to a group) hears this from us,
/// because the phone itself plays nothing once answered.
pub fn japanese_ringback() -> Arc<[i16]> {
    let mut out = vec![0i16; 3 * RATE];
    for (n, s) in out.iter_mut().enumerate().take(RATE) {
        let t = n as f64 / RATE as f64;
        let carrier = (2.0 * std::f64::consts::PI * 400.0 * t).sin();
        // 16 Hz amplitude modulation, between 0 and 1.
        let envelope = 0.5 * (1.0 + (2.0 * std::f64::consts::PI * 16.0 * t).sin());
        *s = (carrier * envelope * 0.3 * f64::from(i16::MAX)) as i16;
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringback_is_one_second_of_tone_then_two_of_silence() {
        let r = japanese_ringback();
        assert_eq!(r.len(), 24_000);
        let rms = |s: &[i16]| (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
        assert!(rms(&r[..8000]) > 2000.0, "tone in the first second");
        assert_eq!(rms(&r[8000..]), 0.0, "silence after");
        // The carrier is 400 Hz: 800 zero crossings a second (modulation
        // touches zero too, so allow some more).
        let crossings = r[..8000].windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((780..=840).contains(&crossings), "{crossings}");
    }
}
