//! Runtime CPU-feature dispatch for the hot pixel loops: the same safe Rust body compiled twice,
//! once for the baseline target and once with AVX2 enabled, picked at run time.

/// Runs `$body` compiled for AVX2 when the CPU has it (checked once per call), else as is.
macro_rules! with_avx2 {
    ($name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn kernel($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    kernel($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    unsafe { avx2($($arg),*) };
                    return;
                }
            }
            kernel($($arg),*)
        }
    };
}

pub(crate) use with_avx2;
